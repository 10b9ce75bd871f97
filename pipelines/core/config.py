"""Layered configuration: base.yaml, an environment overlay, extra files, --set pairs.

    cfg = load_config(env="local", files=["my.yaml"], overrides=["models.convert_propensity.horizon_days=14"])
    cfg.get("features.windows_days")      # [7, 30, 90, 365]
    cfg.table("scores")                   # '/abs/lakehouse/gold/scores'
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from pipelines.core.errors import BadInputError


def _project_root() -> Path:
    """The folder holding conf/: $ENRICH_HOME, else the checkout this package sits in, else the
    working folder (the package may run from a wheel shipped with --py-files)."""
    if os.environ.get("ENRICH_HOME"):
        return Path(os.environ["ENRICH_HOME"])
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "conf" / "base.yaml").is_file() else Path.cwd()


PROJECT_ROOT = _project_root()
CONF_DIR = PROJECT_ROOT / "conf"
ENVIRONMENTS = ("local", "cluster")
# Keys of `lakehouse.tables` that earlier releases used; the tables' paths did not change.
# Settings of earlier releases that mean something else now: refused, naming the new one.
RENAMED_SETTINGS = {"orchestration.lock_stale_after_hours": "orchestration.lock_stale_after_minutes (the lock "
                    "now has a heartbeat, so a few minutes is enough)"}
RENAMED_TABLE_KEYS = {"events": "bronze_events", "profiles": "bronze_profiles", "training_set": "training_sets"}
# Model keys, profile prefixes and registered names go into SQL (replaceWhere, ALTER TABLE)
# and MLflow filter strings: lower_snake_case only, so none can break out of its quotes.
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MODEL_FILE = NAME


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise BadInputError(f"configuration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        first_line = str(err).splitlines()[0]
        raise BadInputError(f"configuration file {path} is not valid YAML: {first_line}") from err
    if not isinstance(data, dict):
        raise BadInputError(f"configuration file {path} must hold a mapping at the top level")
    return data


def deep_merge(base: dict, overlay: dict) -> dict:
    """Return `base` with `overlay` merged in; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parse_override(pair: str) -> tuple[list[str], Any]:
    if "=" not in pair:
        raise BadInputError(f"--set expects dotted.key=value, got {pair!r}")
    key, raw = pair.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise BadInputError(f"--set has an empty key part in {pair!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_dotted(data: dict, parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise BadInputError(f"--set {'.'.join(parts)}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _join(root: str, relative: str) -> str:
    if "://" in relative or relative.startswith("/"):
        return relative
    return root.rstrip("/") + "/" + relative


class Config:
    """Read-only view of the merged configuration with path helpers."""

    def __init__(self, data: dict, env: str):
        self._data = data
        self.env = env
        root = str(self.get("lakehouse.root"))
        # Local relative roots become absolute so Spark, MLflow and the report agree.
        self.root = root if "://" in root else os.path.abspath(root)

    def get(self, dotted: str, default: Any = ...) -> Any:
        node: Any = self._data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is ...:
                    raise BadInputError(f"configuration key {dotted!r} is missing")
                return default
            node = node[part]
        return node

    def as_dict(self) -> dict:
        return copy.deepcopy(self._data)

    def table(self, name: str) -> str:
        """Location of a Delta table by its logical name (a key of lakehouse.tables)."""
        tables = self.get("lakehouse.tables")
        if name not in tables:
            raise BadInputError(f"unknown table {name!r}; known: {', '.join(sorted(tables))}")
        return _join(self.root, tables[name])

    def landing(self, kind: str) -> str:
        return _join(self.root, self.get(f"lakehouse.landing.{kind}"))

    def reports_dir(self) -> str:
        return _join(self.root, self.get("lakehouse.reports"))

    def project_path(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def mlflow_tracking_uri(self) -> str:
        uri = self.get("mlflow.tracking_uri", None)
        if uri:
            return uri
        if "://" in self.root:
            raise BadInputError("mlflow.tracking_uri must be set when lakehouse.root is a URI")
        return f"sqlite:///{self.root}/mlflow/mlflow.db"

    def mlflow_artifact_location(self) -> str | None:
        """Where new experiments keep artifacts: as set; else beside a local lakehouse; else
        (a lakehouse on object storage) where the tracking server puts them, which MLflow's
        own clients can reach: they do not speak Hadoop's `s3a://`."""
        configured = self.get("mlflow.artifact_location", None)
        if configured or "://" in self.root:
            return configured
        return _join(self.root, "mlflow/artifacts")


def load_config(env: str = "local", files: Iterable[str] = (), overrides: Iterable[str] = ()) -> Config:
    """Merge base.yaml, conf/<env>.yaml, each file in `files`, then each `key=value`."""
    if env not in ENVIRONMENTS:
        raise BadInputError(f"--env must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    data = _read_yaml(CONF_DIR / "base.yaml")
    data = deep_merge(data, _read_yaml(CONF_DIR / f"{env}.yaml"))
    for extra in files:
        data = deep_merge(data, _read_yaml(Path(extra)))
    for pair in overrides:
        parts, value = _parse_override(pair)
        _set_dotted(data, parts, value)
    _refuse_renamed_table_keys(data)
    _refuse_renamed_settings(data)
    data = _with_model_files(data)
    _refuse_unsafe_model_names(data)
    return Config(data, env)


def _refuse_unsafe_model_names(data: dict) -> None:
    """Every model's key, `profile_prefix` and `registered_name` must be lower_snake_case."""
    models = data.get("models") or {}
    keys = [*(models.get("propensity") or []), *(models.get("custom") or []),
            *(key for key in ("lifetime_value", "affinity", "product_affinity", "content_affinity", "segments")
              if isinstance(models.get(key), dict))]
    for key in keys:
        if not isinstance(key, str) or not NAME.match(key):
            raise BadInputError(f"models: {key!r} is not a model name: use lower_snake_case (a-z, 0-9, _)")
        model = models.get(key)
        for field in ("profile_prefix", "registered_name"):
            value = model.get(field) if isinstance(model, dict) else None
            if value is not None and not NAME.match(str(value)):
                raise BadInputError(f"models.{key}.{field} must be lower_snake_case (a-z, 0-9, _), got {value!r}")


def _refuse_renamed_table_keys(data: dict) -> None:
    """An overlay that still sets a table by its old key would otherwise be ignored and the
    table read and written at its default path."""
    tables = (data.get("lakehouse") or {}).get("tables") or {}
    for old, new in RENAMED_TABLE_KEYS.items():
        if old in tables:
            raise BadInputError(f"lakehouse.tables.{old} is now lakehouse.tables.{new}; "
                                "rename it in your configuration")


def _refuse_renamed_settings(data: dict) -> None:
    for old, new in RENAMED_SETTINGS.items():
        section, key = old.split(".")
        if key in (data.get(section) or {}):
            raise BadInputError(f"{old} is now {new}; rename it in your configuration")


def custom_models_folder(configured: str | None) -> Path | None:
    """Where custom model files are read from: $ENRICH_CUSTOM_DIR when it is set (empty:
    nowhere; the tests set it so a checkout's own model files cannot change what they see),
    else `models.custom_dir`, relative to the project folder (null: nowhere)."""
    folder = os.environ.get("ENRICH_CUSTOM_DIR", configured)
    if not folder:
        return None
    path = Path(folder)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _with_model_files(data: dict) -> dict:
    """Custom models kept as files: each `<models.custom_dir>/<name>.yaml` holds the
    definition of model `<name>` and joins `models.custom`, so a model a notebook or a
    teammate adds is trained and scored by the next nightly. Settings of the same model in
    conf files or --set win over its file."""
    models = data.get("models") or {}
    path = custom_models_folder(models.get("custom_dir"))
    if path is None or not path.is_dir():
        return data
    listed = list(models.get("custom") or [])
    for file in sorted(path.glob("*.yaml")):
        if not MODEL_FILE.match(file.stem):
            raise BadInputError(f"custom model file {file}: the name must be lower_snake_case (it names the model)")
        models[file.stem] = deep_merge(_read_yaml(file), models.get(file.stem) or {})
        if file.stem not in listed:
            listed.append(file.stem)
    models["custom"] = listed
    data["models"] = models
    return data
