"""PostgreSQL errors, turned into the connector's errors without leaking values.

PostgreSQL's own messages quote the offending value (`invalid input syntax for type
boolean: "maybe"`, DETAIL `Key (email)=(ann@example.com) already exists`), so none of
its text is ever passed on: messages are built from the SQLSTATE, the error class name,
and the column or constraint names from the error's diagnostics.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    ConnectorError,
    FatalError,
    RecordError,
    RetriableError,
)

# SQLSTATE -> RecordError reason for per-record write failures.
RECORD_REASONS = {
    "23502": "RequiredFieldMissing",  # not_null_violation
    "22001": "ValueTooLong",  # string_data_right_truncation
    "23514": "InvalidOption",  # check_violation
    "23505": "DuplicateRecord",  # unique_violation
    "23503": "AppRejected",  # foreign_key_violation
    "22P02": "InvalidFormat",  # invalid_text_representation
    "22007": "InvalidFormat",  # invalid_datetime_format
    "22008": "InvalidFormat",  # datetime_field_overflow
    "22003": "InvalidFormat",  # numeric_value_out_of_range
    "22P05": "InvalidFormat",  # untranslatable_character
    "22021": "InvalidFormat",  # character_not_in_repertoire
    "21000": "DuplicateInBatch",  # cardinality_violation (same identity twice)
}

# Classes that mean "try again later": connection trouble, resources, conflicts, timeouts.
RETRIABLE_CLASSES = ("08", "53", "57", "40", "55")


class ConnectionLost(RetriableError):
    """The connection broke during an operation; a new one may be tried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "AppUnavailable")


def describe_sqlstate(exc: psycopg.Error) -> str:
    name = type(exc).__name__
    return f"{name} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else name


def is_record_error(exc: psycopg.Error) -> bool:
    """Errors caused by one row's data (classes 22 data exception and 23 constraints)."""
    state = exc.sqlstate or ""
    return state[:2] in ("22", "23") or state == "21000"


def record_error(
    exc: psycopg.Error, constraint_columns: dict[str, str], guess_field: str | None
) -> RecordError:
    state = exc.sqlstate or ""
    reason = RECORD_REASONS.get(state, "AppRejected")
    diag = exc.diag
    constraint = diag.constraint_name
    field = diag.column_name or constraint_columns.get(constraint or "")
    if field is None and state[:2] == "22":
        field = guess_field
    parts = [f"PostgreSQL rejected the record: {describe_sqlstate(exc)}"]
    if field:
        parts.append(f"column {field!r}")
    if constraint:
        parts.append(f"constraint {constraint!r}")
    return RecordError(reason=reason, message="; ".join(parts), field=field, code=state or None)


def operation_error(exc: psycopg.Error, table: str) -> ConnectorError:
    """An error that stops the operation (not one row's fault)."""
    state = exc.sqlstate or ""
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ConfigurationError(
            f"the database user lacks a privilege on {table!r} ({describe_sqlstate(exc)}); "
            "grant it: GRANT SELECT, INSERT, UPDATE ON <table> TO <user>",
            field="table",
        )
    if isinstance(exc, pg_errors.UndefinedTable):
        return ConfigurationError(
            f'table {table!r} does not exist; create it or set `createTable: "true"`',
            field="table",
        )
    if isinstance(exc, pg_errors.InvalidSchemaName):
        schema = table.split(".", 1)[0] if "." in table else "public"
        return ConfigurationError(
            f"schema {schema!r} of table {table!r} does not exist; create it "
            f"(CREATE SCHEMA {schema}) — createTable creates tables, not schemas",
            field="table",
        )
    if isinstance(exc, pg_errors.UndefinedColumn):
        return ConfigurationError(
            f"a column used on {table!r} does not exist ({describe_sqlstate(exc)}); check the "
            "settings idColumn, updatedAtColumn, identityColumn and the field mappings",
            field="table",
        )
    if state[:2] in RETRIABLE_CLASSES or (isinstance(exc, psycopg.OperationalError) and not state):
        return RetriableError(
            f"PostgreSQL is unavailable or busy: {describe_sqlstate(exc)}", "AppUnavailable"
        )
    return FatalError(f"PostgreSQL refused an operation on {table!r}: {describe_sqlstate(exc)}")


def _libpq_reason(message: str, secrets: list[str]) -> str:
    """libpq's last reason (after the final "failed:"), first line, secrets scrubbed out."""
    text = message.rsplit("failed:", 1)[-1].strip().splitlines()
    reason = text[0].strip() if text else ""
    reason = reason.removeprefix("FATAL:").strip()
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            reason = reason.replace(secret, "***")
    return reason or "no detail"


def connect_error(exc: psycopg.Error, secrets: list[str]) -> ConnectorError:
    """Why connecting failed, naming the Secret key to check; no credential value."""
    raw = str(exc)
    reason = _libpq_reason(raw, secrets)
    lower = raw.lower()
    if "password authentication failed" in lower or "no password supplied" in lower:
        return AuthenticationError(
            "PostgreSQL refused the login (password authentication failed); check Secret "
            "keys `password` and `username` (or the user and password in `dsn`)",
            credential="password",
        )
    if ("role" in lower and "does not exist" in lower) or "no pg_hba.conf entry" in lower:
        return AuthenticationError(
            f"PostgreSQL refused the login ({reason}); check Secret key `username` and the "
            "server's pg_hba.conf",
            credential="username",
        )
    if "database" in lower and "does not exist" in lower:
        return ConfigurationError(
            "PostgreSQL has no such database; check Secret key `database` "
            "(or the database in `dsn`)",
            field="database",
        )
    busy = (
        "too many clients",
        "too many connections",
        "starting up",
        "shutting down",
        "in recovery mode",
    )
    if any(phrase in lower for phrase in busy):
        return RetriableError(f"PostgreSQL is not accepting connections now ({reason})")
    if "ssl" in lower or "certificate" in lower:
        return AppUnreachableError(
            f"TLS to PostgreSQL failed ({reason}); check Secret keys `sslmode` and `sslrootcert`"
        )
    return AppUnreachableError(
        f"cannot reach PostgreSQL ({reason}); check Secret keys `host` and `port` "
        "(or the host in `dsn`) and that the server accepts connections from here"
    )
