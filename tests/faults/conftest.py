"""The fault tests reuse the e2e lakehouse: its first night is the clean run they compare with."""

from tests.e2e.conftest import nightly  # noqa: F401 - a fixture, found by pytest by name
