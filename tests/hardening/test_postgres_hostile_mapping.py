"""Field names and values are data, never code: a HubSpot <-> PostgreSQL sync through the
real engine, with custom mappings into hostile column names of a hostile table and hostile
values in the records, leaves the database intact and every value verbatim."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import psycopg
import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.postgres import PostgresConnector
from psycopg import sql

from datasync.api.models import AuthType, DataSyncConnectionSpec, SyncResult
from datasync.engine import run_sync
from datasync.http import ALLOW_LOCAL_ENV
from datasync.state import open_store

TABLE = 'con"tacts; DROP TABLE victim; --'
COLUMNS = {  # HubSpot property -> hostile PostgreSQL column (each under 63 bytes)
    "jobtitle": 'ti"tle; DROP TABLE victim; --',
    # "%" matters: psycopg parses placeholders inside quoted identifiers too.
    "company": "%(x)s %s 50% {0} $1 ? :x; DELETE FROM victim",
    "city": "naïve 名前 🦄 \\ '' \"\"",
}
VALUES = [
    "Robert'); DROP TABLE victim;--",
    '"; DELETE FROM victim; --',
    "$$; $body$ \\ %s %(x)s {} {{}}",
    "名前 \u202e 🦄",
    "' OR '1'='1",
]

pytestmark = pytest.mark.integration


async def test_hostile_columns_and_values_round_trip_through_the_engine(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, tally: Counter[str]
) -> None:
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")
    rng = random.Random(3)
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("CREATE TABLE victim (x int)")
        db.execute("INSERT INTO victim VALUES (1), (2)")
    settings = {"table": TABLE, "createTable": "true"}
    async with PostgresConnector(
        settings, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        await connector.check()  # creates the table with its standard columns
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        for column in COLUMNS.values():
            db.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} text").format(
                    sql.Identifier(TABLE), sql.Identifier(column)
                )
            )
    hubspot = HubSpotSandbox()
    await hubspot.start()
    try:
        people = [
            {
                "email": f"p{i}@example.com",
                "lastname": rng.choice(VALUES),
                **{name: rng.choice(VALUES) for name in COLUMNS},
            }
            for i in range(30)
        ]
        hubspot.load(people)
        spec = DataSyncConnectionSpec.model_validate(
            {
                "direction": "TwoWay",
                "schedule": "*/15 * * * *",
                "source": {
                    "app": "hubspot",
                    "auth": {"type": "AppParameters", "secretRef": {"name": "hs"}},
                    "settings": hubspot.connector_settings(),
                },
                "destination": {
                    "app": "postgres",
                    "auth": {"type": "AppParameters", "secretRef": {"name": "pg"}},
                    "settings": settings,
                },
                "mappings": {
                    "defaults": False,
                    "fields": [
                        {"source": "lastname", "destination": "last_name"},
                        *(
                            {"source": name, "destination": column}
                            for name, column in COLUMNS.items()
                        ),
                    ],
                },
            }
        )
        store = open_store("sqlite:///:memory:", "sales/hostile")

        async def run() -> Any:
            from datasync_connectors.hubspot import HubSpotConnector

            source = HubSpotConnector(
                hubspot.connector_settings(),
                hubspot.credentials(AuthType.APP_PARAMETERS),
                AuthType.APP_PARAMETERS,
            )
            destination = PostgresConnector(
                settings, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
            )
            async with source, destination:
                return await run_sync(spec, source, destination, store)

        first = await run()
        assert first.result == SyncResult.SUCCEEDED, (first.error, first.failures)
        columns = [sql.Identifier("email"), *map(sql.Identifier, COLUMNS.values())]
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            rows = db.execute(
                sql.SQL("SELECT {} FROM {} ORDER BY email").format(
                    sql.SQL(", ").join(columns), sql.Identifier(TABLE)
                )
            ).fetchall()
            expected = sorted(
                (person["email"], *(person[name] for name in COLUMNS)) for person in people
            )
            assert sorted(rows) == expected
            # And back: an edit of a hostile column in PostgreSQL reaches HubSpot verbatim.
            db.execute(
                sql.SQL("UPDATE {} SET {} = %s, updated_at = now() WHERE email = %s").format(
                    sql.Identifier(TABLE), sql.Identifier(COLUMNS["jobtitle"])
                ),
                ["x'); DROP TABLE victim; --", "p0@example.com"],
            )
        second = await run()
        assert second.result == SyncResult.SUCCEEDED, second.error
        titles = {
            r["properties"]["email"]: r["properties"].get("jobtitle") for r in hubspot.records()
        }
        assert titles["p0@example.com"] == "x'); DROP TABLE victim; --"
        with psycopg.connect(postgres_dsn) as db:
            assert db.execute("SELECT count(*) FROM victim").fetchone() == (2,)
            tables = db.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
            assert tables == (2,)  # victim and the synced table, nothing else
        tally["hostile_values_written"] += len(people) * (len(COLUMNS) + 1)
    finally:
        await hubspot.stop()
