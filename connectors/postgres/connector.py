"""PostgreSQL connector: a table is the object, its columns are the fields.

One `psycopg.AsyncConnection` per connector, autocommit off, one explicit transaction per
operation (per page for reads). Identifiers are always composed with `psycopg.sql`;
values always travel as parameters (rows as one JSON array that PostgreSQL turns into rows
of the table's own type with `json_populate_recordset`, so every column gets its type).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from datasync.api.models import AuthType
from datasync.connector import (
    AuthSpec,
    ConfigurationError,
    Connector,
    FieldType,
    ObjectSchema,
    ReadPage,
    Record,
    RecordError,
    SecretKey,
    WriteResult,
    parse_settings,
)
from datasync.engine.values import remembered

from . import catalog, errors, schema, statements
from .catalog import Params, Query
from .schema import Column, TableInfo
from .settings import (
    SSL_ROOT_CERT_KEY,
    PostgresSettings,
    build_conninfo,
    split_table_name,
)
from .values import check_value, dumps, for_column, to_json_value

OBJECT_TYPE = "contacts"
# Values read that are JSON-compatible as they are (to_json_value returns them unchanged).
_JSON_READY = frozenset({str, bool, int, float, type(None)})
NEVER = datetime(1970, 1, 1, tzinfo=UTC)

CONTACT_FIELDS: dict[str, str] = {
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "phone": "phone",
    "jobTitle": "job_title",
    "company": "company",
    "city": "city",
    "country": "country",
    "lifecycleStage": "lifecycle_stage",
    "emailOptOut": "email_opt_out",
}


@dataclass(frozen=True)
class _Selection:
    """The columns a read selects (id and updated_at first), and where the fields asked
    for are among them (a record's fields are those, and only those)."""

    columns: list[str]
    fields: list[tuple[int, str]]

    def column_list(self) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(name) for name in self.columns)


@dataclass
class _Row:
    """One record of a write batch that passed the client-side checks."""

    index: int  # position in the caller's batch
    values: dict[str, Any]
    key: str | None  # identity value (create) or normalized id (update)


class PostgresConnector(Connector):
    name = "postgres"
    title = "PostgreSQL"
    auth = (
        AuthSpec(
            type=AuthType.APP_PARAMETERS,
            description=(
                "Either `dsn` (a libpq URI such as postgresql://user:pass@host:5432/db) or "
                "`host`, `port`, `database`, `username` and `password`; keys given next to "
                "`dsn` override its parts."
            ),
            keys=(
                SecretKey("dsn", "libpq connection string or postgresql:// URI", optional=True),
                SecretKey("host", "Server host name or address", optional=True),
                SecretKey("port", "Server port (default 5432)", optional=True),
                SecretKey("database", "Database name", optional=True),
                SecretKey("username", "Database user", optional=True),
                SecretKey("password", "The user's password", optional=True),
                SecretKey("sslmode", "disable ... verify-full (libpq sslmode)", optional=True),
                SecretKey(
                    SSL_ROOT_CERT_KEY,
                    "PEM content of the CA certificate(s) to verify the server with",
                    optional=True,
                ),
            ),
        ),
    )
    settings_model = PostgresSettings
    standard_fields: ClassVar[Mapping[str, Mapping[str, str]]] = {OBJECT_TYPE: CONTACT_FIELDS}
    # 1000 rows keep one statement's JSON parameter at a few hundred kB and its locks short,
    # while still amortizing the round trip; PostgreSQL itself has no row limit per statement.
    max_batch_size = 1000
    # INSERT ... ON CONFLICT (identity) DO UPDATE: see statements.upsert.
    creates_are_upserts = True
    # Rows per read_changed / list page: four write batches, so the engine records one
    # batch's pairs while the next is written (only the last batch's wait is not hidden).
    page_size: int = 8000

    def __init__(
        self,
        settings: Mapping[str, str],
        credentials: Mapping[str, str],
        auth_type: AuthType,
    ) -> None:
        super().__init__(settings, credentials, auth_type)
        if AuthType(auth_type) != AuthType.APP_PARAMETERS:
            raise ConfigurationError(
                "the postgres connector supports only `auth.type: AppParameters`",
                field="auth.type",
            )
        self.options = parse_settings(PostgresSettings, settings, "PostgreSQL")
        self._list_table: tuple[str | None, str] | None = (
            split_table_name(self.options.listTable) if self.options.listTable else None
        )
        build_conninfo(credentials, None)  # validate the Secret's keys early
        self._connection: psycopg.AsyncConnection[TupleRow] | None = None
        self._lock = asyncio.Lock()
        self._table: TableInfo | None = None
        self._checks: _TableChecks | None = None
        self._cert_path: str | None = None
        self._calls = 0

    # ------------------------------------------------------------------ plumbing

    @property
    def api_calls(self) -> int:
        return self._calls

    @property
    def _display_table(self) -> str:
        return self.options.table

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        if self._connection is not None:
            if not (self._connection.closed or self._connection.broken):
                return self._connection
            await self._connection.close()
            self._connection = None
        cert = self.credentials.get(SSL_ROOT_CERT_KEY)
        if cert and self._cert_path is None:
            handle, self._cert_path = tempfile.mkstemp(prefix="datasync-pg-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as file:
                file.write(cert)
        conninfo = build_conninfo(self.credentials, self._cert_path)
        try:
            connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=False)
        except psycopg.Error as exc:
            raise errors.connect_error(exc, self._secrets()) from None
        self._calls += 1
        await connection.execute("SET TIME ZONE 'UTC'")
        await connection.commit()
        self._connection = connection
        return connection

    def _secrets(self) -> list[str]:
        """Every credential value, and each part of the DSN, to keep out of messages."""
        values = [value for value in self.credentials.values() if value]
        with contextlib.suppress(psycopg.Error):
            dsn = conninfo_to_dict(self.credentials.get("dsn", ""))
            values += [str(value) for value in dsn.values() if value]
        return values

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        if self._cert_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._cert_path)
            self._cert_path = None

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """The connection, used by one operation at a time; psycopg errors translated."""
        async with self._lock:
            connection = None
            try:
                connection = await self._connect()
                yield connection
            except psycopg.Error as exc:
                if connection is not None and connection.broken:
                    raise errors.ConnectionLost(
                        f"the connection to PostgreSQL was lost: {errors.describe_sqlstate(exc)}"
                    ) from None
                raise errors.operation_error(exc, self._display_table) from None

    async def _query(
        self, query: sql.SQL | sql.Composed, params: Mapping[str, Any] | Sequence[Any]
    ) -> list[TupleRow]:
        """One statement in its own transaction. A connection lost since the last call
        (server restart, idle timeout) is replaced once; reads are safe to repeat."""
        try:
            return await self._query_once(query, params)
        except errors.ConnectionLost:
            return await self._query_once(query, params)

    async def _query_once(
        self, query: sql.SQL | sql.Composed, params: Mapping[str, Any] | Sequence[Any]
    ) -> list[TupleRow]:
        async with self._session() as connection, connection.transaction():
            return await self._execute(connection, query, params)

    async def _execute(
        self,
        connection: psycopg.AsyncConnection[TupleRow],
        query: Query,
        params: Params = None,
    ) -> list[TupleRow]:
        self._calls += 1
        if params is not None:
            query = _percent_safe(query, connection)
        cursor = await connection.execute(query, params)
        if cursor.description is None:
            return []
        rows: list[TupleRow] = await cursor.fetchall()
        return rows

    def _check_object(self, object_type: str) -> None:
        if object_type != OBJECT_TYPE:
            raise ConfigurationError(
                f"the postgres connector syncs object type {OBJECT_TYPE!r}, not {object_type!r}",
                field="objectType",
            )

    # ------------------------------------------------------------------ the table

    async def _table_info(self, connection: psycopg.AsyncConnection[TupleRow]) -> TableInfo:
        if self._table is None:

            async def execute(query: Query, params: Params = None) -> list[TupleRow]:
                return await self._execute(connection, query, params)

            async with connection.transaction():
                self._table = await catalog.load_table(
                    execute, self.options, self._list_table, CONTACT_FIELDS
                )
        return self._table

    def _select_list(self, table: TableInfo, fields: Sequence[str]) -> _Selection:
        wanted = list(dict.fromkeys(fields)) if fields else list(table.columns)
        unknown = [name for name in wanted if name not in table.columns]
        if unknown:
            raise ConfigurationError(
                f"table {self._display_table!r} has no column {unknown[0]!r}; "
                "fix the field mapping",
                field=unknown[0],
            )
        head = [table.id_column, table.updated_at_column]
        columns = head + [name for name in wanted if name not in head]
        asked = set(wanted)
        return _Selection(
            columns, [(index, name) for index, name in enumerate(columns) if name in asked]
        )

    def _record(self, selection: _Selection, row: TupleRow) -> Record:
        # The id and updated_at columns come first (see _select_list).
        modified = row[1]
        if not isinstance(modified, datetime):
            modified = NEVER  # a NULL updated_at (only read by id or lookup)
        elif modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        fields = {}
        for index, name in selection.fields:
            value = row[index]
            fields[name] = value if type(value) in _JSON_READY else to_json_value(value)
        return Record(id=str(row[0]), fields=fields, modified_at=modified)

    def _normalize_id(self, table: TableInfo, record_id: str) -> Any:
        """The id as the id column's Python type, or None when it cannot be such an id."""
        kind = table.columns[table.id_column].data_type
        try:
            if kind in schema.INTEGER_TYPES:
                return int(record_id)
            if kind == "uuid":
                return UUID(record_id)
        except ValueError:
            return None
        return record_id

    # ------------------------------------------------------------------ Connector API

    async def check(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
            self._table = None
        async with self._session() as connection:
            async with connection.transaction():
                await self._execute(connection, sql.SQL("SELECT 1"))
            table = await self._table_info(connection)
            async with connection.transaction():
                for privilege in ("SELECT", "INSERT", "UPDATE"):
                    rows = await self._execute(
                        connection,
                        schema.PRIVILEGES,
                        {"schema": table.schema, "table": table.name, "privilege": privilege},
                    )
                    if not rows[0][0]:
                        raise ConfigurationError(
                            f"the database user lacks {privilege} on {self._display_table!r}; "
                            f"run GRANT SELECT, INSERT, UPDATE ON {self._display_table} TO "
                            "<user>",
                            field="table",
                        )

    async def describe(self, object_type: str) -> ObjectSchema:
        self._check_object(object_type)
        async with self._session() as connection:
            table = await self._table_info(connection)
        semantic = {
            CONTACT_FIELDS["email"]: FieldType.EMAIL,
            CONTACT_FIELDS["phone"]: FieldType.PHONE,
        }
        return table.object_schema(object_type, semantic)

    async def read_changed(
        self, object_type: str, since: datetime | None, fields: Sequence[str]
    ) -> AsyncIterator[ReadPage]:
        self._check_object(object_type)
        async with self._session() as connection:
            table = await self._table_info(connection)
        selection = self._select_list(table, fields)
        select = sql.SQL("SELECT {columns} FROM {table}").format(
            columns=selection.column_list(),
            table=table.ident,
        )
        updated_at = sql.Identifier(table.updated_at_column)
        id_column = sql.Identifier(table.id_column)
        order = sql.SQL(" ORDER BY {u}, {i} LIMIT %(limit)s").format(u=updated_at, i=id_column)
        # Rows without an updated_at cannot be placed in the keyset order: never read here.
        first_filter = (
            sql.SQL(" WHERE {u} >= %(since)s").format(u=updated_at)
            if since is not None
            else sql.SQL(" WHERE {u} IS NOT NULL").format(u=updated_at)
        )
        # Keyset: everything after the last (updated_at, id) seen. A row changed while we
        # page gets a later updated_at, so it shows up again further on: nothing is missed.
        next_filter = sql.SQL(" WHERE ({u}, {i}) > (%(after_at)s, %(after_id)s)").format(
            u=updated_at, i=id_column
        )
        params: dict[str, Any] = {"limit": self.page_size, "since": since}
        rows = await self._query(select + first_filter + order, params)
        while rows:
            records = [self._record(selection, row) for row in rows]
            upcoming: asyncio.Task[list[TupleRow]] | None = None
            if len(rows) >= self.page_size:
                last = rows[-1]
                params = {"limit": self.page_size, "after_at": last[1], "after_id": last[0]}
                # The next page is read while the caller works on this one (a read in its
                # own transaction: the keyset order makes when it runs irrelevant).
                upcoming = asyncio.ensure_future(self._query(select + next_filter + order, params))
                upcoming.add_done_callback(_retrieve)
            try:
                yield ReadPage(records=records, watermark=records[-1].modified_at)
            finally:
                if upcoming is not None and not upcoming.done():
                    # Closed early: let the read finish rather than cut the connection.
                    await asyncio.wait([upcoming])
            if upcoming is None:
                return
            rows = await upcoming

    async def read(
        self, object_type: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        self._check_object(object_type)
        async with self._session() as connection:
            table = await self._table_info(connection)
        selection = self._select_list(table, fields)
        query = sql.SQL("SELECT {columns} FROM {table} WHERE {id} = ANY(%s)").format(
            columns=selection.column_list(),
            table=table.ident,
            id=sql.Identifier(table.id_column),
        )
        found: dict[str, Record] = {}
        for chunk in _chunks(ids, self.max_batch_size):
            keys = [key for key in (self._normalize_id(table, i) for i in chunk) if key is not None]
            if not keys:
                continue
            rows = await self._query(query, [keys])
            for row in rows:
                record = self._record(selection, row)
                found[record.id] = record
        ordered = [found.pop(str(self._normalize_id(table, i)), None) for i in ids]
        return [record for record in ordered if record is not None]

    async def lookup(
        self, object_type: str, field: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        self._check_object(object_type)
        async with self._session() as connection:
            table = await self._table_info(connection)
        if field not in table.columns:
            raise ConfigurationError(
                f"table {self._display_table!r} has no column {field!r} to look records up by",
                field=field,
            )
        selection = self._select_list(table, fields)
        target = sql.Identifier(field)
        if table.columns[field].is_text:
            # Case-insensitive (emails); uses an index on lower(col) when there is one.
            condition = sql.SQL(
                "lower({col}) = ANY(ARRAY(SELECT lower(v) FROM unnest(%s::text[]) AS v))"
            ).format(col=target)
        else:
            condition = sql.SQL("{col}::text = ANY(%s::text[])").format(col=target)
        query = sql.SQL("SELECT {columns} FROM {table} WHERE {condition} ORDER BY {id}").format(
            columns=selection.column_list(),
            table=table.ident,
            condition=condition,
            id=sql.Identifier(table.id_column),
        )
        records: list[Record] = []
        seen: set[str] = set()
        for chunk in _chunks([v for v in values if v is not None], self.max_batch_size):
            rows = await self._query(query, [list(chunk)])
            for row in rows:
                record = self._record(selection, row)
                if record.id not in seen:
                    seen.add(record.id)
                    records.append(record)
        return records

    # ------------------------------------------------------------------ lists

    def _list_ident(self, table: TableInfo) -> sql.Identifier:
        if self._list_table is None:
            raise ConfigurationError(
                "inclusion lists need setting `listTable`: a table with columns "
                "(list_name text, record_id text)",
                field="listTable",
            )
        list_schema, list_name = self._list_table
        return sql.Identifier(list_schema or table.schema, list_name)

    async def list_members(self, list_ref: str, ids: Sequence[str]) -> set[str]:
        async with self._session() as connection:
            table = await self._table_info(connection)
        query = sql.SQL(
            "SELECT record_id FROM {list} WHERE list_name = %s AND record_id = ANY(%s::text[])"
        ).format(list=self._list_ident(table))
        members: set[str] = set()
        for chunk in _chunks(list(ids), self.max_batch_size):
            rows = await self._query(query, [list_ref, list(chunk)])
            members.update(str(row[0]) for row in rows)
        return members

    async def iter_list_members(self, list_ref: str) -> AsyncIterator[list[str]]:
        async with self._session() as connection:
            table = await self._table_info(connection)
        query = sql.SQL(
            "SELECT record_id FROM {list} WHERE list_name = %s AND record_id > %s "
            "ORDER BY record_id LIMIT %s"
        ).format(list=self._list_ident(table))
        after = ""
        while True:
            rows = await self._query(query, [list_ref, after, self.page_size])
            if not rows:
                return
            page = [str(row[0]) for row in rows]
            yield page
            if len(rows) < self.page_size:
                return
            after = page[-1]

    # ------------------------------------------------------------------ writes

    async def create(
        self, object_type: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        self._check_object(object_type)
        results: list[WriteResult] = []
        for start in range(0, len(records), self.max_batch_size):
            batch = records[start : start + self.max_batch_size]
            results.extend(await self._write(batch, creating=True))
        return results

    async def update(
        self, object_type: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[WriteResult]:
        self._check_object(object_type)
        results: list[WriteResult] = []
        for start in range(0, len(updates), self.max_batch_size):
            batch = updates[start : start + self.max_batch_size]
            results.extend(await self._write(batch, creating=False))
        return results

    async def _write(
        self,
        batch: Sequence[Mapping[str, Any]] | Sequence[tuple[str, Mapping[str, Any]]],
        creating: bool,
    ) -> list[WriteResult]:
        async with self._session() as connection:
            table = await self._table_info(connection)
        results: list[WriteResult | None] = [None] * len(batch)
        field_errors: list[tuple[RecordError, ...]] = [()] * len(batch)
        groups: dict[tuple[str, ...], list[_Row]] = {}
        for index, item in enumerate(batch):
            if creating:
                assert isinstance(item, Mapping)
                record_id, fields = None, item
            else:
                assert isinstance(item, tuple)
                record_id, fields = item
            values, dropped, error = self._prepare(table, fields, creating)
            field_errors[index] = dropped
            key: str | None
            if error is None and not creating:
                normalized = self._normalize_id(table, str(record_id))
                if normalized is None:
                    error = _not_found(table, self._display_table)
                key = None if normalized is None else str(normalized)
            else:
                identity = values.get(table.identity_column)
                key = None if identity is None else str(identity)
            if error is not None:
                results[index] = WriteResult(record_id=record_id, error=error, field_errors=dropped)
                continue
            if not creating:
                values[table.id_column] = key
            groups.setdefault(tuple(sorted(values)), []).append(_Row(index, values, key))
        written = await self._write_groups(table, groups, creating)
        for index, outcome in written.items():
            record_id = outcome if isinstance(outcome, str) else None
            error = outcome if isinstance(outcome, RecordError) else None
            if not creating and error is not None:
                item = batch[index]
                assert isinstance(item, tuple)
                record_id = item[0]
            results[index] = WriteResult(
                record_id=record_id, error=error, field_errors=field_errors[index]
            )
        return [result for result in results if result is not None]

    def _prepare(
        self, table: TableInfo, fields: Mapping[str, Any], creating: bool
    ) -> tuple[dict[str, Any], tuple[RecordError, ...], RecordError | None]:
        """Writable values, fields dropped (unknown / read-only), or the record's error."""
        checks = self._checks_for(table)
        values: dict[str, Any] = {}
        dropped: list[RecordError] = []
        for name, value in fields.items():
            check = checks.columns.get(name)
            if check is None:
                dropped.append(
                    RecordError(
                        "UnknownField",
                        f"table {self._display_table!r} has no such column",
                        name,
                        code="42703",  # undefined_column
                    )
                )
                continue
            if check is _read_only_column:
                dropped.append(
                    RecordError("ReadOnlyField", "this column is read-only", name, code="428C9")
                )
                continue
            error, sent = check(value)
            if error is not None:
                return {}, tuple(dropped), error
            values[name] = sent
        if creating:
            for name in checks.needed_on_create:
                if name not in values:
                    return (
                        {},
                        tuple(dropped),
                        RecordError(
                            "RequiredFieldMissing",
                            f"column {name!r} is NOT NULL and has no default",
                            name,
                            code="23502",  # not_null_violation
                        ),
                    )
        return values, tuple(dropped), None

    def _checks_for(self, table: TableInfo) -> _TableChecks:
        """Each column's value check, built once per table description."""
        if self._checks is None or self._checks.table is not table:
            self._checks = _TableChecks.of(table)
        return self._checks

    async def _write_groups(
        self, table: TableInfo, groups: dict[tuple[str, ...], list[_Row]], creating: bool
    ) -> dict[int, str | RecordError]:
        """A lost connection is replaced once: creates are upserts on the identity and
        updates set values, so repeating a write whose commit went unconfirmed is safe."""
        try:
            return await self._write_groups_once(table, groups, creating)
        except errors.ConnectionLost:
            return await self._write_groups_once(table, groups, creating)

    async def _write_groups_once(
        self, table: TableInfo, groups: dict[tuple[str, ...], list[_Row]], creating: bool
    ) -> dict[int, str | RecordError]:
        """Each group in one statement; if any fails, every row again in its own savepoint."""
        if not groups:
            return {}
        outcomes: dict[int, str | RecordError] = {}
        async with self._session() as connection:
            try:
                async with connection.transaction():
                    for columns, rows in groups.items():
                        outcomes.update(
                            await self._write_batch(connection, table, columns, rows, creating)
                        )
                return outcomes
            except (psycopg.Error, _BatchMismatch) as exc:
                if isinstance(exc, psycopg.Error) and not errors.is_record_error(exc):
                    raise
            outcomes = {}
            async with connection.transaction():
                for columns, rows in groups.items():
                    for row in rows:
                        outcomes[row.index] = await self._write_one(
                            connection, table, columns, row, creating
                        )
        return outcomes

    async def _write_batch(
        self,
        connection: psycopg.AsyncConnection[TupleRow],
        table: TableInfo,
        columns: tuple[str, ...],
        rows: list[_Row],
        creating: bool,
    ) -> dict[int, str | RecordError]:
        keys = [row.key for row in rows]
        if None in keys or len(set(keys)) != len(keys):
            raise _BatchMismatch  # rows cannot be told apart in RETURNING: go row by row
        statement = (
            statements.upsert(table, columns) if creating else statements.update(table, columns)
        )
        payload = dumps([row.values for row in rows])
        returned = await self._execute(connection, statement, [payload])
        by_key = {str(key): str(record_id) for record_id, key in returned}
        outcomes: dict[int, str | RecordError] = {}
        for row in rows:
            record_id = by_key.get(str(row.key))
            if record_id is None:
                if creating:
                    raise _BatchMismatch  # e.g. a trigger rewrote the identity value
                outcomes[row.index] = _not_found(table, self._display_table)
            else:
                outcomes[row.index] = record_id
        return outcomes

    async def _write_one(
        self,
        connection: psycopg.AsyncConnection[TupleRow],
        table: TableInfo,
        columns: tuple[str, ...],
        row: _Row,
        creating: bool,
    ) -> str | RecordError:
        statement = (
            statements.upsert(table, columns) if creating else statements.update(table, columns)
        )
        try:
            async with connection.transaction():  # a savepoint
                returned = await self._execute(connection, statement, [dumps([row.values])])
        except psycopg.Error as exc:
            if not errors.is_record_error(exc):
                raise
            return errors.record_error(
                exc, table.constraint_columns, _guess_field(table, row.values)
            )
        if not returned:
            return _not_found(table, self._display_table)
        return str(returned[0][0])


_Check = Callable[[Any], tuple[RecordError | None, Any]]


def _column_check(column: Column) -> _Check:
    def check(value: Any) -> tuple[RecordError | None, Any]:
        error = check_value(column, value)
        return (error, None) if error is not None else (None, for_column(column, value))

    return remembered(check)


# The check of a read-only column: such values are dropped, never checked.
def _read_only_column(value: Any) -> tuple[RecordError | None, Any]:
    return None, value


@dataclass(frozen=True)
class _TableChecks:
    table: TableInfo
    columns: dict[str, _Check]
    needed_on_create: tuple[str, ...]  # NOT NULL, no default, writable: in table order

    @classmethod
    def of(cls, table: TableInfo) -> _TableChecks:
        return cls(
            table=table,
            columns={
                name: _read_only_column if table.read_only(column) else _column_check(column)
                for name, column in table.columns.items()
            },
            needed_on_create=tuple(
                column.name
                for column in table.columns.values()
                if not column.nullable and not column.has_default and not table.read_only(column)
            ),
        )


class _BatchMismatch(Exception):
    """The batch statement's result cannot be matched to its rows one to one."""


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a prefetch's outcome as seen: when the caller stops early, nobody awaits it
    (its error, if any, is raised to whoever does)."""
    if not task.cancelled():
        task.exception()


def _not_found(table: TableInfo, display: str) -> RecordError:
    return RecordError(
        "NotFound", f"no row with this id in {display!r}", table.id_column, code="02000"
    )


def _guess_field(table: TableInfo, values: Mapping[str, Any]) -> str | None:
    """For a data error PostgreSQL did not attribute: the one non-text column written."""
    candidates = [
        name
        for name in values
        if name in table.columns and not table.columns[name].is_text and name != table.id_column
    ]
    return candidates[0] if len(candidates) == 1 else None


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _percent_safe(query: Any, connection: psycopg.AsyncConnection[TupleRow]) -> Any:
    """`query` with every `%` inside an identifier doubled. psycopg looks for `%s`
    placeholders in the whole query text, quoted identifiers included, so a column named
    like `share_%` would break every query that has parameters."""
    if isinstance(query, sql.Composed):
        return sql.Composed([_percent_safe(part, connection) for part in query])
    if isinstance(query, sql.Identifier):
        quoted = query.as_string(connection)
        if "%" in quoted:
            return sql.SQL(quoted.replace("%", "%%"))
    return query
