"""Fixtures shared by the connector tests: sandbox apps on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox

from datasync.http import ALLOW_LOCAL_ENV, RetryPolicy

# Retries as the production policy makes them, minus the waiting.
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05, max_rate_limit_wait=5.0)


@pytest.fixture
def allow_sandbox_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connectors refuse loopback URLs unless the operator allows sandbox URLs."""
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")


@pytest.fixture
async def hubspot_sandbox() -> AsyncIterator[HubSpotSandbox]:
    sandbox = HubSpotSandbox()
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()
