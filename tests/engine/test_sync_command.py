"""`datasync sync`: arguments, Secrets, error messages and exit codes.

The end-to-end runs sync two tables of a real PostgreSQL through the postgres connector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from datasync.api import summary_codec
from datasync.cli import cli


def _connection(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "direction": "OneWay",
        "schedule": "*/15 * * * *",
        "source": {
            "app": "postgres",
            "auth": {"type": "AppParameters", "secretRef": {"name": "crm-a"}},
            "settings": {"table": "contacts_a", "createTable": "true"},
        },
        "destination": {
            "app": "postgres",
            "auth": {"type": "AppParameters", "secretRef": {"name": "crm-b"}},
            "settings": {"table": "contacts_b", "createTable": "true"},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "datasync.io/v1alpha1",
        "kind": "DataSyncConnection",
        "metadata": {"name": "crm", "namespace": "sales"},
        "spec": body,
    }


def _secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def _write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["sync", *args], env=env, catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "connection": _write(tmp_path / "connection.yaml", _connection()),
        "secrets": _write(
            tmp_path / "secrets.yaml", _secret("crm-a", dsn="postgresql://u:pw@127.0.0.1:1/x")
        ),
        "state": tmp_path / "state.sqlite3",
    }


def test_missing_secret_names_it_and_lists_what_the_file_has(files: dict[str, Path]) -> None:
    result = _invoke("-f", str(files["connection"]), "--secrets", str(files["secrets"]))
    assert result.exit_code == 1
    assert "Secret 'crm-b' (spec.destination.auth.secretRef.name)" in result.output
    assert "it has: crm-a" in result.output
    assert "pw@" not in result.output and "Traceback" not in result.output


def test_missing_key_names_the_key_and_the_secret(tmp_path: Path) -> None:
    connection = _connection()
    connection["spec"]["source"] = {
        "app": "hubspot",
        "auth": {"type": "AppParameters", "secretRef": {"name": "hubspot-creds"}},
    }
    path = _write(tmp_path / "c.yaml", connection)
    secrets = _write(
        tmp_path / "s.yaml",
        _secret("hubspot-creds", wrongKey="pat-secret-value"),
        _secret("crm-b", dsn="postgresql://u@127.0.0.1:1/x"),
    )
    result = _invoke("-f", str(path), "--secrets", str(secrets))
    assert result.exit_code == 1
    assert "Secret 'hubspot-creds'" in result.output and "'accessToken'" in result.output
    assert "pat-secret-value" not in result.output


def test_unknown_connector_lists_the_available_ones(tmp_path: Path) -> None:
    connection = _connection()
    connection["spec"]["source"]["app"] = "nosuchapp"
    result = _invoke("-f", str(_write(tmp_path / "c.yaml", connection)), "--secrets", "/dev/null")
    assert result.exit_code == 1
    assert "spec.source.app" in result.output and "nosuchapp" in result.output
    assert "postgres" in result.output and "hubspot" in result.output


def test_invalid_manifest_reuses_the_validator_messages(tmp_path: Path) -> None:
    connection = _connection(direction="Sideways")
    connection["spec"]["mappings"] = {"fields": [{"source": "a"}]}
    result = _invoke("-f", str(_write(tmp_path / "c.yaml", connection)), "--secrets", "/dev/null")
    assert result.exit_code == 1
    assert "spec.direction: must be one of" in result.output
    assert "spec.mappings.fields[0].destination: is required" in result.output


def test_setup_errors_in_json_mode_still_print_and_record_a_summary(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    result = _invoke(
        "--connection-file",
        str(tmp_path / "absent.yaml"),
        "--secrets-dir",
        str(tmp_path),
        "--output",
        "json",
        "--termination-log",
        str(log),
        "--job-name",
        "crm-123",
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["result"] == "Failed" and summary["job"] == "crm-123"
    assert "absent.yaml" in summary["error"]
    decoded = summary_codec.decode(log.read_text())
    assert decoded is not None and decoded.error == summary["error"]


def test_no_arguments_say_what_to_pass() -> None:
    result = _invoke()
    assert result.exit_code == 1
    assert "-f CONNECTION.yaml" in result.output


@pytest.mark.integration
def test_local_run_end_to_end_exit_codes(postgres_dsn: str, tmp_path: Path) -> None:
    connection = _write(tmp_path / "c.yaml", _connection())
    secrets = _write(
        tmp_path / "s.yaml", _secret("crm-a", dsn=postgres_dsn), _secret("crm-b", dsn=postgres_dsn)
    )
    state = f"sqlite://{tmp_path}/state.sqlite3"
    args = ["-f", str(connection), "--secrets", str(secrets), "--state", state]

    first = _invoke(*args, "--output", "json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["result"] == "Succeeded"

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO contacts_a (email, first_name, last_name) VALUES "
            "('ann@example.com', 'Ann', 'Lee'), ('bob@example.com', 'Bob', 'Ray')"
        )
    second = _invoke(*args, "--output", "json")
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["records"]["toDestination"]["created"] == 2
    assert summary["apiCalls"]["source"] > 0 and summary["health"]["inSync"] == 2

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO contacts_a (email, last_name) VALUES ('not-an-email', 'X')")
        rows = conn.execute("SELECT email FROM contacts_b ORDER BY email").fetchall()
    assert rows == [("ann@example.com",), ("bob@example.com",)]
    third = _invoke(*args, env={"NO_COLOR": "1"})
    assert third.exit_code == 2, third.output
    assert "PartiallySucceeded" in third.output and "InvalidEmail" in third.output
    assert "not-an-email" not in third.output
    assert "\x1b[" not in third.output  # NO_COLOR and not a TTY: plain text


@pytest.mark.integration
def test_cluster_mode_reads_mounted_files_and_writes_the_termination_log(
    postgres_dsn: str, tmp_path: Path
) -> None:
    connection_dir = tmp_path / "connection"
    connection_dir.mkdir()
    connection = _write(connection_dir / "connection.yaml", _connection())
    for side in ("source", "destination"):
        (tmp_path / "secrets" / side).mkdir(parents=True)
        (tmp_path / "secrets" / side / "dsn").write_text(postgres_dsn)
    (tmp_path / "state-dsn").write_text(postgres_dsn + "\n")
    log = tmp_path / "termination-log"
    result = _invoke(
        "--log-format",
        "json",
        "--output",
        "json",
        env={
            "DATASYNC_CONNECTION_FILE": str(connection),
            "DATASYNC_SECRETS_DIR": str(tmp_path / "secrets"),
            "DATASYNC_STATE_DSN_FILE": str(tmp_path / "state-dsn"),
            "DATASYNC_TERMINATION_LOG": str(log),
            "DATASYNC_JOB_NAME": "crm-28912345",
        },
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["job"] == "crm-28912345" and summary["result"] == "Succeeded"
    decoded = summary_codec.decode(log.read_text())
    assert decoded is not None and decoded.job == "crm-28912345"
    for line in result.stderr.strip().splitlines():
        assert json.loads(line)["logger"].startswith("datasync")
    with psycopg.connect(postgres_dsn) as conn:  # the PostgreSQL state store was used
        count = conn.execute("SELECT COUNT(*) FROM datasync_schema").fetchone()
    assert count is not None and count[0] > 0


def test_postgresql_state_needs_a_dsn(tmp_path: Path) -> None:
    connection = _connection(state={"type": "PostgreSQL", "secretRef": {"name": "state-db"}})
    path = _write(tmp_path / "c.yaml", connection)
    secrets = _write(
        tmp_path / "s.yaml",
        _secret("crm-a", dsn="postgresql://u@127.0.0.1:1/x"),
        _secret("crm-b", dsn="postgresql://u@127.0.0.1:1/x"),
    )
    result = _invoke("-f", str(path), "--secrets", str(secrets))
    assert result.exit_code == 1
    assert "Secret 'state-db' (spec.state.secretRef) with key 'dsn'" in result.output
    for side in ("source", "destination"):
        (tmp_path / "mounted" / side).mkdir(parents=True)
    result = _invoke("--connection-file", str(path), "--secrets-dir", str(tmp_path / "mounted"))
    assert result.exit_code == 1 and "--state-dsn-file" in result.output


@pytest.mark.integration
def test_default_state_lives_under_xdg_state_home(postgres_dsn: str, tmp_path: Path) -> None:
    connection = _write(tmp_path / "c.yaml", _connection())
    secrets = _write(
        tmp_path / "s.yaml", _secret("crm-a", dsn=postgres_dsn), _secret("crm-b", dsn=postgres_dsn)
    )
    state_home = tmp_path / "xdg-state"
    result = _invoke(
        "-f",
        str(connection),
        "--secrets",
        str(secrets),
        "--dry-run",
        env={"XDG_STATE_HOME": str(state_home)},
    )
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert (state_home / "datasync" / "crm.sqlite3").is_file()


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "86400"])
def test_a_bad_commit_interval_names_the_variable(tmp_path: Path, value: str) -> None:
    secrets = _write(
        tmp_path / "secrets.yaml",
        _secret("crm-a", dsn="postgresql://u:pw@127.0.0.1:1/x"),
        _secret("crm-b", dsn="postgresql://u:pw@127.0.0.1:1/y"),
    )
    connection = _write(tmp_path / "connection.yaml", _connection())
    result = _invoke(
        "-f",
        str(connection),
        "--secrets",
        str(secrets),
        "--state",
        f"sqlite://{tmp_path}/state.sqlite3",
        env={"DATASYNC_COMMIT_SECONDS": value},
    )
    assert result.exit_code == 1
    assert "DATASYNC_COMMIT_SECONDS must be a number of seconds from 0 to 3600" in result.output
    assert "Traceback" not in result.output
