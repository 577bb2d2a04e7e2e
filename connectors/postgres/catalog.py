"""Finding (or creating) the connector's table and describing it from the catalog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from psycopg import sql
from psycopg.rows import TupleRow

from datasync.connector import ConfigurationError

from . import schema
from .schema import Column, TableInfo
from .settings import PostgresSettings, split_table_name

Query = sql.SQL | sql.Composed
Params = Mapping[str, Any] | Sequence[Any] | None
Execute = Callable[[Query, Params], Awaitable[list[TupleRow]]]

# Standard columns created as boolean by `createTable` (all others are text).
BOOLEAN_COLUMNS = frozenset({"email_opt_out"})


async def load_table(
    execute: Execute,
    options: PostgresSettings,
    list_table: tuple[str | None, str] | None,
    standard_columns: Mapping[str, str],
) -> TableInfo:
    """The table's description; created first when missing and `createTable` is on.
    Runs inside the caller's transaction."""
    schema_name, table = split_table_name(options.table)
    resolved = await _resolve(execute, schema_name, table)
    if resolved is None and options.createTable:
        resolved = await _create_table(
            execute, options, schema_name, table, list_table, standard_columns
        )
    if resolved is None:
        raise ConfigurationError(
            f"table {options.table!r} does not exist (or the user cannot see it); create it, "
            'fix setting `table`, or set `createTable: "true"`',
            field="table",
        )
    return await _describe(execute, options, *resolved)


async def _resolve(execute: Execute, schema_name: str | None, table: str) -> tuple[str, str] | None:
    name = schema.UNQUALIFIED_NAME if schema_name is None else schema.QUALIFIED_NAME
    rows = await execute(
        schema.RESOLVE_TABLE.format(name=name), {"schema": schema_name, "table": table}
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


async def _create_table(
    execute: Execute,
    options: PostgresSettings,
    schema_name: str | None,
    table: str,
    list_table: tuple[str | None, str] | None,
    standard_columns: Mapping[str, str],
) -> tuple[str, str] | None:
    rows = await execute(sql.SQL("SELECT coalesce(%s, current_schema())"), [schema_name])
    if rows[0][0] is None:
        raise ConfigurationError(
            "cannot create the table: the search_path has no existing schema; write "
            "setting `table` as `schema.table`",
            field="table",
        )
    target_schema = str(rows[0][0])
    # Two runs creating the same table at once: the second waits, then finds it.
    await execute(
        sql.SQL("SELECT pg_advisory_xact_lock(hashtext(%s))"),
        [f"datasync:{target_schema}.{table}"],
    )
    if await _resolve(execute, target_schema, table) is None:
        columns = list(standard_columns.values())
        for statement in schema.create_table_statements(
            sql.Identifier(target_schema, table),
            target_schema,
            options.idColumn,
            options.identityColumn,
            options.updatedAtColumn,
            [name for name in columns if name not in BOOLEAN_COLUMNS],
            [name for name in columns if name in BOOLEAN_COLUMNS],
        ):
            await execute(statement, None)
    if list_table is not None:
        list_schema, list_name = list_table
        await execute(
            schema.create_list_table_statement(
                sql.Identifier(list_schema or target_schema, list_name)
            ),
            None,
        )
    return await _resolve(execute, target_schema, table)


async def _describe(
    execute: Execute, options: PostgresSettings, schema_name: str, table: str
) -> TableInfo:
    names = {"schema": schema_name, "table": table}
    columns: dict[str, Column] = {}
    for name, data_type, nullable, has_default, max_length, generated in await execute(
        schema.COLUMNS, names
    ):
        columns[name] = Column(
            name=name,
            data_type=data_type,
            nullable=bool(nullable),
            has_default=bool(has_default),
            max_length=max_length,
            generated=bool(generated),
        )
    constraint_columns: dict[str, str] = {}
    for conname, contype, column_name, definition in await execute(schema.CONSTRAINTS, names):
        constraint_columns[conname] = column_name
        column = columns.get(column_name)
        if contype == "c" and column is not None and column.options is None:
            options_found = schema.options_from_check(definition)
            if options_found is not None:
                columns[column_name] = Column(**{**column.__dict__, "options": options_found})
    _check_columns(options, columns)
    unique = await execute(schema.IDENTITY_UNIQUE, {**names, "column": options.identityColumn})
    if not unique[0][0]:
        raise ConfigurationError(
            f"column {options.identityColumn!r} (setting `identityColumn`) needs a UNIQUE "
            "constraint so creates can be upserts: ALTER TABLE ... ADD UNIQUE (...)",
            field="identityColumn",
        )
    return TableInfo(
        schema=schema_name,
        name=table,
        columns=columns,
        id_column=options.idColumn,
        updated_at_column=options.updatedAtColumn,
        identity_column=options.identityColumn,
        constraint_columns=constraint_columns,
    )


def _check_columns(options: PostgresSettings, columns: Mapping[str, Column]) -> None:
    settings = {
        "idColumn": options.idColumn,
        "updatedAtColumn": options.updatedAtColumn,
        "identityColumn": options.identityColumn,
    }
    for setting, column_name in settings.items():
        if column_name not in columns:
            raise ConfigurationError(
                f"table {options.table!r} has no column {column_name!r} (setting `{setting}`); "
                f"set `{setting}` to an existing column",
                field=setting,
            )
    if columns[options.updatedAtColumn].data_type not in schema.TIMESTAMP_TYPES:
        raise ConfigurationError(
            f"column {options.updatedAtColumn!r} (setting `updatedAtColumn`) must be a "
            "timestamp or timestamptz column",
            field="updatedAtColumn",
        )
