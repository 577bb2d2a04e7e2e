"""What the connector knows about its table: columns, types, constraints; and its DDL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from psycopg import sql

from datasync.connector import FieldSchema, FieldType, ObjectSchema

TEXT_TYPES = frozenset({"text", "character varying", "character", "citext", "name"})
INTEGER_TYPES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
DECIMAL_TYPES = frozenset({"numeric", "real", "double precision", "money"})
TIMESTAMP_TYPES = frozenset({"timestamp with time zone", "timestamp without time zone"})


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # information_schema.columns.data_type, e.g. "character varying"
    nullable: bool
    has_default: bool
    max_length: int | None
    generated: bool  # identity ALWAYS or GENERATED ... STORED: PostgreSQL refuses writes
    options: tuple[str, ...] | None = None

    @property
    def is_text(self) -> bool:
        return self.data_type in TEXT_TYPES

    @property
    def field_type(self) -> FieldType:
        if self.options is not None:
            return FieldType.ENUMERATION
        if self.data_type == "boolean":
            return FieldType.BOOLEAN
        if self.data_type in INTEGER_TYPES or self.data_type in DECIMAL_TYPES:
            return FieldType.NUMBER
        if self.data_type == "date":
            return FieldType.DATE
        if self.data_type in TIMESTAMP_TYPES:
            return FieldType.DATETIME
        return FieldType.STRING


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: dict[str, Column]
    id_column: str
    updated_at_column: str
    identity_column: str
    # Check/unique constraint name -> the single column it is about (for error reports).
    constraint_columns: dict[str, str] = field(default_factory=dict)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def read_only(self, column: Column) -> bool:
        return column.generated or column.name in (self.id_column, self.updated_at_column)

    def object_schema(self, object_type: str, semantic: dict[str, FieldType]) -> ObjectSchema:
        fields: dict[str, FieldSchema] = {}
        for column in self.columns.values():
            read_only = self.read_only(column)
            field_type = column.field_type
            if column.is_text and column.name in semantic:
                field_type = semantic[column.name]
            fields[column.name] = FieldSchema(
                name=column.name,
                type=field_type,
                label=column.name.replace("_", " ").capitalize(),
                required=not column.nullable and not column.has_default and not read_only,
                read_only=read_only,
                options=column.options,
                max_length=column.max_length,
            )
        return ObjectSchema(object_type=object_type, fields=fields)


# ------------------------------------------------------------------ introspection queries

RESOLVE_TABLE = sql.SQL(
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass({name}) AND c.relkind IN ('r', 'p', 'v', 'f')"
)
QUALIFIED_NAME = sql.SQL("quote_ident(%(schema)s) || '.' || quote_ident(%(table)s)")
UNQUALIFIED_NAME = sql.SQL("quote_ident(%(table)s)")

COLUMNS = sql.SQL(
    "SELECT column_name, data_type, is_nullable = 'YES', column_default IS NOT NULL "
    "OR is_identity = 'YES' OR is_generated = 'ALWAYS', character_maximum_length, "
    "(is_identity = 'YES' AND identity_generation = 'ALWAYS') OR is_generated = 'ALWAYS' "
    "FROM information_schema.columns WHERE table_schema = %(schema)s "
    "AND table_name = %(table)s ORDER BY ordinal_position"
)

# Single-column CHECK and UNIQUE constraints, with the CHECK's definition text.
CONSTRAINTS = sql.SQL(
    "SELECT con.conname, con.contype, a.attname, pg_catalog.pg_get_constraintdef(con.oid) "
    "FROM pg_catalog.pg_constraint con "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] "
    "WHERE con.conrelid = to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(%(table)s)) "
    "AND con.contype IN ('c', 'u', 'p') AND cardinality(con.conkey) = 1"
)

# Is there a unique index on exactly the identity column (ON CONFLICT needs one)?
IDENTITY_UNIQUE = sql.SQL(
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(%(table)s)) "
    "AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL "
    "AND a.attname = %(column)s)"
)

PRIVILEGES = sql.SQL(
    "SELECT has_table_privilege(to_regclass(quote_ident(%(schema)s) || '.' || "
    "quote_ident(%(table)s)), %(privilege)s)"
)

# `CHECK ((col = ANY (ARRAY['a'::text, 'b'::text])))` and similar: the quoted literals.
_IN_LIST = re.compile(r"^CHECK \(+.*= ANY \(+ARRAY\[(?P<items>.*)\]\)*(::\w+(\s\w+)*\[\])?\)+$")
_LITERAL = re.compile(r"'((?:[^']|'')*)'::[\w .\"]+")


def options_from_check(definition: str) -> tuple[str, ...] | None:
    """The allowed values of an `IN (...)`-style CHECK constraint, if it is one."""
    match = _IN_LIST.match(definition)
    if match is None:
        return None
    items = match.group("items")
    literals = _LITERAL.findall(items)
    if not literals or len(literals) != items.count("'::"):
        return None
    return tuple(item.replace("''", "'") for item in literals)


# ------------------------------------------------------------------ createTable DDL

# A UUIDv7 (RFC 9562: 48 bits of Unix milliseconds, then random bits) as text, built from
# PostgreSQL 13+ built-ins (`uuidv7()` arrives only in 18). New ids land at the right edge
# of the primary-key index, and of the state store's pair index, instead of on a random
# page of each: a million random ids made both indexes rewrite most of their pages.
# set_bit numbers bits from the least significant of each byte: 52 and 53 turn
# gen_random_uuid's version nibble 0100 into 0111; its variant bits are already 10.
TIME_ORDERED_UUID = sql.SQL(
    "(encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) "
    "FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid::text)"
)

# One generic trigger function per schema: the column to touch is the trigger's argument,
# so no column name is ever spliced into a function body.
TOUCH_FUNCTION = "datasync_touch_updated_at"
CREATE_TOUCH_FUNCTION = sql.SQL(
    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
    "BEGIN\n"
    "  NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], clock_timestamp()));\n"
    "  RETURN NEW;\n"
    "END\n"
    "$body$"
)
CREATE_TOUCH_TRIGGER = sql.SQL(
    "CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION {function}({column})"
)
# An insert is touched only when it brings no time or one from before its statement: the
# column's default (and the connector's own inserts) give clock_timestamp() already, and a
# WHEN condition costs far less than calling the function for every row (about 12% of a
# batch insert's time on the server).
CREATE_TOUCH_ON_INSERT_TRIGGER = sql.SQL(
    "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} FOR EACH ROW "
    "WHEN (NEW.{updated_at} IS NULL OR NEW.{updated_at} < statement_timestamp()) "
    "EXECUTE FUNCTION {function}({column})"
)


def create_table_statements(
    table: sql.Identifier,
    schema: str,
    id_column: str,
    identity_column: str,
    updated_at_column: str,
    text_columns: list[str],
    boolean_columns: list[str],
) -> list[sql.Composed]:
    reserved = {id_column, identity_column, updated_at_column}
    columns = [
        sql.SQL("{} text PRIMARY KEY DEFAULT {}").format(
            sql.Identifier(id_column), TIME_ORDERED_UUID
        ),
        sql.SQL("{} text UNIQUE").format(sql.Identifier(identity_column)),
    ]
    columns += [
        sql.SQL("{} text").format(sql.Identifier(name))
        for name in text_columns
        if name not in reserved
    ]
    columns += [
        sql.SQL("{} boolean").format(sql.Identifier(name))
        for name in boolean_columns
        if name not in reserved
    ]
    columns.append(
        sql.SQL("{} timestamptz NOT NULL DEFAULT clock_timestamp()").format(
            sql.Identifier(updated_at_column)
        )
    )
    function = sql.Identifier(schema, TOUCH_FUNCTION)
    return [
        sql.SQL("CREATE TABLE {table} ({columns})").format(
            table=table, columns=sql.SQL(", ").join(columns)
        ),
        # Case-insensitive uniqueness, and the index that makes `lower(col) = ANY(...)` fast.
        sql.SQL("CREATE UNIQUE INDEX ON {table} (lower({column}))").format(
            table=table, column=sql.Identifier(identity_column)
        ),
        # The keyset that read_changed pages through.
        sql.SQL("CREATE INDEX ON {table} ({updated_at}, {id})").format(
            table=table,
            updated_at=sql.Identifier(updated_at_column),
            id=sql.Identifier(id_column),
        ),
        CREATE_TOUCH_FUNCTION.format(function=function),
        CREATE_TOUCH_TRIGGER.format(
            trigger=sql.Identifier("datasync_touch_updated_at"),
            table=table,
            function=function,
            column=sql.Literal(updated_at_column),
        ),
        CREATE_TOUCH_ON_INSERT_TRIGGER.format(
            trigger=sql.Identifier("datasync_touch_updated_at_on_insert"),
            table=table,
            updated_at=sql.Identifier(updated_at_column),
            function=function,
            column=sql.Literal(updated_at_column),
        ),
    ]


def create_list_table_statement(table: sql.Identifier) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {table} (list_name text NOT NULL, record_id text NOT NULL, "
        "PRIMARY KEY (list_name, record_id))"
    ).format(table=table)
