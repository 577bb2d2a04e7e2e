"""`datasync sync` with sentinel credentials (OAuth client secrets and refresh tokens, a
private app token, a PostgreSQL password) and sentinel personal data: no secret appears in
its logs at DEBUG (JSON lines), its `--output json`, its termination log or its error
messages; at INFO, no email or field value appears either. Failing logins included."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync.http import ALLOW_LOCAL_ENV
from tests.hardening.loop import LoopThread, loop_thread
from tests.hardening.sentinels import Sentinels, leaks

DATASYNC = str(Path(sys.executable).with_name("datasync"))


@pytest.fixture
def thread() -> Iterator[LoopThread]:
    with loop_thread() as running:
        yield running


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def _connection(name: str, source: dict[str, Any], destination: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "datasync.io/v1alpha1",
        "kind": "DataSyncConnection",
        "metadata": {"name": name, "namespace": "sales"},
        "spec": {
            "direction": "TwoWay",
            "schedule": "*/15 * * * *",
            "source": source,
            "destination": destination,
        },
    }


class Run:
    """One `datasync sync` subprocess and everything it let out."""

    def __init__(self, workdir: Path, connection: dict[str, Any], secrets: list[Any]) -> None:
        self.workdir = workdir
        name = connection["metadata"]["name"]
        self.connection = workdir / f"{name}.yaml"
        self.connection.write_text(yaml.safe_dump(connection))
        self.secrets = workdir / f"{name}-secrets.yaml"
        self.secrets.write_text(yaml.safe_dump_all(secrets))
        self.state = f"sqlite://{workdir}/{name}.sqlite3"
        self.outputs: list[tuple[str, str]] = []

    def sync(self, level: str) -> dict[str, Any]:
        termination = self.workdir / "termination-log"
        termination.unlink(missing_ok=True)
        result = subprocess.run(
            [
                DATASYNC,
                "sync",
                "-f",
                str(self.connection),
                "--secrets",
                str(self.secrets),
                "--state",
                self.state,
                "--output",
                "json",
                "--log-format",
                "json",
                "--log-level",
                level,
                "--termination-log",
                str(termination),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, ALLOW_LOCAL_ENV: "true"},
        )
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        self.outputs = [
            (f"stdout ({level})", result.stdout),
            (f"stderr ({level})", result.stderr),
            (f"termination log ({level})", termination.read_text() if termination.exists() else ""),
        ]
        summary: dict[str, Any] = yaml.safe_load(result.stdout)
        return summary


@pytest.mark.integration
def test_sync_outputs_never_carry_secrets_or_personal_data(
    thread: LoopThread, postgres_dsn: str, tmp_path: Path, tally: Counter[str]
) -> None:
    marks = Sentinels()
    hubspot = HubSpotSandbox(
        client_secret=marks.secret(),
        refresh_token=marks.secret(),
        private_app_token=marks.secret(),
    )
    salesforce = SalesforceSandbox(client_secret=marks.secret(), refresh_token=marks.secret())
    thread.run(hubspot.start())
    thread.run(salesforce.start())
    password = marks.secret()
    dsn = urlsplit(postgres_dsn)
    database = dsn.path.lstrip("/")
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute(f"CREATE ROLE sentinel_user LOGIN PASSWORD '{password}'")
        db.execute(f'GRANT ALL ON DATABASE "{database}" TO sentinel_user')
        db.execute("GRANT ALL ON SCHEMA public TO sentinel_user")
    try:

        def seed() -> None:
            hubspot.load(
                {"email": marks.email(), "lastname": marks.value(), "jobtitle": marks.value()}
                for _ in range(20)
            )
            hubspot.load([{"email": "not-an-email-" + marks.value(), "lastname": "X"}])
            salesforce.load(
                {"Email": marks.email(), "LastName": marks.value(), "Title": marks.value()}
                for _ in range(20)
            )

        thread.call(seed)
        crm = Run(
            tmp_path,
            _connection(
                "crm",
                {
                    "app": "hubspot",
                    "auth": {"type": "OAuth", "secretRef": {"name": "hubspot"}},
                    "settings": hubspot.connector_settings(),
                },
                {
                    "app": "salesforce",
                    "auth": {"type": "OAuth", "secretRef": {"name": "salesforce"}},
                    "settings": salesforce.connector_settings(),
                },
            ),
            [
                _secret("hubspot", hubspot.credentials("OAuth")),
                _secret("salesforce", salesforce.credentials("OAuth")),
            ],
        )
        warehouse = Run(
            tmp_path,
            _connection(
                "warehouse",
                {
                    "app": "postgres",
                    "auth": {"type": "AppParameters", "secretRef": {"name": "pg"}},
                    "settings": {"table": "contacts", "createTable": "true"},
                },
                {
                    "app": "hubspot",
                    "auth": {"type": "AppParameters", "secretRef": {"name": "hubspot-pat"}},
                    "settings": hubspot.connector_settings(),
                },
            ),
            [
                _secret(
                    "pg",
                    {
                        "host": "127.0.0.1",
                        "port": str(dsn.port),
                        "database": database,
                        "username": "sentinel_user",
                        "password": password,
                    },
                ),
                _secret("hubspot-pat", hubspot.credentials("AppParameters")),
            ],
        )
        # The search finds what is there (the Secret files do hold the sentinels).
        assert leaks([("secrets file", crm.secrets.read_text())], marks.secrets[:2]) != []
        outputs: list[tuple[str, str]] = []
        for run in (crm, warehouse):
            first = run.sync("debug")
            assert first["result"] in ("Succeeded", "PartiallySucceeded"), first
            outputs += run.outputs
            assert leaks(run.outputs, marks.secrets) == []
        assert any('"level": "debug"' in text for _, text in outputs), "DEBUG was not on"
        assert crm.sync("info")["result"] in ("Succeeded", "PartiallySucceeded")
        info_outputs = list(crm.outputs)
        assert warehouse.sync("info")["result"] in ("Succeeded", "PartiallySucceeded")
        info_outputs += warehouse.outputs
        assert leaks(info_outputs, marks.secrets + marks.personal) == []
        # The JSON summary (what becomes the resource's status) has ids, never values.
        summaries = [text for where, text in outputs if where.startswith("stdout")]
        assert leaks([("summary", text) for text in summaries], marks.personal) == []
        assert any('"InvalidEmail"' in text for text in summaries), "no failure was reported"

        # Failing logins: the wrong value and the right one stay out of every output.
        wrong = marks.secret()
        failing = [
            (crm, "hubspot", {**hubspot.credentials("OAuth"), "refreshToken": wrong}),
            (crm, "salesforce", {**salesforce.credentials("OAuth"), "clientSecret": wrong}),
            (warehouse, "hubspot-pat", {"accessToken": wrong}),
        ]
        for run, name, data in failing:
            documents = [d for d in yaml.safe_load_all(run.secrets.read_text())]
            for document in documents:
                if document["metadata"]["name"] == name:
                    document["stringData"] = data
            broken = tmp_path / f"broken-{name}.yaml"
            broken.write_text(yaml.safe_dump_all(documents))
            original, run.secrets = run.secrets, broken
            summary = run.sync("debug")
            run.secrets = original
            assert summary["result"] == "Failed", summary
            assert leaks(run.outputs, marks.secrets) == [], name
        pg_documents = list(yaml.safe_load_all(warehouse.secrets.read_text()))
        pg_documents[0]["stringData"]["password"] = wrong
        warehouse.secrets.write_text(yaml.safe_dump_all(pg_documents))
        summary = warehouse.sync("debug")
        assert summary["result"] == "Failed" and "password" in summary["error"].lower()
        assert leaks(warehouse.outputs, marks.secrets) == []
        tally["secret_sentinels"] += len(marks.secrets)
        tally["personal_data_sentinels"] += len(marks.personal)
        tally["outputs_searched"] += len(outputs) + len(info_outputs) + 3 * 4
    finally:
        thread.run(hubspot.stop())
        thread.run(salesforce.stop())
