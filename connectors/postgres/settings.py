"""Settings and credentials of the PostgreSQL connector, validated with clear errors."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datasync.connector import ConfigurationError

# PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes; refuse them instead.
MAX_IDENTIFIER_BYTES = 63
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10


def _check_identifier(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"must be at most {MAX_IDENTIFIER_BYTES} bytes (a PostgreSQL name)")
    return value


def split_table_name(value: str) -> tuple[str | None, str]:
    """`schema.table` or `table` (a schema name cannot contain a dot here)."""
    schema, dot, table = value.partition(".")
    if not dot:
        return None, _check_identifier(value)
    return _check_identifier(schema), _check_identifier(table)


class PostgresSettings(BaseModel):
    """Non-secret settings (`spec.<side>.settings`) of the postgres connector."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(description="The table holding the records: `schema.table` or `table`.")
    idColumn: str = Field(default="id", description="Primary-key column (the record id).")
    updatedAtColumn: str = Field(
        default="updated_at", description="Timestamp column moved forward on every change."
    )
    identityColumn: str = Field(
        default="email", description="UNIQUE column that matches records (upsert key)."
    )
    createTable: bool = Field(
        default=False,
        description='"true": create the table (standard columns, unique identity, updated_at '
        "trigger) and the listTable when missing.",
    )
    listTable: str | None = Field(
        default=None,
        description="Table of inclusion-list memberships with columns (list_name text, "
        "record_id text); inclusionList.list names a list_name.",
    )

    @field_validator("table", "listTable")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is not None:
            split_table_name(value)
        return value

    @field_validator("idColumn", "updatedAtColumn", "identityColumn")
    @classmethod
    def _column_name(cls, value: str) -> str:
        return _check_identifier(value)


# Secret keys. `dsn` alone is enough; the others build (or override parts of) a DSN.
DSN_KEY = "dsn"
PART_KEYS = {
    "host": "host",
    "port": "port",
    "database": "dbname",
    "username": "user",
    "password": "password",
    "sslmode": "sslmode",
}
SSL_ROOT_CERT_KEY = "sslrootcert"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def build_conninfo(credentials: Mapping[str, str], sslrootcert_path: str | None) -> str:
    """A libpq connection string from the Secret's keys. Errors never echo values."""
    dsn = credentials.get(DSN_KEY, "").strip()
    parts: dict[str, str] = {}
    for key, libpq_name in PART_KEYS.items():
        value = credentials.get(key, "")
        if value != "":
            parts[libpq_name] = value
    if "port" in parts:
        port = parts["port"].strip()
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                "Secret key `port` must be a TCP port number (1-65535), e.g. 5432", field="port"
            )
    if "sslmode" in parts and parts["sslmode"] not in SSL_MODES:
        raise ConfigurationError(
            f"Secret key `sslmode` must be one of {', '.join(SSL_MODES)}", field="sslmode"
        )
    if sslrootcert_path is not None:
        parts["sslrootcert"] = sslrootcert_path
    if not dsn:
        missing = [key for key in ("host", "database", "username") if not credentials.get(key)]
        if missing:
            raise ConfigurationError(
                "the Secret needs either key `dsn` (postgresql://user@host:5432/db) or keys "
                f"`host`, `database`, `username` and `password`; missing: {', '.join(missing)}",
                field=missing[0],
            )
    try:
        conninfo = make_conninfo(dsn, **parts)
        resolved = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise ConfigurationError(
            "Secret key `dsn` is not a valid libpq connection string or postgresql:// URI",
            field=DSN_KEY,
        ) from None
    if "connect_timeout" not in resolved:
        conninfo = make_conninfo(conninfo, connect_timeout=DEFAULT_CONNECT_TIMEOUT_SECONDS)
    return make_conninfo(conninfo, application_name="datasync")
