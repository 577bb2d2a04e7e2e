from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from datasync.logs import APP_LOGGERS, HTTP_LOGGERS


@pytest.fixture(autouse=True)
def restore_datasync_logging() -> Iterator[None]:
    """The demo and setup_logging configure datasync's and httpx's loggers; leave them as
    found (a handler bound to a finished CliRunner's stream must not outlive the test)."""
    loggers = [logging.getLogger(name) for name in (*APP_LOGGERS, *HTTP_LOGGERS)]
    saved = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)
