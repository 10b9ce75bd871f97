"""Where GX keeps validation results and Data Docs when the lakehouse is a URI.

GX's own file store writes with Python's local file calls, which on `s3a://...` would make a
folder named `s3a:` wherever the step ran. This store speaks the lakehouse's URIs through
Hadoop's file system, as every table does, so the same settings (endpoint, credentials)
reach it. Local lakehouses keep GX's own store.
"""

from __future__ import annotations

from typing import Any

from great_expectations.data_context.store.tuple_store_backend import TupleStoreBackend
from great_expectations.exceptions import InvalidKeyError
from great_expectations.util import filter_properties_dict
from pyspark.sql import SparkSession

from pipelines.core import lakehouse


def store_backend(base_directory: str) -> dict:
    """GX's store backend configuration for a folder: a local path or a URI."""
    if "://" in base_directory:
        return {"module_name": __name__, "class_name": HadoopStoreBackend.__name__, "base_directory": base_directory}
    return {"class_name": "TupleFilesystemStoreBackend", "base_directory": base_directory}


class HadoopStoreBackend(TupleStoreBackend):
    """GX's tuple store over Hadoop's file system, in the active SparkSession."""

    def __init__(self, base_directory: str, filepath_template=None, filepath_prefix=None, filepath_suffix=None,
                 forbidden_substrings=None, platform_specific_separator=False, fixed_length_key=False,
                 suppress_store_backend_id=False, manually_initialize_store_backend_id: str = "",
                 base_public_path=None, store_name=None, root_directory=None) -> None:
        super().__init__(filepath_template=filepath_template, filepath_prefix=filepath_prefix,
                         filepath_suffix=filepath_suffix, forbidden_substrings=forbidden_substrings,
                         platform_specific_separator=False, fixed_length_key=fixed_length_key,
                         suppress_store_backend_id=suppress_store_backend_id,
                         manually_initialize_store_backend_id=manually_initialize_store_backend_id,
                         base_public_path=base_public_path, store_name=store_name)
        self.base = base_directory.rstrip("/")
        self._config = filter_properties_dict(properties={
            "base_directory": base_directory, "filepath_template": filepath_template,
            "filepath_prefix": filepath_prefix, "filepath_suffix": filepath_suffix,
            "forbidden_substrings": forbidden_substrings, "fixed_length_key": fixed_length_key,
            "suppress_store_backend_id": suppress_store_backend_id,
            "manually_initialize_store_backend_id": manually_initialize_store_backend_id,
            "base_public_path": base_public_path, "store_name": store_name,
            "module_name": self.__class__.__module__, "class_name": self.__class__.__name__,
        }, clean_falsy=True)
        if not self._suppress_store_backend_id:
            _ = self.store_backend_id

    @property
    def _spark(self) -> SparkSession:
        spark = SparkSession.getActiveSession()
        if spark is None:
            raise RuntimeError("the GX store on a URI needs the run's SparkSession")
        return spark

    def _path(self, key) -> str:
        if not isinstance(key, tuple):
            key = key.to_tuple()
        return f"{self.base}/{self._convert_key_to_filepath(key)}"

    def _get(self, key) -> str:
        path = self._path(key)
        if lakehouse.file_size(self._spark, path) is None:
            raise InvalidKeyError(f"no GX document at {path}")
        return lakehouse.read_text(self._spark, path).rstrip("\n")

    def _get_all(self) -> list[Any]:
        return [self._get(key) for key in self.list_keys() if key != self.STORE_BACKEND_ID_KEY]

    def _set(self, key, value, **kwargs) -> str:
        path = self._path(key)
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        # GX copies its scripts, styles and fonts with every page it builds; on object
        # storage each copy is a PUT. An asset already there at its length is left alone.
        is_asset = isinstance(key, tuple) and key[:1] == ("static",)
        if not (is_asset and lakehouse.file_size(self._spark, path) == len(data)):
            lakehouse.write_bytes(self._spark, path, data)
        return path

    def _move(self, source_key, dest_key, **kwargs):
        return dest_key if lakehouse.move_file(self._spark, self._path(source_key), self._path(dest_key)) else False

    def list_keys(self, prefix: tuple = ()) -> list[tuple]:
        folder = "/".join((self.base, *prefix))
        keys = []
        for relative in lakehouse.files_under(self._spark, folder):
            filepath = "/".join((*prefix, relative))
            if self._is_missing_prefix_or_suffix(self.filepath_prefix, self.filepath_suffix, filepath):
                continue
            key = self._convert_filepath_to_key(filepath)
            if key and not self.is_ignored_key(key):
                keys.append(key)
        return keys

    def remove_key(self, key) -> bool:
        return lakehouse.delete_file(self._spark, self._path(key))

    def get_url_for_key(self, key, protocol=None) -> str:
        return f"{self.base}/{self._url_path_escape_special_characters(path=self._convert_key_to_filepath(key))}"

    def get_public_url_for_key(self, key, protocol=None) -> str:
        return self.get_url_for_key(key, protocol)

    def _has_key(self, key) -> bool:
        return lakehouse.file_size(self._spark, self._path(key)) is not None

    @property
    def config(self) -> dict:
        return self._config
