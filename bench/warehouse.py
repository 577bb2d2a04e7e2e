"""Scenarios 4 and 5: OneWay into PostgreSQL, datasync next to the Singer target
`meltanolabs-target-postgres`, on the same records and the same server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import REPO_ROOT, SyncRun, run_sync, secret_doc, write_yaml
from datasync.demo.sample import COMPANIES, FIRST_NAMES, LAST_NAMES, PLACES, TITLES
from tests.fixtures.postgres import PostgresServer, load_connection

SINGER_VENV = REPO_ROOT / "bench" / ".venv-singer"
SINGER_TARGET = SINGER_VENV / "bin" / "target-postgres"
COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "job_title",
    "company",
    "city",
    "country",
    "lifecycle_stage",
)
STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "customer")
SOURCE_DDL = """
CREATE TABLE contacts (
  id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
  email text UNIQUE,
  first_name text, last_name text, phone text, job_title text, company text,
  city text, country text, lifecycle_stage text, email_opt_out boolean,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON contacts (updated_at, id);
"""


def records(count: int) -> Iterator[dict[str, Any]]:
    """Deterministic, realistic contacts (the demo's vocabulary, unique emails)."""
    for index in range(count):
        first = FIRST_NAMES[index % len(FIRST_NAMES)]
        last = LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)]
        company, domain = COMPANIES[index % len(COMPANIES)]
        city, country = PLACES[index % len(PLACES)]
        yield {
            "email": f"{first}.{last}.{index}@{domain}".lower(),
            "first_name": first,
            "last_name": last,
            "phone": f"+1 {201 + index % 700} 555 {index % 10_000:04d}",
            "job_title": TITLES[index % len(TITLES)],
            "company": company,
            "city": city,
            "country": country,
            "lifecycle_stage": STAGES[index % len(STAGES)],
            "email_opt_out": index % 31 == 0,
        }


SINGER_SCHEMA = {
    "type": "SCHEMA",
    "stream": "contacts",
    "key_properties": ["email"],
    "schema": {
        "type": "object",
        "properties": {
            **{name: {"type": ["string", "null"]} for name in COLUMNS},
            "email_opt_out": {"type": ["boolean", "null"]},
        },
    },
}


@dataclass
class ProcessRun:
    seconds: float
    peak_rss_mib: float
    exit_code: int
    stderr_tail: str
    cpu_seconds: float = 0.0


class Warehouse:
    """One PostgreSQL server (Debian's packages, temp dir) for all the runs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server = PostgresServer()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def database(self) -> tuple[str, str]:
        dsn = self.server.create_database()
        return dsn, dsn.rsplit("/", 1)[1]

    def source(self, count: int) -> tuple[str, Path]:
        """A source database with `count` contacts, and the same records as a Singer
        JSONL file (SCHEMA then RECORD messages)."""
        dsn, _ = self.database()
        singer = self.workdir / f"records-{count}.jsonl"
        started = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(SOURCE_DDL)
            with (
                connection.cursor() as cursor,
                cursor.copy(
                    "COPY contacts (" + ", ".join((*COLUMNS, "email_opt_out")) + ") FROM STDIN"
                ) as copy,
                singer.open("w") as out,
            ):
                out.write(json.dumps(SINGER_SCHEMA) + "\n")
                for record in records(count):
                    copy.write_row([record[name] for name in (*COLUMNS, "email_opt_out")])
                    out.write(
                        json.dumps({"type": "RECORD", "stream": "contacts", "record": record})
                        + "\n"
                    )
            # A table in use has been vacuumed: its rows' visibility is settled. Without
            # this, whoever reads a freshly copied table first (the datasync run, before the
            # Singer target reads its file) pays the one-time hint-bit writes: about 6 s
            # at 1M.
            connection.execute("VACUUM (ANALYZE) contacts")
        self.load_seconds = time.perf_counter() - started
        return dsn, singer

    def datasync(self, source_dsn: str, label: str) -> tuple[SyncRun, str]:
        destination_dsn, _ = self.database()
        run_dir = self.workdir / label
        run_dir.mkdir()
        connection = load_connection(f"bench-{label}", "bench")
        connection_file = write_yaml(run_dir / "connection.yaml", [connection])
        secrets_file = write_yaml(
            run_dir / "secrets.yaml",
            [
                secret_doc("source", {"dsn": source_dsn}, "bench"),
                secret_doc("destination", {"dsn": destination_dsn}, "bench"),
            ],
        )
        state = f"sqlite:///{(run_dir / 'state.sqlite3').resolve()}"
        return run_sync(connection_file, secrets_file, state, run_dir, label), destination_dsn

    def singer(self, records_file: Path, label: str) -> tuple[ProcessRun, str]:
        destination_dsn, database = self.database()
        config = self.workdir / f"{label}.singer.json"
        config.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": self.server.port,
                    "user": self.server.user,
                    "password": self.server.password,
                    "database": database,
                    "default_target_schema": "public",
                }
            )
        )
        stderr_path = self.workdir / f"{label}.singer.log"
        with records_file.open("rb") as stdin, open(stderr_path, "wb") as err:
            measured = measure_stdin(
                [str(SINGER_TARGET), "--config", str(config)],
                self.workdir / f"{label}.measure.json",
                stdin,
                err,
                self.workdir,
            )
        tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-10:])
        return ProcessRun(
            measured["seconds"],
            measured["maxRssKiB"] / 1024,
            measured["exitCode"],
            tail,
            measured["cpuSeconds"],
        ), destination_dsn


def measure_stdin(
    command: list[str], result: Path, stdin: Any, stderr: Any, cwd: Path
) -> dict[str, Any]:
    """Run `command` through bench.measure with `stdin` (see bench/measure.py for why)."""
    subprocess.run(
        [sys.executable, "-m", "bench.measure", str(result), "--", *command],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=REPO_ROOT,
        check=False,
    )
    figures: dict[str, Any] = json.loads(result.read_text())
    return figures


def count_rows(dsn: str, table: str = "contacts", schema: str = "public") -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
        return int(row[0]) if row else 0
