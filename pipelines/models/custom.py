"""Custom models: classifiers and regressors a team declares in conf (`models.custom`)
and the pipeline trains, gates, scores and publishes like the built-in ones.

A declarative model needs no Python:

    models:
      custom: [outdoor_buyer]
      outdoor_buyer:
        kind: classifier
        registered_name: outdoor_buyer
        profile_prefix: outdoor            # profile columns outdoor_probability, outdoor_score, ...
        horizon_days: 30
        label: "count_if(is_purchase AND array_contains(categories, 'Outdoor')) > 0"
        eligible: "days_since_last_event <= 90"
        extra_features:
          outdoor_views_90d: "count_if(array_contains(categories, 'Outdoor') AND days_ago <= 90)"
        estimator: gbt                     # gbt | random_forest | logistic_regression
        params: {max_iter: 20, max_depth: 3}

A regressor (`kind: regressor`) predicts a number instead, e.g. `label: "sum(revenue)"`,
with `estimator: gbt | random_forest | linear_regression`; its profile columns are
`<prefix>_prediction`, `_percentile`, `_bucket` and `_model_version`.

A programmatic one names a function instead of an estimator (`entry_point:
"package.module:function"`); see `examples/custom_model.py` for its interface.

Expressions are Spark SQL:
- `label`: an aggregate over the person's events in [as_of, as_of + horizon_days): true or
  false for a classifier, a number for a regressor; `days_after` (0 on the as-of date) is
  there beside the silver/events columns. A person without events in the horizon gets
  false, or 0.
- `extra_features`: aggregates over the person's events before the as-of date within the
  features' look-back; `days_ago` (1 the day before) is there. No events: 0.
- `eligible`: a condition on the built-in feature columns.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.param import Param
from pyspark.sql import Column, DataFrame
from pyspark.sql import types as T
from pyspark.errors import AnalysisException, PySparkException

from pipelines.core.reproducible import in_canonical_order
from pipelines.features.build import feature_columns, in_horizon

CLASSIFIER, REGRESSOR = "classifier", "regressor"
KINDS = (CLASSIFIER, REGRESSOR)
ESTIMATORS = {
    CLASSIFIER: {"gbt": GBTClassifier, "random_forest": RandomForestClassifier,
                 "logistic_regression": LogisticRegression},
    REGRESSOR: {"gbt": GBTRegressor, "random_forest": RandomForestRegressor,
                "linear_regression": LinearRegression},
}
# Linear models see standardised inputs; trees split the raw values.
SCALED = ("logistic_regression", "linear_regression")
REQUIRED = ("kind", "registered_name", "profile_prefix", "horizon_days", "label", "training_snapshots",
            "cadence_days", "seed")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class TrainingInputs:
    """What a programmatic model's function is given beside the training rows."""
    features: list[str]     # numeric input columns, in the order the model must use
    label: str              # the label column: 1.0 or 0.0 (a classifier), a number (a regressor)
    seed: int
    params: dict = field(default_factory=dict)   # models.<name>.params (one candidate of a search)


@dataclass(frozen=True)
class CustomDefinition:
    key: str
    kind: str                                   # classifier | regressor
    label: str
    eligible: str | None
    features: tuple[str, ...] | None            # built-in feature names (None: all of them)
    extra_features: tuple[tuple[str, str], ...]  # (name, aggregate over earlier events)
    estimator: str | None
    entry_point: str | None

    def eligible_rows(self) -> Column:
        return F.lit(True) if self.eligible is None else F.expr(self.eligible)

    def inputs(self, windows: Sequence[int]) -> list[str]:
        built_in = list(self.features) if self.features is not None else feature_columns(windows)
        return built_in + [name for name, _ in self.extra_features]

    def with_extra_features(self, events: DataFrame, as_of: date,
                            lookback_days: int) -> Callable[[DataFrame], DataFrame]:
        """Feature rows as of `as_of` -> plus each extra feature, from events strictly before it."""
        if not self.extra_features:
            return lambda features: features
        return self.joined_with(extra_feature_values([self], events, as_of, lookback_days))

    def joined_with(self, values: DataFrame | None) -> Callable[[DataFrame], DataFrame]:
        """Feature rows -> plus this model's extra features, taken from `values` (what
        `extra_feature_values` computed for it); 0 for people without earlier events."""
        def _apply(features: DataFrame) -> DataFrame:
            if not self.extra_features:
                return features
            names = [name for name, _ in self.extra_features]
            own = values.select("person_id", *[F.col(_extra_column(self.key, name)).alias(name) for name in names])
            return features.join(own, "person_id", "left").fillna(0.0, subset=names)
        return _apply

    @property
    def is_regressor(self) -> bool:
        return self.kind == REGRESSOR

    def labels(self, events: DataFrame, as_of: date, horizon_days: int) -> Callable[[DataFrame], DataFrame]:
        """Eligible feature rows as of `as_of` -> the same rows with `label`: 1.0 when the
        label expression holds over the person's events in the horizon, else 0.0 (a
        classifier), or its value, 0.0 without events (a regressor)."""
        window = in_horizon(as_of, horizon_days)

        def _apply(features: DataFrame) -> DataFrame:
            horizon = events.where(window).withColumn("days_after", F.datediff(F.col("event_date"), F.lit(as_of)))
            # A user's aggregate may add doubles (`sum(revenue)`): in canonical order it adds a
            # person's events in the same order whatever files they lie in.
            held = (in_canonical_order(horizon, "person_id", "event_id").groupBy("person_id")
                    .agg(F.expr(self.label).alias("_held")))
            label = (F.coalesce(F.col("_held").cast("double"), F.lit(0.0)) if self.is_regressor
                     else F.when(F.coalesce(F.col("_held"), F.lit(False)), 1.0).otherwise(0.0))
            return (features.where(self.eligible_rows()).join(held, "person_id", "left")
                    .withColumn("label", label).drop("_held"))
        return _apply

    def fitter(self, seed: int) -> Callable[[DataFrame, list[str], dict], PipelineModel]:
        """(training rows, inputs, params) -> fitted model, for one candidate of the search."""
        if self.entry_point is not None:
            function = load_entry_point(self.entry_point)

            def _programmatic(train: DataFrame, inputs: list[str], params: dict) -> PipelineModel:
                model = function(train, TrainingInputs(features=list(inputs), label="label", seed=seed,
                                                       params=dict(params)))
                if isinstance(model, PipelineModel):
                    return model
                if hasattr(model, "transform") and hasattr(model, "write"):
                    return PipelineModel(stages=[model])
                raise TypeError(f"{self.entry_point} returned {type(model).__name__}, not a fitted Spark ML model")
            return _programmatic
        return lambda train, inputs, params: estimator_pipeline(self.kind, self.estimator, inputs, params,
                                                                seed).fit(train)


def estimator_pipeline(kind: str, estimator: str, inputs: Sequence[str], params: Mapping, seed: int) -> Pipeline:
    """VectorAssembler (+ StandardScaler for a linear model) + the estimator, with conf's
    snake_case params as Spark ML params (max_iter -> maxIter)."""
    cls = ESTIMATORS[kind][estimator]
    spark_params = {_camel(name): value for name, value in params.items()}
    if isinstance(getattr(cls, "seed", None), Param):
        spark_params.setdefault("seed", seed)
    stages = [VectorAssembler(inputCols=list(inputs), outputCol="raw_features", handleInvalid="error")]
    if estimator in SCALED:
        stages.append(StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True))
    else:
        stages[0].setOutputCol("features")
    stages.append(cls(featuresCol="features", labelCol="label", **spark_params))
    return Pipeline(stages=stages)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def load_entry_point(entry_point: str) -> Callable:
    """`package.module:function` -> the function (ImportError or AttributeError when absent)."""
    module_name, function_name = entry_point.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if not callable(function):
        raise TypeError(f"{entry_point} is not a function")
    return function


def parse(key: str, model: Mapping, built_in_features: Sequence[str]) -> tuple[CustomDefinition | None, list[str]]:
    """A `models.<key>` mapping -> the definition, or None and every problem found (no Spark)."""
    where = f"models.{key}"
    problems = [f"{where}.{name} is required" for name in REQUIRED if model.get(name) in (None, "")]
    kind = model.get("kind")
    if kind not in (None, *KINDS):
        problems.append(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    known = ESTIMATORS.get(kind, ESTIMATORS[CLASSIFIER])
    estimator, entry_point = model.get("estimator"), model.get("entry_point")
    if (estimator is None) == (entry_point is None):
        problems.append(f"{where} needs exactly one of estimator ({', '.join(known)}) or entry_point "
                        "(package.module:function)")
    elif estimator is not None and estimator not in known:
        problems.append(f"{where}.estimator must be one of {', '.join(known)} for a {kind or CLASSIFIER}, "
                        f"got {estimator!r}")
    elif entry_point is not None and not ENTRY_POINT.match(str(entry_point)):
        problems.append(f"{where}.entry_point must look like package.module:function, got {entry_point!r}")
    params = model.get("params") or {}
    if not isinstance(params, Mapping):
        problems.append(f"{where}.params must be a mapping of settings, got {params!r}")
    elif estimator in known:
        cls = known[estimator]
        unknown = [name for name in params if not isinstance(getattr(cls, _camel(str(name)), None), Param)]
        if unknown:
            problems.append(f"{where}.params: {', '.join(map(str, unknown))} not a setting of {cls.__name__} "
                            "(snake_case of its Spark ML params, e.g. max_iter)")
    features = model.get("features")
    if features is not None:
        if not isinstance(features, list) or not features:
            problems.append(f"{where}.features must be a non-empty list of feature names, got {features!r}")
        else:
            missing = [name for name in features if name not in built_in_features]
            if missing:
                problems.append(f"{where}.features: unknown feature {', '.join(map(str, missing))}; known: "
                                f"{', '.join(built_in_features)}")
    extras = model.get("extra_features") or {}
    if not isinstance(extras, Mapping):
        problems.append(f"{where}.extra_features must map names to SQL expressions, got {extras!r}")
        extras = {}
    for name, sql in extras.items():
        if not NAME.match(str(name)) or name in built_in_features:
            problems.append(f"{where}.extra_features: {name!r} must be a lower_snake_case name that is not a "
                            "built-in feature")
        if not isinstance(sql, str) or not sql.strip():
            problems.append(f"{where}.extra_features.{name} must be a SQL expression")
    for name in ("horizon_days", "training_snapshots", "cadence_days"):
        value = model.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            problems.append(f"{where}.{name} must be a whole number >= 1, got {value!r}")
    if problems:
        return None, problems
    definition = CustomDefinition(
        key=key, kind=str(kind), label=str(model["label"]), eligible=model.get("eligible"),
        features=tuple(features) if features is not None else None,
        extra_features=tuple((str(n), str(s)) for n, s in extras.items()),
        estimator=estimator, entry_point=entry_point)
    return definition, []


def extra_feature_values(definitions: Sequence[CustomDefinition], events: DataFrame, as_of: date,
                         lookback_days: int) -> DataFrame | None:
    """Every extra feature of `definitions` in one pass over the events strictly before
    `as_of` (within the look-back): a row per person, a column per model and feature (see
    `joined_with`); None when none of them declares any."""
    wanted = [(definition.key, name, sql) for definition in definitions for name, sql in definition.extra_features]
    if not wanted:
        return None
    before = (events.where((F.col("event_date") < F.lit(as_of))
                           & (F.col("event_date") >= F.lit(as_of - timedelta(days=lookback_days))))
              .withColumn("days_ago", F.datediff(F.lit(as_of), F.col("event_date"))))
    # In canonical order, as the labels: a sum over doubles adds in the same order in any layout.
    return (in_canonical_order(before, "person_id", "event_id").groupBy("person_id")
            .agg(*[F.expr(sql).cast("double").alias(_extra_column(key, name)) for key, name, sql in wanted]))


def _extra_column(key: str, name: str) -> str:
    # ":" is in no model key or feature name, so two models may share a feature name.
    return f"{key}:{name}"


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]


def analyse(definition: CustomDefinition, events: DataFrame, windows: Sequence[int], params: Mapping,
            seed: int) -> list[str]:
    """Problems Spark finds in a definition's expressions against the silver/events columns
    (`events` may be empty: only its schema is used), and in its estimator or entry point."""
    where = f"models.{definition.key}"
    problems = []
    spark = events.sparkSession
    horizon = events.withColumn("days_after", F.lit(0))
    try:
        kind = horizon.groupBy("person_id").agg(F.expr(definition.label).alias("label")).schema["label"].dataType
        if definition.is_regressor and not isinstance(kind, T.NumericType):
            problems.append(f"{where}.label must be a number for a regressor, but it gives {kind.simpleString()}")
        elif not definition.is_regressor and not isinstance(kind, T.BooleanType):
            problems.append(f"{where}.label must be true or false for a classifier, but it gives "
                            f"{kind.simpleString()}: compare it, e.g. sum(revenue) > 200")
    except (AnalysisException, PySparkException) as err:
        problems.append(f"{where}.label: {_first_line(err)}")
    earlier = events.withColumn("days_ago", F.lit(1))
    for name, sql in definition.extra_features:
        try:
            kind = earlier.groupBy("person_id").agg(F.expr(sql).alias("x")).schema["x"].dataType
            if not isinstance(kind, (T.NumericType, T.BooleanType)):
                problems.append(f"{where}.extra_features.{name} must be a number, but it gives {kind.simpleString()}")
        except (AnalysisException, PySparkException) as err:
            problems.append(f"{where}.extra_features.{name}: {_first_line(err)}")
    if definition.eligible is not None:
        feature_rows = spark.createDataFrame([], feature_schema(windows))
        try:
            kind = feature_rows.select(F.expr(definition.eligible).alias("x")).schema["x"].dataType
            if not isinstance(kind, T.BooleanType):
                problems.append(f"{where}.eligible must be a condition (true or false) on feature columns, but it "
                                f"gives {kind.simpleString()}")
        except (AnalysisException, PySparkException) as err:
            problems.append(f"{where}.eligible: {_first_line(err)}")
    if definition.entry_point is not None:
        try:
            load_entry_point(definition.entry_point)
        except (ImportError, AttributeError, TypeError) as err:
            problems.append(f"{where}.entry_point {definition.entry_point}: {_first_line(err)}")
    else:
        try:
            estimator_pipeline(definition.kind, definition.estimator, definition.inputs(windows), params, seed)
        except (TypeError, ValueError) as err:
            problems.append(f"{where}.params: {_first_line(err)}")
    return problems


def feature_schema(windows: Sequence[int]) -> T.StructType:
    """The columns of gold/features that eligibility conditions may use."""
    return T.StructType([T.StructField("person_id", T.StringType()), T.StructField("as_of_date", T.DateType()),
                         T.StructField("last_event_date", T.DateType())]
                        + [T.StructField(name, T.DoubleType()) for name in feature_columns(windows)])


def labels_never_held(definitions: Sequence[CustomDefinition], events: DataFrame) -> list[str]:
    """The keys of the `definitions` whose label holds (a classifier's) or is not 0 (a
    regressor's) for nobody over all of `events`, each person's whole history taken as one
    horizon: the events it asks for are not in the data. One pass for all of them."""
    if not definitions:
        return []
    per_person = (events.withColumn("days_after", F.lit(0)).groupBy("person_id")
                  .agg(*[F.expr(definition.label).alias(f"held_{i}") for i, definition in enumerate(definitions)]))

    def held(i: int, definition: CustomDefinition) -> Column:
        value = F.col(f"held_{i}") != 0 if definition.is_regressor else F.col(f"held_{i}")
        return F.max(F.coalesce(value, F.lit(False)).cast("int")).alias(f"held_{i}")
    anyone = per_person.agg(*[held(i, definition) for i, definition in enumerate(definitions)]).first()
    return [definition.key for i, definition in enumerate(definitions) if not anyone[f"held_{i}"]]
