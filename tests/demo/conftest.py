"""Every test here leaves the loggers as it found them."""

from tests.fixtures.logs import restore_datasync_logging  # noqa: F401 - an autouse fixture
