"""MLflow tracking and registry: where models are logged, found and promoted."""

from __future__ import annotations

import os
import tempfile
import warnings

import mlflow
import mlflow.artifacts
import mlflow.spark
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from pyspark.sql import SparkSession

from pipelines.core.config import Config
from pipelines.core.errors import BadInputError

CHAMPION = "champion"
RUN_DATE_TAG = "training_run_date"


def connect(cfg: Config) -> str:
    """Point MLflow at the configured store; return the experiment id."""
    uri = cfg.mlflow_tracking_uri()
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///"):]), exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = cfg.get("mlflow.experiment")
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=cfg.mlflow_artifact_location())


# Where MLflow's artifacts are not a file system Hadoop knows (a tracking server's proxied
# `mlflow-artifacts:`), mlflow.spark first tries to save the model there with Spark; the
# attempt fails as expected and MLflow uploads the model itself, but Spark logs the
# failure as an ERROR with its stack trace, night after night.
_NOT_HADOOP = ("mlflow-artifacts", "http", "https")
_SPARK_ML_FAILURES = "org.apache.spark.ml.util.Instrumentation"


def log_spark_model(model, artifact_path: str, **options):
    """mlflow.spark.log_model, without the expected failure's ERROR in the log."""
    if mlflow.get_artifact_uri().split(":", 1)[0] not in _NOT_HADOOP:
        return mlflow.spark.log_model(model, artifact_path, **options)
    jvm = SparkSession.getActiveSession()._jvm
    log4j = jvm.org.apache.logging.log4j
    before = log4j.LogManager.getLogger(_SPARK_ML_FAILURES).getLevel()
    log4j.core.config.Configurator.setLevel(_SPARK_ML_FAILURES, log4j.Level.OFF)
    try:
        return mlflow.spark.log_model(model, artifact_path, **options)
    finally:
        log4j.core.config.Configurator.setLevel(_SPARK_ML_FAILURES, before)


def version_trained_for(model_name: str, run_date: str) -> ModelVersion | None:
    """The registered version trained for `run_date`, if any (keeps train idempotent)."""
    # A failed search is an error, not "none trained": reading it as none would train again,
    # or skip a model, on a tracking server's bad minute.
    versions = MlflowClient().search_model_versions(f"name = '{model_name}'")
    matches = [v for v in versions if v.tags.get(RUN_DATE_TAG) == run_date]
    return max(matches, key=lambda v: int(v.version)) if matches else None


def champion(model_name: str) -> ModelVersion | None:
    """The champion version; None only when the model or its alias does not exist. Any other
    failure (a tracking server that does not answer) is raised: read as "no champion", it
    would skip the model and clear its profile columns, or promote a worse version."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as err:
        if _not_found(err):
            return None
        raise


def _not_found(err: MlflowException) -> bool:
    # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias, INVALID_PARAMETER_VALUE
    # with "not found" (so the stores word it, locally and over REST).
    return err.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        err.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(err))


def require_champion(model_name: str) -> ModelVersion:
    version = champion(model_name)
    if version is None:
        raise BadInputError(f"model {model_name!r} has no '{CHAMPION}' version; run `enrich train` first")
    return version


def promote(model_name: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(model_name, CHAMPION, version)


def load_spark_model(model_name: str, version: str):
    return mlflow.spark.load_model(f"models:/{model_name}/{version}")


ROC_ARTIFACT = "holdout_roc.json"
DRIFT_ARTIFACT = "drift_reference.json"
EVALUATION_ARTIFACT = "holdout_evaluation.json"   # gains, reliability curve, importances
PROMOTION_TAG = "promotion"   # "promoted", or why the version was not


def run_params(run_id: str) -> dict[str, str]:
    return MlflowClient().get_run(run_id).data.params


def run_tags(run_id: str) -> dict[str, str]:
    return MlflowClient().get_run(run_id).data.tags


def evaluation(run_id: str) -> dict | None:
    """The holdout evaluation a training run logged (None for runs without one)."""
    return _optional_dict(run_id, EVALUATION_ARTIFACT)


def load_dict(run_id: str, name: str) -> dict:
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{name}")


def _optional_dict(run_id: str, name: str) -> dict | None:
    return load_dict(run_id, name) if _has_artifact(run_id, name) else None


def _has_artifact(run_id: str, name: str) -> bool:
    return name in {item.path for item in MlflowClient().list_artifacts(run_id)}


def log_table(rows: pd.DataFrame, name: str) -> None:
    """`rows` as a Parquet artifact of the active run, named `name`."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        rows.to_parquet(path, index=False)
        mlflow.log_artifact(path)


def optional_table(run_id: str, name: str) -> pd.DataFrame | None:
    """A Parquet artifact `log_table` logged (None for runs without one)."""
    if not _has_artifact(run_id, name):
        return None
    with tempfile.TemporaryDirectory() as folder:
        return pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{name}", dst_path=folder))


def drift_reference(run_id: str) -> dict | None:
    """The training population's bins a model version logged (None for versions without one)."""
    return _optional_dict(run_id, DRIFT_ARTIFACT)


def holdout_roc(run_id: str) -> list[list[float]]:
    """The holdout ROC points a training run logged (for the report of a rerun)."""
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{ROC_ARTIFACT}")["roc"]


def signature(inputs, outputs) -> ModelSignature:
    """infer_signature without its hint about integer columns: ranks and segment ids are
    never missing, so an integer schema is the right one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        return infer_signature(inputs, outputs)
