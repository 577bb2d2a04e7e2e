"""The PostgreSQL connector against a real PostgreSQL server (tests/fixtures/postgres.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
import pytest
from datasync_connectors.postgres import PostgresConnector
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from datasync.api.models import AuthType
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    Connector,
    FieldType,
    ReadPage,
)
from datasync.sandbox import Fault
from tests.connectors.contract import ConnectorContract

pytestmark = pytest.mark.integration

STAGES = ("subscriber", "lead", "customer")

TOUCH_FUNCTION = """
CREATE OR REPLACE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$
"""


class PostgresHarness:
    """Seeds and inspects a contacts table behind the connector's back (plain psycopg)."""

    object_type = "contacts"
    identity_field = "email"

    def __init__(self, dsn: str, table: str = "contacts", list_table: str = "lists") -> None:
        self.page_size = PostgresConnector.page_size
        self.dsn = dsn
        self.table = table
        self.list_table = list_table

    @property
    def settings(self) -> dict[str, str]:
        return {"table": self.table, "listTable": self.list_table}

    async def setup(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(TOUCH_FUNCTION)
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {t} (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, "
                    "first_name text, last_name text, phone varchar(20), job_title text, "
                    "company text, city text, country text, lifecycle_stage text "
                    "CHECK (lifecycle_stage IN ('subscriber', 'lead', 'customer')), "
                    "email_opt_out boolean, score integer, birthday date, "
                    "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
                ).format(t=sql.Identifier(self.table))
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TRIGGER touch BEFORE UPDATE ON {t} "
                    "FOR EACH ROW EXECUTE FUNCTION touch_updated_at()"
                ).format(t=sql.Identifier(self.table))
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {t} (list_name text, record_id text, "
                    "PRIMARY KEY (list_name, record_id))"
                ).format(t=sql.Identifier(self.list_table))
            )

    async def connector(self) -> Connector:
        connector = PostgresConnector(self.settings, {"dsn": self.dsn}, AuthType.APP_PARAMETERS)
        # Pages smaller than in production, so the contract's few hundred rows span pages.
        connector.page_size = self.page_size
        result: Connector = connector
        return result

    def credentials_parts(self) -> dict[str, str]:
        parts = conninfo_to_dict(self.dsn)
        return {
            "host": str(parts["host"]),
            "port": str(parts["port"]),
            "database": str(parts["dbname"]),
            "username": str(parts["user"]),
            "password": str(parts["password"]),
        }

    async def connector_with_bad_credentials(self) -> Connector:
        credentials = {**self.credentials_parts(), "password": "not-the-password-" + "x" * 8}
        connector: Connector = PostgresConnector(
            self.settings, credentials, AuthType.APP_PARAMETERS
        )
        return connector

    async def seed(self, records: list[dict[str, Any]]) -> list[str]:
        ids: list[str] = []
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn:
            for columns, group in _group_by_columns(records):
                query = sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) RETURNING id").format(
                    t=sql.Identifier(self.table),
                    c=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    v=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                )
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        query, [[r[c] for c in columns] for r in group], returning=True
                    )
                    while True:
                        row = await cursor.fetchone()
                        assert row is not None
                        ids.append(str(row[0]))
                        if not cursor.nextset():
                            break
        return ids

    async def modify(self, record_id: str, fields: dict[str, Any]) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn:
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(name)) for name in fields
            )
            await conn.execute(
                sql.SQL("UPDATE {t} SET {a} WHERE id = %s").format(
                    t=sql.Identifier(self.table), a=assignments
                ),
                [*fields.values(), int(record_id)],
            )

    async def fetch(self, record_id: str) -> dict[str, Any] | None:
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn:
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cursor.execute(
                sql.SQL("SELECT * FROM {t} WHERE id = %s").format(t=sql.Identifier(self.table)),
                [int(record_id)],
            )
            return await cursor.fetchone()

    async def count(self) -> int:
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn:
            cursor = await conn.execute(
                sql.SQL("SELECT count(*) FROM {t}").format(t=sql.Identifier(self.table))
            )
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])

    async def add_members(self, list_name: str, ids: list[str]) -> None:
        async with (
            await psycopg.AsyncConnection.connect(self.dsn) as conn,
            conn.cursor() as cursor,
        ):
            await cursor.executemany(
                sql.SQL("INSERT INTO {t} VALUES (%s, %s)").format(
                    t=sql.Identifier(self.list_table)
                ),
                [(list_name, record_id) for record_id in ids],
            )

    async def add_to_list(self, list_name: str, record_ids: list[str]) -> str | None:
        await self.add_members(list_name, record_ids)
        return list_name

    def inject(self, fault: Fault) -> bool:
        """PostgreSQL's transient fault, for real: the server ends the connector's sessions
        (as a restart, a failover or an idle timeout does). It stands for a connection reset
        and for a rejected token alike: the connector must log in again with its
        credentials. HTTP statuses have no PostgreSQL meaning: False."""
        if fault.kind != "reset" and not (fault.kind == "status" and fault.status == 401):
            return False
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone()
        return ended is not None and ended[0] >= 1

    def make_record(self, i: int) -> dict[str, Any]:
        return {
            "email": f"contact{i}@example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "lifecycle_stage": STAGES[i % len(STAGES)],
            "email_opt_out": i % 2 == 0,
        }

    def make_invalid_record(self) -> dict[str, Any]:
        return {"email": "invalid@example.com", "lifecycle_stage": "not-a-stage"}


def _group_by_columns(
    records: list[dict[str, Any]],
) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """Consecutive records with the same keys, so inserts keep the caller's order."""
    groups: list[tuple[list[str], list[dict[str, Any]]]] = []
    for record in records:
        if groups and groups[-1][0] == list(record):
            groups[-1][1].append(record)
        else:
            groups.append((list(record), [record]))
    return groups


@pytest.fixture
async def harness(postgres_dsn: str) -> PostgresHarness:
    harness = PostgresHarness(postgres_dsn)
    await harness.setup()
    return harness


class TestPostgresContract(ConnectorContract):
    """The shared connector contract, against a real PostgreSQL table."""

    transient_faults: ClassVar[Mapping[str, Fault]] = {
        "session-ended-by-the-server": Fault(kind="reset"),
    }

    @pytest.fixture
    async def harness(self, postgres_dsn: str) -> PostgresHarness:
        harness = PostgresHarness(postgres_dsn)
        harness.page_size = 100
        await harness.setup()
        return harness


@pytest.fixture
async def connector(harness: PostgresHarness) -> AsyncIterator[PostgresConnector]:
    connector = await harness.connector()
    assert isinstance(connector, PostgresConnector)
    async with connector:
        yield connector


async def collect(pages: AsyncIterator[ReadPage]) -> list[ReadPage]:
    return [page async for page in pages]


# ------------------------------------------------------------------ settings and auth


def test_settings_errors_name_the_setting() -> None:
    dsn = {"dsn": "postgresql://u:p@localhost/db"}
    with pytest.raises(ConfigurationError) as missing:
        PostgresConnector({}, dsn, AuthType.APP_PARAMETERS)
    assert missing.value.field == "table"
    with pytest.raises(ConfigurationError) as unknown:
        PostgresConnector({"table": "t", "tabel": "x"}, dsn, AuthType.APP_PARAMETERS)
    assert unknown.value.field == "tabel" and "known settings" in str(unknown.value)
    with pytest.raises(ConfigurationError) as flag:
        PostgresConnector({"table": "t", "createTable": "maybe"}, dsn, AuthType.APP_PARAMETERS)
    assert flag.value.field == "createTable"
    with pytest.raises(ConfigurationError) as long_name:
        PostgresConnector({"table": "t" * 64}, dsn, AuthType.APP_PARAMETERS)
    assert long_name.value.field == "table"
    with pytest.raises(ConfigurationError) as oauth:
        PostgresConnector({"table": "t"}, dsn, AuthType.OAUTH)
    assert oauth.value.field == "auth.type"


def test_credential_errors_name_the_key_never_the_value() -> None:
    secret = "s3cret-Pa55word"
    with pytest.raises(ConfigurationError) as missing:
        PostgresConnector({"table": "t"}, {"password": secret}, AuthType.APP_PARAMETERS)
    assert missing.value.field == "host" and "dsn" in str(missing.value)
    with pytest.raises(ConfigurationError) as port:
        PostgresConnector(
            {"table": "t"},
            {"host": "h", "port": "54x", "database": "d", "username": "u", "password": secret},
            AuthType.APP_PARAMETERS,
        )
    assert port.value.field == "port"
    with pytest.raises(ConfigurationError) as dsn:
        PostgresConnector(
            {"table": "t"}, {"dsn": f"host=h password={secret} =oops"}, AuthType.APP_PARAMETERS
        )
    assert dsn.value.field == "dsn" and secret not in str(dsn.value)


async def test_check_succeeds_with_dsn_and_with_parts(harness: PostgresHarness) -> None:
    async with await harness.connector() as connector:
        await connector.check()
        assert connector.api_calls > 0
    parts = harness.credentials_parts()
    async with PostgresConnector(harness.settings, parts, AuthType.APP_PARAMETERS) as connector:
        await connector.check()


async def test_bad_password_names_the_credential_without_revealing_it(
    harness: PostgresHarness,
) -> None:
    async with await harness.connector_with_bad_credentials() as connector:
        with pytest.raises(AuthenticationError) as caught:
            await connector.check()
    assert caught.value.credential == "password"
    assert "not-the-password" not in str(caught.value)
    assert "password" in str(caught.value)


async def test_unreachable_server_names_host_and_port(harness: PostgresHarness) -> None:
    parts = {**harness.credentials_parts(), "port": "1"}
    async with PostgresConnector(harness.settings, parts, AuthType.APP_PARAMETERS) as connector:
        with pytest.raises(AppUnreachableError) as caught:
            await connector.check()
    assert "`host`" in str(caught.value) and "`port`" in str(caught.value)
    assert parts["password"] not in str(caught.value)


async def test_missing_database_and_table_name_the_setting(harness: PostgresHarness) -> None:
    parts = {**harness.credentials_parts(), "database": "no_such_db"}
    async with PostgresConnector(harness.settings, parts, AuthType.APP_PARAMETERS) as connector:
        with pytest.raises(ConfigurationError) as database:
            await connector.check()
    assert database.value.field == "database"
    async with PostgresConnector(
        {"table": "nope"}, {"dsn": harness.dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        with pytest.raises(ConfigurationError) as table:
            await connector.check()
    assert table.value.field == "table" and "createTable" in str(table.value)
    async with PostgresConnector(
        {"table": "contacts", "updatedAtColumn": "modified"},
        {"dsn": harness.dsn},
        AuthType.APP_PARAMETERS,
    ) as connector:
        with pytest.raises(ConfigurationError) as column:
            await connector.check()
    assert column.value.field == "updatedAtColumn"
    async with PostgresConnector(
        {"table": "contacts", "identityColumn": "first_name"},
        {"dsn": harness.dsn},
        AuthType.APP_PARAMETERS,
    ) as connector:
        with pytest.raises(ConfigurationError) as identity:
            await connector.check()
    assert identity.value.field == "identityColumn" and "UNIQUE" in str(identity.value)


async def test_missing_privileges_are_reported_with_the_grant(harness: PostgresHarness) -> None:
    async with await psycopg.AsyncConnection.connect(harness.dsn, autocommit=True) as conn:
        await conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        await conn.execute("GRANT SELECT ON contacts TO reader")
    parts = {**harness.credentials_parts(), "username": "reader", "password": "reader-pw"}
    async with PostgresConnector(harness.settings, parts, AuthType.APP_PARAMETERS) as connector:
        with pytest.raises(ConfigurationError) as caught:
            await connector.check()
    assert caught.value.field == "table" and "GRANT" in str(caught.value)


# ------------------------------------------------------------------ describe


async def test_describe_reports_types_constraints_and_read_only(
    connector: PostgresConnector,
) -> None:
    described = await connector.describe("contacts")
    fields = described.fields
    assert fields["email"].type == FieldType.EMAIL and fields["email"].required
    assert fields["phone"].type == FieldType.PHONE and fields["phone"].max_length == 20
    assert fields["email_opt_out"].type == FieldType.BOOLEAN
    assert fields["score"].type == FieldType.NUMBER
    assert fields["birthday"].type == FieldType.DATE
    assert fields["updated_at"].type == FieldType.DATETIME and fields["updated_at"].read_only
    assert fields["id"].read_only and not fields["id"].required
    assert fields["lifecycle_stage"].type == FieldType.ENUMERATION
    assert fields["lifecycle_stage"].options == STAGES
    assert not fields["first_name"].required and not fields["first_name"].read_only
    with pytest.raises(ConfigurationError):
        await connector.describe("deals")


# ------------------------------------------------------------------ reads


async def test_read_changed_pages_by_keyset_and_honours_since(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(23)])
    connector.page_size = 5
    calls_before = connector.api_calls
    pages = await collect(connector.read_changed("contacts", None, ["email", "first_name"]))
    assert [len(page.records) for page in pages] == [5, 5, 5, 5, 3]
    assert connector.api_calls - calls_before <= len(pages) + 8  # one SELECT per page
    read_ids = [record.id for page in pages for record in page.records]
    assert read_ids == ids  # seeded in order: updated_at increases with the id
    watermarks = [page.watermark for page in pages if page.watermark is not None]
    assert len(watermarks) == len(pages) and watermarks == sorted(watermarks)
    record = pages[0].records[0]
    assert record.fields["email"] == "contact0@example.com"
    assert record.modified_at.tzinfo is not None

    middle = pages[2].records[0].modified_at
    later = await collect(connector.read_changed("contacts", middle, ["email"]))
    assert [r.id for p in later for r in p.records] == ids[10:]
    future = datetime.now(UTC) + timedelta(days=1)
    assert await collect(connector.read_changed("contacts", future, ["email"])) == []


async def test_changes_made_during_a_read_are_not_missed(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(12)])
    connector.page_size = 4
    seen: list[tuple[str, Any]] = []
    pages = connector.read_changed("contacts", None, ["first_name"])
    first = await anext(pages)
    seen += [(r.id, r.fields["first_name"]) for r in first.records]
    # Behind the connector's back: a row already read and one not yet read change.
    await harness.modify(ids[1], {"first_name": "Changed1"})
    await harness.modify(ids[9], {"first_name": "Changed9"})
    async for page in pages:
        seen += [(r.id, r.fields["first_name"]) for r in page.records]
    assert {record_id for record_id, _ in seen} == set(ids)
    assert (ids[1], "Changed1") in seen
    assert (ids[9], "Changed9") in seen
    assert seen[-2:] == [(ids[1], "Changed1"), (ids[9], "Changed9")]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    count=st.integers(min_value=1, max_value=15),
    page_size=st.integers(min_value=1, max_value=6),
    changes=st.lists(st.tuples(st.integers(0, 14), st.integers(0, 5)), max_size=8),
)
def test_keyset_read_never_misses_a_row_or_a_change(
    postgres_dsn: str, count: int, page_size: int, changes: list[tuple[int, int]]
) -> None:
    """However rows change between pages, every row is read and every change is seen."""

    async def scenario() -> None:
        table = "c_" + uuid.uuid4().hex[:8]
        harness = PostgresHarness(postgres_dsn, table=table, list_table=table + "_lists")
        await harness.setup()
        ids = await harness.seed([harness.make_record(i) for i in range(count)])
        async with await harness.connector() as connector:
            assert isinstance(connector, PostgresConnector)
            connector.page_size = page_size
            latest: dict[str, Any] = {}
            expected: dict[str, Any] = {i: f"First{n}" for n, i in enumerate(ids)}
            page_number = 0
            watermark: datetime | None = None
            async for page in connector.read_changed("contacts", None, ["first_name"]):
                latest.update((r.id, r.fields["first_name"]) for r in page.records)
                for target, at_page in changes:
                    if at_page == page_number and target < count:
                        value = f"v{page_number}-{target}"
                        await harness.modify(ids[target], {"first_name": value})
                        expected[ids[target]] = value
                page_number += 1
                watermark = page.watermark
            # Changes after the last page belong to the next run, which starts at the
            # stored watermark: together the two runs see every row's latest value.
            async for page in connector.read_changed("contacts", watermark, ["first_name"]):
                latest.update((r.id, r.fields["first_name"]) for r in page.records)
            assert latest == expected

    asyncio.run(scenario())


async def test_read_by_ids_leaves_out_missing_ones(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(3)])
    records = await connector.read("contacts", [ids[2], "999999", "not-a-number", ids[0]], [])
    assert [r.id for r in records] == [ids[2], ids[0]]
    assert records[0].fields["email"] == "contact2@example.com"
    assert set(records[0].fields) >= {"id", "email", "updated_at", "score"}
    # Fields asked for are the fields a record has, the id and updated_at columns included
    # only when asked for.
    [named] = await connector.read("contacts", [ids[1]], ["score", "email", "score"])
    assert named.fields == {"email": "contact1@example.com", "score": named.fields["score"]}
    [with_time] = await connector.read("contacts", [ids[1]], ["updated_at"])
    assert list(with_time.fields) == ["updated_at"]
    assert with_time.fields["updated_at"] == with_time.modified_at.isoformat()
    with pytest.raises(ConfigurationError) as unknown:
        await connector.read("contacts", ids, ["no_such_column"])
    assert unknown.value.field == "no_such_column"


async def test_lookup_is_case_insensitive_and_batched(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(12)])
    connector.max_batch_size = 5
    values = [f"CONTACT{i}@Example.COM" for i in range(12)] + ["nobody@example.com"]
    before = connector.api_calls
    records = await connector.lookup("contacts", "email", values, ["email"])
    assert sorted(r.id for r in records) == sorted(ids)
    assert connector.api_calls - before >= 3  # 13 values in batches of 5
    by_score = await connector.lookup("contacts", "score", ["1"], ["email"])
    assert by_score == []


# ------------------------------------------------------------------ writes


async def test_create_mixed_batch_reports_each_record_in_order(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    batch = [
        harness.make_record(1),
        harness.make_invalid_record(),  # CHECK violation, found by PostgreSQL
        {"email": "long@example.com", "phone": "+1 555 0100 0100 0100 0199"},  # varchar(20)
        {"first_name": "No email"},  # NOT NULL email
        {"email": "nul@example.com", "first_name": "a\x00b"},
        {"email": "score@example.com", "score": "twelve"},
        harness.make_record(2),
    ]
    results = await connector.create("contacts", batch)
    assert len(results) == len(batch)
    assert [r.ok for r in results] == [True, False, False, False, False, False, True]
    reasons = [(r.error.reason, r.error.field) if r.error else None for r in results]
    assert reasons[1] == ("InvalidOption", "lifecycle_stage")
    assert results[1].error is not None and results[1].error.code == "23514"
    assert reasons[2] == ("ValueTooLong", "phone")
    assert reasons[3] == ("RequiredFieldMissing", "email")
    assert reasons[4] == ("InvalidFormat", "first_name")
    assert reasons[5] == ("InvalidFormat", "score")
    for result, record in zip(results, batch, strict=True):
        if result.error is not None:
            for value in record.values():
                if isinstance(value, str) and len(value) > 3:
                    assert value not in result.error.message
    assert results[0].record_id is not None and results[6].record_id is not None
    stored = await harness.fetch(results[6].record_id)
    assert stored is not None and stored["email"] == "contact2@example.com"
    assert await harness.count() == 2


async def test_constraint_errors_found_by_the_server_fall_back_to_row_by_row(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    await harness.seed([{"email": "taken@example.com"}])
    # A case variant of an existing email passes ON CONFLICT (email) but hits a unique
    # index on lower(email): only PostgreSQL can tell; the good rows are still written.
    async with await psycopg.AsyncConnection.connect(harness.dsn, autocommit=True) as conn:
        await conn.execute("CREATE UNIQUE INDEX ON contacts (lower(email))")
    batch = [
        {"email": "fresh1@example.com"},
        {"email": "TAKEN@example.com"},
        {"email": "fresh2@example.com"},
    ]
    results = await connector.create("contacts", batch)
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error is not None and error.reason == "DuplicateRecord" and error.code == "23505"
    assert "taken" not in error.message.lower()
    assert await harness.count() == 3


async def test_create_is_an_idempotent_upsert_on_the_identity(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    batch = [harness.make_record(i) for i in range(5)]
    first = await connector.create("contacts", batch)
    changed = [{**record, "company": "Acme"} for record in batch]
    second = await connector.create("contacts", changed)
    assert [r.record_id for r in first] == [r.record_id for r in second]
    assert all(r.ok for r in first + second)
    assert await harness.count() == 5
    assert first[0].record_id is not None
    stored = await harness.fetch(first[0].record_id)
    assert stored is not None and stored["company"] == "Acme"
    # The same identity twice in one batch: both results point at one row.
    twice = await connector.create("contacts", [{"email": "dup@x.io"}, {"email": "dup@x.io"}])
    assert twice[0].ok and twice[0].record_id == twice[1].record_id
    assert await harness.count() == 6


async def test_create_batches_larger_than_the_maximum_are_split(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    connector.max_batch_size = 4
    results = await connector.create("contacts", [harness.make_record(i) for i in range(10)])
    assert len({r.record_id for r in results}) == 10 and all(r.ok for r in results)
    assert await harness.count() == 10


async def test_update_mixed_batch_and_moves_updated_at(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(3)])
    before = await harness.fetch(ids[0])
    assert before is not None
    updates = [
        (ids[0], {"first_name": "Ann", "score": "7", "email_opt_out": "yes"}),
        ("424242", {"first_name": "Ghost"}),
        (ids[1], {"lifecycle_stage": "bogus"}),
        (ids[2], {"birthday": "2001-02-03", "id": "5", "nonexistent": 1}),
        ("abc", {"first_name": "Bad id"}),
    ]
    results = await connector.update("contacts", updates)
    assert [r.record_id for r in results] == [ids[0], "424242", ids[1], ids[2], "abc"]
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert results[1].error is not None and results[1].error.reason == "NotFound"
    assert results[2].error is not None and results[2].error.reason == "InvalidOption"
    assert {(e.reason, e.field) for e in results[3].field_errors} == {
        ("ReadOnlyField", "id"),
        ("UnknownField", "nonexistent"),
    }
    after = await harness.fetch(ids[0])
    assert after is not None
    assert (after["first_name"], after["score"], after["email_opt_out"]) == ("Ann", 7, True)
    assert after["updated_at"] > before["updated_at"]
    untouched = await harness.fetch(ids[1])
    assert untouched is not None and untouched["lifecycle_stage"] == "lead"
    third = await harness.fetch(ids[2])
    assert third is not None and str(third["birthday"]) == "2001-02-03"


# ------------------------------------------------------------------ hostile input


HOSTILE = '"; DROP TABLE victim; --'


async def test_hostile_identifiers_and_values_leave_the_database_intact(
    postgres_dsn: str,
) -> None:
    table = 'we"ird; DROP TABLE victim; --'
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE victim (x int)")
    settings_ = {
        "table": table,
        "createTable": "true",
        "identityColumn": "e'mail\"",
        "updatedAtColumn": "$$touched$$",
        "listTable": "li'sts",
    }
    async with PostgresConnector(
        settings_, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        await connector.check()
        described = await connector.describe("contacts")
        assert "e'mail\"" in described.fields
        values = {
            "e'mail\"": "o'brien\"; DROP TABLE victim; --@example.com",
            "first_name": HOSTILE,
            "company": "Robert'); DROP TABLE victim;--",
            "city": "$$ ; $body$ \\ \\x00 %s %(x)s {}",
        }
        [created] = await connector.create("contacts", [values])
        assert created.ok and created.record_id is not None
        [read] = await connector.read("contacts", [created.record_id], list(values))
        assert {k: read.fields[k] for k in values} == values
        found = await connector.lookup(
            "contacts", "e'mail\"", [values["e'mail\""].upper()], ["first_name"]
        )
        assert [r.id for r in found] == [created.record_id]
        [updated] = await connector.update(
            "contacts", [(created.record_id, {"last_name": HOSTILE})]
        )
        assert updated.ok
        assert await connector.list_members(HOSTILE, [created.record_id]) == set()
        [nul] = await connector.update("contacts", [(created.record_id, {"city": "a\x00"})])
        assert nul.error is not None and nul.error.reason == "InvalidFormat"
        assert "NUL" in nul.error.message
        # Writes moved the trigger-maintained watermark column.
        pages = await collect(connector.read_changed("contacts", None, ["last_name"]))
        assert pages[-1].records[-1].fields["last_name"] == HOSTILE
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cursor = await conn.execute("SELECT to_regclass('victim') IS NOT NULL")
        assert await cursor.fetchone() == (True,)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    text=st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        max_size=40,
    )
)
def test_any_text_round_trips_verbatim(harness_dsn: str, text: str) -> None:
    async def scenario() -> None:
        email = f"{uuid.uuid4().hex}@example.com"
        async with PostgresConnector(
            {"table": "contacts"}, {"dsn": harness_dsn}, AuthType.APP_PARAMETERS
        ) as connector:
            [created] = await connector.create(
                "contacts", [{"email": email, "company": text, "city": text}]
            )
            assert created.ok and created.record_id is not None
            [record] = await connector.read("contacts", [created.record_id], ["company"])
            assert record.fields["company"] == text
            [again] = await connector.update(
                "contacts", [(created.record_id, {"city": text + "!"})]
            )
            assert again.ok
            [record] = await connector.read("contacts", [created.record_id], ["city"])
            assert record.fields["city"] == text + "!"

    asyncio.run(scenario())


@pytest.fixture
def harness_dsn(postgres_dsn: str) -> str:
    asyncio.run(PostgresHarness(postgres_dsn).setup())
    return postgres_dsn


# ------------------------------------------------------------------ lists, createTable


async def test_list_membership_and_paging(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(7)])
    await harness.add_members("newsletter", ids[:5])
    await harness.add_members("other", ids[5:])
    assert await connector.list_members("newsletter", ids) == set(ids[:5])
    assert await connector.list_members("missing", ids) == set()
    connector.page_size = 2
    pages = [page async for page in connector.iter_list_members("newsletter")]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(i for page in pages for i in page) == sorted(ids[:5])


async def test_lists_need_the_list_table_setting(harness: PostgresHarness) -> None:
    async with PostgresConnector(
        {"table": harness.table}, {"dsn": harness.dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        with pytest.raises(ConfigurationError) as caught:
            await connector.list_members("newsletter", ["1"])
    assert caught.value.field == "listTable"


async def test_create_table_builds_a_table_whose_trigger_moves_updated_at(
    postgres_dsn: str,
) -> None:
    settings_: Mapping[str, str] = {
        "table": "crm.people",
        "createTable": "true",
        "listTable": "crm.memberships",
    }
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute("CREATE SCHEMA crm")
    async with PostgresConnector(
        settings_, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        await connector.check()
        fields = (await connector.describe("contacts")).fields
        assert set(connector.standard_fields["contacts"].values()) <= set(fields)
        assert fields["email_opt_out"].type == FieldType.BOOLEAN
        [created] = await connector.create("contacts", [{"email": "a@example.com"}])
        assert created.ok
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT updated_at FROM crm.people")
        before = await cursor.fetchone()
        await conn.execute("UPDATE crm.people SET city = 'Oslo'")
        cursor = await conn.execute("SELECT updated_at FROM crm.people")
        after = await cursor.fetchone()
        assert before is not None and after is not None and after[0] > before[0]
        # Another writer's insert gets a current time, whatever time it brings.
        await conn.execute(
            "INSERT INTO crm.people (email, updated_at) VALUES ('old@example.com', "
            "'2001-01-01'), ('null@example.com', NULL)"
        )
        cursor = await conn.execute(
            "SELECT count(*) FROM crm.people WHERE email IN ('old@example.com', "
            "'null@example.com') AND updated_at > %s",
            [after[0]],
        )
        assert await cursor.fetchone() == (2,)
        await conn.execute("INSERT INTO crm.memberships VALUES ('vip', %s)", [created.record_id])
    # Its ids are time-ordered UUIDs (version 7), so new rows land at the end of indexes.
    async with PostgresConnector(
        settings_, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        before_ms = int(datetime.now(UTC).timestamp() * 1000)
        later = await connector.create(
            "contacts", [{"email": f"v7-{n}@example.com"} for n in range(300)]
        )
        after_ms = int(datetime.now(UTC).timestamp() * 1000)
    ids = [uuid.UUID(str(result.record_id)) for result in later]
    assert {(u.version, u.variant) for u in ids} == {(7, uuid.RFC_4122)}
    assert len(set(ids)) == 300
    stamps = [u.int >> 80 for u in ids]  # the leading 48 bits: Unix milliseconds
    assert before_ms <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after_ms
    assert uuid.UUID(str(created.record_id)).int >> 80 <= stamps[0]
    # A second connector finds the existing table and does not recreate it.
    async with PostgresConnector(
        settings_, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        await connector.check()
        assert created.record_id is not None
        assert await connector.list_members("vip", [created.record_id]) == {created.record_id}
        records = await connector.lookup("contacts", "email", ["A@EXAMPLE.COM"], ["city"])
        assert [r.fields["city"] for r in records] == ["Oslo"]


async def test_concurrent_operations_share_one_connection_safely(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    await harness.seed([harness.make_record(i) for i in range(20)])
    connector.page_size = 3

    async def read_all() -> int:
        return sum(
            len(p.records) for p in await collect(connector.read_changed("contacts", None, []))
        )

    async def write() -> list[bool]:
        results = await connector.create(
            "contacts", [harness.make_record(i) for i in range(20, 30)]
        )
        return [r.ok for r in results]

    counted, written = await asyncio.gather(read_all(), write())
    assert all(written) and counted >= 20
    assert await harness.count() == 30


# ------------------------------------------------------------------ properties and memory

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["2024-02-30", "2024-02-03", "20240203", "yes", "off", " 7 ", "1e3"]),
    st.sampled_from([*STAGES, "LEAD", ""]),
)
WRITABLE = ["first_name", "phone", "lifecycle_stage", "email_opt_out", "score", "birthday"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(column=st.sampled_from(WRITABLE), value=ANY_VALUE, creating=st.booleans())
# A tiny float is 17 characters in Python but hundreds as a PostgreSQL numeric.
@example(column="phone", value=2.2250738585e-313, creating=False)
@example(column="first_name", value={"nested": [1, "two"]}, creating=True)
def test_any_value_yields_a_result_and_never_blocks_the_good_rows(
    harness_dsn: str, column: str, value: Any, creating: bool
) -> None:
    """Whatever one record holds, the batch answers per record and the others are written."""

    async def scenario() -> None:
        tag = uuid.uuid4().hex
        good = [{"email": f"a{tag}@example.com"}, {"email": f"b{tag}@example.com"}]
        odd = {"email": f"c{tag}@example.com", column: value}
        async with PostgresConnector(
            {"table": "contacts"}, {"dsn": harness_dsn}, AuthType.APP_PARAMETERS
        ) as connector:
            if creating:
                results = await connector.create("contacts", [good[0], odd, good[1]])
            else:
                made = await connector.create("contacts", [*good, {"email": odd["email"]}])
                ids = [str(r.record_id) for r in made]
                results = await connector.update(
                    "contacts",
                    [(ids[0], {"city": "x"}), (ids[2], {column: value}), (ids[1], {"city": "y"})],
                )
            assert len(results) == 3
            assert results[0].ok and results[2].ok
            middle = results[1]
            if middle.error is not None:
                assert middle.error.field == column
                assert middle.error.code
                if isinstance(value, str) and len(value) >= 4:
                    assert value not in middle.error.message
            found = await connector.lookup(
                "contacts", "email", [g["email"] for g in good], ["email"]
            )
            assert len(found) == 2

    asyncio.run(scenario())


async def test_reading_streams_pages_instead_of_loading_the_table(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    import tracemalloc

    async with await psycopg.AsyncConnection.connect(harness.dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO contacts (email, company) SELECT 'bulk' || n || '@example.com', "
            "repeat('x', 500) FROM generate_series(1, 20000) AS n"
        )
    connector.page_size = 500
    tracemalloc.start()
    try:
        count = 0
        async for page in connector.read_changed("contacts", None, ["email", "company"]):
            assert len(page.records) <= 500
            count += len(page.records)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20000
    # The whole table is >10 MB as Python objects; one page of 500 is well under 4 MB.
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes: the read is not streaming"


async def _terminate_backend(dsn: str, connector: PostgresConnector) -> None:
    assert connector._connection is not None
    pid = connector._connection.info.backend_pid
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", [pid])


async def test_a_lost_connection_is_replaced_once(
    harness: PostgresHarness, connector: PostgresConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(3)])
    assert len(await connector.read("contacts", ids, ["email"])) == 3
    await _terminate_backend(harness.dsn, connector)
    assert len(await connector.read("contacts", ids, ["email"])) == 3
    await _terminate_backend(harness.dsn, connector)
    [result] = await connector.update("contacts", [(ids[0], {"city": "Lisbon"})])
    assert result.ok
    await _terminate_backend(harness.dsn, connector)
    [created] = await connector.create("contacts", [harness.make_record(9)])
    assert created.ok and await harness.count() == 4
    stored = await harness.fetch(ids[0])
    assert stored is not None and stored["city"] == "Lisbon"


async def test_the_engine_syncs_two_tables_both_ways(postgres_dsn: str) -> None:
    """The connector behind the real sync engine: PostgreSQL table to PostgreSQL table."""
    from datasync.api.models import DataSyncConnectionSpec
    from datasync.engine import run_sync
    from datasync.state import open_store

    def endpoint(table: str) -> dict[str, Any]:
        return {
            "app": "postgres",
            "auth": {"type": "AppParameters", "secretRef": {"name": table.replace("_", "-")}},
            "settings": {"table": table, "createTable": "true"},
        }

    spec = DataSyncConnectionSpec.model_validate(
        {
            "direction": "TwoWay",
            "schedule": "*/15 * * * *",
            "source": endpoint("left_contacts"),
            "destination": endpoint("right_contacts"),
        }
    )
    store = open_store("sqlite:///:memory:", "test/postgres")

    def pair() -> tuple[PostgresConnector, PostgresConnector]:
        credentials = {"dsn": postgres_dsn}
        return (
            PostgresConnector(spec.source.settings, credentials, AuthType.APP_PARAMETERS),
            PostgresConnector(spec.destination.settings, credentials, AuthType.APP_PARAMETERS),
        )

    left, right = pair()
    async with left, right:
        await right.check()  # creates the destination table
        people = [
            {"email": f"p{i}@example.com", "first_name": f"P{i}", "email_opt_out": i % 2 == 0}
            for i in range(5)
        ]
        assert all(r.ok for r in await left.create("contacts", people))
    left, right = pair()
    async with left, right:
        first = await run_sync(spec, left, right, store)
    assert first.error is None and first.records.toDestination.created == 5
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT email, first_name, email_opt_out FROM right_contacts ORDER BY email"
        )
        copied = await cursor.fetchall()
        assert copied == [(p["email"], p["first_name"], p["email_opt_out"]) for p in people]
        await conn.execute(
            "UPDATE right_contacts SET first_name = 'Changed' WHERE email = 'p1@example.com'"
        )
    left, right = pair()
    async with left, right:
        second = await run_sync(spec, left, right, store)
    assert second.error is None and second.records.toSource.updated == 1
    assert second.records.toDestination.created == 0
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cursor = await conn.execute(
            "SELECT first_name FROM left_contacts WHERE email = 'p1@example.com'"
        )
        assert await cursor.fetchone() == ("Changed",)


async def test_a_server_that_never_answers_times_out_naming_host_and_port(
    harness: PostgresHarness,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Accept the connection, never speak the protocol; give up after a while so the
        # server can always shut down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        dsn = f"postgresql://someone:hunter2hunter2@127.0.0.1:{port}/db?connect_timeout=1"
        async with PostgresConnector(
            harness.settings, {"dsn": dsn}, AuthType.APP_PARAMETERS
        ) as connector:
            with pytest.raises(AppUnreachableError) as caught:
                await connector.check()
    message = str(caught.value)
    assert "`host`" in message and "`port`" in message
    assert "hunter2hunter2" not in message and "someone" not in message


async def test_a_full_server_is_a_retriable_condition(harness: PostgresHarness) -> None:
    from datasync.connector import RetriableError

    async with await psycopg.AsyncConnection.connect(harness.dsn, autocommit=True) as conn:
        await conn.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw' CONNECTION LIMIT 0")
        await conn.execute("GRANT ALL ON contacts TO limited")
    parts = {**harness.credentials_parts(), "username": "limited", "password": "limited-pw"}
    async with PostgresConnector(harness.settings, parts, AuthType.APP_PARAMETERS) as connector:
        with pytest.raises(RetriableError) as caught:
            await connector.check()
    assert "limited-pw" not in str(caught.value)


async def test_rows_without_updated_at_do_not_break_the_keyset(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE loose (id int PRIMARY KEY, email text UNIQUE, updated_at timestamp)"
        )
        await conn.execute(
            "INSERT INTO loose VALUES (1, 'a@x.io', NULL), (2, 'b@x.io', '2024-01-01'), "
            "(3, 'c@x.io', NULL), (4, 'd@x.io', '2024-01-02')"
        )
    async with PostgresConnector(
        {"table": "loose"}, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        connector.page_size = 1
        pages = await collect(connector.read_changed("contacts", None, ["email"]))
        assert [r.id for p in pages for r in p.records] == ["2", "4"]
        # A naive `timestamp` column is read as UTC.
        assert pages[0].watermark == datetime(2024, 1, 1, tzinfo=UTC)
        [loose] = await connector.read("contacts", ["1"], ["email"])
        assert loose.modified_at.tzinfo is not None


async def test_json_and_numeric_values_are_sent_exactly_or_refused_by_column(
    postgres_dsn: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE typed (id serial PRIMARY KEY, email text UNIQUE, doc jsonb, "
            "amount numeric, seen timestamptz, updated_at timestamptz NOT NULL DEFAULT now())"
        )
    big = 2**70 + 1  # beyond 64 bits
    doc = {"tags": ["a", "é"], "n": 1.5, "nested": {"ok": True, "none": None}}
    async with PostgresConnector(
        {"table": "typed"}, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        results = await connector.create(
            "contacts",
            [
                {"email": "a@x.io", "doc": doc, "amount": big, "seen": "2026-01-02T03:04:05Z"},
                {"email": "b@x.io", "doc": {"scores": [1.0, float("nan")]}},
                {"email": "c@x.io", "doc": [float("inf")]},
            ],
        )
    assert results[0].ok
    assert [(r.error.reason, r.error.field) for r in results[1:] if r.error] == [
        ("InvalidFormat", "doc"),
        ("InvalidFormat", "doc"),
    ]
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cursor = await conn.execute("SELECT doc, amount, seen FROM typed")
        rows = await cursor.fetchall()
    assert rows == [(doc, big, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))]


async def test_describe_reads_in_list_checks_of_any_text_type(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE people (id serial PRIMARY KEY, email text UNIQUE, "
            "stage varchar(10) CHECK (stage IN ('a', 'b''c', 'x, y')), "
            "tier text CHECK (tier = 'gold' OR tier = 'silver'), "
            "score int CHECK (score > 0), "
            "updated_at timestamptz NOT NULL DEFAULT now(), "
            "shout text GENERATED ALWAYS AS (upper(stage)) STORED)"
        )
    async with PostgresConnector(
        {"table": "public.people"}, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        fields = (await connector.describe("contacts")).fields
        assert fields["stage"].options == ("a", "b'c", "x, y")
        assert fields["stage"].type == FieldType.ENUMERATION
        assert fields["tier"].options is None and fields["tier"].type == FieldType.STRING
        assert fields["score"].options is None
        assert fields["shout"].read_only and not fields["shout"].required
        [result] = await connector.create("contacts", [{"email": "e@x.io", "shout": "NO"}])
        assert result.ok and [e.reason for e in result.field_errors] == ["ReadOnlyField"]


async def test_a_missing_schema_is_named_with_the_fix(postgres_dsn: str) -> None:
    settings_ = {"table": "nowhere.people", "createTable": "true"}
    async with PostgresConnector(
        settings_, {"dsn": postgres_dsn}, AuthType.APP_PARAMETERS
    ) as connector:
        with pytest.raises(ConfigurationError) as caught:
            await connector.check()
    assert caught.value.field == "table"
    assert "CREATE SCHEMA nowhere" in str(caught.value)
