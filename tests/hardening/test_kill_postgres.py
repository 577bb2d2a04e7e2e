"""SIGKILL `datasync sync` at random points of a OneWay load into PostgreSQL, where the
state commits in groups (the destination's creates are upserts, see
`_Run.commit_interval`; here every second, DATASYNC_COMMIT_SECONDS, so that runs of a few
seconds commit part way), then rerun: the destination holds every source record exactly
once, every pair points at its own record, and one more run changes nothing.

Source and destination are databases of the real PostgreSQL server; the state is a SQLite
file; the sync runs as a real subprocess.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from datasync.commands.sync import COMMIT_SECONDS_ENV
from datasync.http import ALLOW_LOCAL_ENV
from tests.fixtures.postgres import PostgresServer, load_connection
from tests.hardening.kills import sigkill_after

RECORDS = 50_000
# Kill until this many runs died with part of the load committed (at most KILLS tries).
PARTIAL_KILLS = 3
KILLS = 12
DATASYNC = str(Path(sys.executable).with_name("datasync"))


def _seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(
            "CREATE TABLE contacts (id text PRIMARY KEY DEFAULT gen_random_uuid()::text, "
            "email text UNIQUE, first_name text, last_name text, phone text, job_title text, "
            "company text, city text, country text, lifecycle_stage text, email_opt_out boolean, "
            "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        with (
            db.cursor() as cursor,
            cursor.copy("COPY contacts (email, first_name, last_name, city) FROM STDIN") as copy,
        ):
            for i in range(RECORDS):
                copy.write_row((f"person{i}@example.com", f"First{i}", f"Last{i}", f"C{i % 50}"))


def _write_files(workdir: Path, source: str, destination: str) -> None:
    connection = load_connection("load", "kill")
    (workdir / "connection.yaml").write_text(yaml.safe_dump(connection))
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"dsn": dsn},
        }
        for name, dsn in (("source", source), ("destination", destination))
    ]
    (workdir / "secrets.yaml").write_text(yaml.safe_dump_all(secrets))


def _start(workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            DATASYNC,
            "sync",
            "-f",
            str(workdir / "connection.yaml"),
            "--secrets",
            str(workdir / "secrets.yaml"),
            "--state",
            f"sqlite://{workdir / 'state.sqlite3'}",
            "--output",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, ALLOW_LOCAL_ENV: "true", "NO_COLOR": "1", COMMIT_SECONDS_ENV: "1"},
    )


def _sync(workdir: Path) -> dict[str, Any]:
    process = _start(workdir)
    out, _ = process.communicate(timeout=180)
    summary: dict[str, Any] = yaml.safe_load(out)
    return summary


def _rows(dsn: str) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """email -> (id, the synced values)."""
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT id, email, first_name, last_name, city FROM contacts").fetchall()
    assert len(rows) == len({row[1] for row in rows}), "an email appears twice"
    return {email: (str(record_id), tuple(values)) for record_id, email, *values in rows}


def _pair_count(workdir: Path) -> int:
    path = workdir / "state.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as state:
        return int(state.execute("SELECT COUNT(*) FROM datasync_pairs").fetchone()[0])


@pytest.mark.timeout(300)
def test_sigkill_during_a_load_into_postgres_loses_and_duplicates_nothing(
    postgres_server: PostgresServer, tmp_path: Path, tally: Counter[str]
) -> None:
    source, reference, destination = (postgres_server.create_database() for _ in range(3))
    _seed(source)
    (tmp_path / "reference").mkdir()
    (tmp_path / "killed").mkdir()
    _write_files(tmp_path / "reference", source, reference)
    _write_files(tmp_path / "killed", source, destination)

    started = time.monotonic()
    first = _sync(tmp_path / "reference")
    assert first["result"] == "Succeeded", first.get("error")
    full_run = time.monotonic() - started

    rng = random.Random(2811)
    kills = partial = 0
    for _ in range(KILLS):
        # Mid-load: the state commits once a second, so most kills land between a commit
        # and the next, with records in the destination the store does not know.
        killed = sigkill_after(_start(tmp_path / "killed"), rng.uniform(0.5, 1.0) * full_run)
        kills += killed
        paired = _pair_count(tmp_path / "killed")
        if killed and 0 < paired < RECORDS:
            partial += 1
            if partial == PARTIAL_KILLS:
                break
    tally["runs_killed"] += kills
    assert partial >= 1, f"no run was killed part way through ({kills} kills)"

    final = _sync(tmp_path / "killed")
    assert final["result"] == "Succeeded", final
    sources = _rows(source)
    got = _rows(destination)
    lost = set(sources) - set(got)
    tally["records_lost"] += len(lost)
    assert not lost, f"{len(lost)} records missing in the destination"
    assert {email: values for email, (_, values) in got.items()} == {
        email: values for email, (_, values) in sources.items()
    }
    assert set(got) == set(_rows(reference))
    # Every source record is paired once, with the destination record of its own email.
    with sqlite3.connect(tmp_path / "killed" / "state.sqlite3") as state:
        pairs = state.execute("SELECT source_id, destination_id FROM datasync_pairs").fetchall()
    email_of_source = {record_id: email for email, (record_id, _) in sources.items()}
    email_of_destination = {record_id: email for email, (record_id, _) in got.items()}
    assert len(pairs) == RECORDS
    assert all(email_of_source[s] == email_of_destination[d] for s, d in pairs)
    # Settled: one more run writes nothing.
    again = _sync(tmp_path / "killed")
    counts = again["records"]["toDestination"]
    assert again["result"] == "Succeeded"
    assert counts.get("created", 0) == counts.get("updated", 0) == 0, again
    tally["records_in_killed_sync"] += RECORDS
