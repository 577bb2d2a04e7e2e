"""The write statements. Rows travel as one JSON parameter that PostgreSQL turns into
rows of the table's own type (`json_populate_recordset(NULL::table, $rows)`), so each
value is converted by its column's type whatever the columns of the batch. `json`, not
`jsonb`: the rows are read once, so converting them to jsonb first is wasted work (about
7% of a batch insert's time on the server)."""

from __future__ import annotations

from psycopg import sql

from .schema import TableInfo


def _rows_of(table: TableInfo) -> sql.Composed:
    return sql.SQL("json_populate_recordset(NULL::{table}, %s::json)").format(table=table.ident)


def upsert(table: TableInfo, columns: tuple[str, ...]) -> sql.Composed:
    names = [sql.Identifier(name) for name in columns]
    identity = sql.Identifier(table.identity_column)
    updates = [
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(name))
        for name in columns
        if name != table.identity_column
    ]
    # Always something to update, so RETURNING also yields rows that already existed.
    updates.append(sql.SQL("{c} = EXCLUDED.{c}").format(c=identity))
    targets = list(names)
    sources: list[sql.Composable] = list(names)
    if not table.columns[table.updated_at_column].generated:
        touched = sql.Identifier(table.updated_at_column)
        targets.append(touched)
        sources.append(sql.SQL("clock_timestamp()"))
        updates.append(sql.SQL("{u} = clock_timestamp()").format(u=touched))
    return sql.SQL(
        "INSERT INTO {table} ({targets}) SELECT {sources} FROM {rows} AS v "
        "ON CONFLICT ({identity}) DO UPDATE SET {updates} RETURNING {id}, {identity}"
    ).format(
        table=table.ident,
        targets=sql.SQL(", ").join(targets),
        sources=sql.SQL(", ").join(sources),
        rows=_rows_of(table),
        identity=identity,
        updates=sql.SQL(", ").join(updates),
        id=sql.Identifier(table.id_column),
    )


def update(table: TableInfo, columns: tuple[str, ...]) -> sql.Composed:
    id_column = sql.Identifier(table.id_column)
    assignments = [
        sql.SQL("{c} = v.{c}").format(c=sql.Identifier(name))
        for name in columns
        if name != table.id_column
    ]
    if not table.columns[table.updated_at_column].generated:
        assignments.append(
            sql.SQL("{u} = clock_timestamp()").format(u=sql.Identifier(table.updated_at_column))
        )
    return sql.SQL(
        "UPDATE {table} AS t SET {assignments} FROM {rows} AS v "
        "WHERE t.{id} = v.{id} RETURNING t.{id}, t.{id}"
    ).format(
        table=table.ident,
        assignments=sql.SQL(", ").join(assignments),
        rows=_rows_of(table),
        id=id_column,
    )


def write(table: TableInfo, columns: tuple[str, ...], creating: bool) -> sql.Composed:
    return upsert(table, columns) if creating else update(table, columns)
