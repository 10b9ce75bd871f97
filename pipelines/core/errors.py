"""Errors that map to the CLI's exit codes (see `pipelines.cli`)."""


class EnrichError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


class BadInputError(EnrichError):
    """Bad input or configuration: a missing folder, a bad option, an unreadable file."""

    exit_code = 2


class GateError(EnrichError):
    """A data-quality or model-quality gate refused to let the run go on."""

    exit_code = 3
