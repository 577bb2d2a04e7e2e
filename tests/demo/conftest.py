from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_datasync_logging() -> Iterator[None]:
    """The demo and setup_logging configure the `datasync` logger; leave it as found."""
    logger = logging.getLogger("datasync")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
