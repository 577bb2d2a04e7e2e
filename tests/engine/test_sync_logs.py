"""`datasync sync` logs no personal data at INFO, even when the process around it turned
the HTTP client's request logging on (httpx logs each URL; Salesforce query URLs hold
the emails being looked up)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from click.testing import CliRunner
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync.cli import cli
from datasync.http import ALLOW_LOCAL_ENV
from tests.hardening.apps import connection as crm_connection

T = TypeVar("T")


class _SandboxLoop:
    """The sandboxes serve from a loop in a thread: `datasync sync` runs its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sandboxes() -> Iterator[tuple[HubSpotSandbox, SalesforceSandbox]]:
    loop = _SandboxLoop()
    hubspot, salesforce = HubSpotSandbox(), SalesforceSandbox()
    loop.run(hubspot.start())
    loop.run(salesforce.start())
    try:
        yield hubspot, salesforce
    finally:
        loop.run(hubspot.stop())
        loop.run(salesforce.stop())
        loop.close()


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def test_no_email_in_logs_at_info(
    sandboxes: tuple[HubSpotSandbox, SalesforceSandbox],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hubspot, salesforce = sandboxes
    # Unique local parts: found whether an email is logged plain or percent-encoded.
    tokens = [f"pii{uuid.uuid4().hex[:12]}" for _ in range(12)]
    emails = [f"{token}@example.com" for token in tokens]
    # Half in both apps (matched by a lookup query), the rest in one app each.
    hubspot.load({"email": email, "lastname": "Hub"} for email in emails[:9])
    salesforce.load({"Email": email, "LastName": "Force"} for email in emails[3:])
    connection = crm_connection(hubspot, salesforce)
    connection_file = tmp_path / "crm.yaml"
    connection_file.write_text(yaml.safe_dump(connection))
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text(
        yaml.safe_dump_all(
            [
                _secret("hubspot", hubspot.credentials("OAuth")),
                _secret("salesforce", salesforce.credentials("OAuth")),
            ]
        )
    )
    # The process around the command logs everything, and something turned httpx on.
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.INFO)

    result = CliRunner().invoke(
        cli,
        [
            "sync",
            "-f",
            str(connection_file),
            "--secrets",
            str(secrets_file),
            "--state",
            f"sqlite:///{tmp_path / 'state.sqlite3'}",
            "--output",
            "json",
            "--log-format",
            "json",
        ],
        env={ALLOW_LOCAL_ENV: "true", "DATASYNC_LOG_LEVEL": "info"},
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["records"]["toDestination"]["created"] == 3  # the sync really ran
    assert summary["records"]["toSource"]["created"] == 3
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(line["message"].startswith("sync of sales/crm started") for line in lines)
    assert {line["level"] for line in lines} <= {"info", "warning", "error"}
    logs = result.stderr + caplog.text
    assert [token for token in tokens if token in logs] == []
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
