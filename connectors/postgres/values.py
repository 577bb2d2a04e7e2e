"""Values going into and out of PostgreSQL.

Outgoing values are checked against the column's type before they are sent, so that a bad
value is reported with its column name (PostgreSQL's `invalid input syntax` errors name
neither the column nor anything but the value). PostgreSQL stays the final judge.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

import orjson

from datasync.connector import RecordError

from .schema import DECIMAL_TYPES, INTEGER_TYPES, TIMESTAMP_TYPES, Column

BOOLEAN_WORDS = frozenset({"t", "true", "y", "yes", "on", "1", "f", "false", "n", "no", "off", "0"})


# The SQLSTATE PostgreSQL raises for the same problem, passed on as the error code.
_CODES = {"RequiredFieldMissing": "23502", "ValueTooLong": "22001", "InvalidFormat": "22P02"}


def _error(reason: str, column: Column, message: str, code: str | None = None) -> RecordError:
    return RecordError(
        reason=reason, message=message, field=column.name, code=code or _CODES[reason]
    )


def check_value(column: Column, value: Any) -> RecordError | None:
    """Why `value` cannot go into `column`, or None. Messages never contain the value."""
    if value is None:
        if not column.nullable:
            return _error("RequiredFieldMissing", column, f"column {column.name!r} is NOT NULL")
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return _error(
                "InvalidFormat",
                column,
                f"the value for {column.name!r} contains a NUL character, which PostgreSQL "
                "text cannot store",
                "22021",  # character_not_in_repertoire
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _error(
                "InvalidFormat",
                column,
                f"the value for {column.name!r} is not valid UTF-8",
                "22021",
            )
    if isinstance(value, (float, dict, list)) and not _finite(value):
        return _error(
            "InvalidFormat",
            column,
            f"the value for {column.name!r} is or holds a number that is not finite "
            "(NaN or infinity)",
        )
    kind = column.data_type
    if kind == "boolean":
        ok = isinstance(value, bool) or (
            isinstance(value, (str, int)) and str(value).strip().lower() in BOOLEAN_WORDS
        )
        if not ok:
            return _error("InvalidFormat", column, f"column {column.name!r} needs a boolean")
    elif kind in INTEGER_TYPES:
        number = _as_integer(value)
        if number is None:
            return _error("InvalidFormat", column, f"column {column.name!r} needs an integer")
        limit = INTEGER_TYPES[kind]
        if not -limit <= number < limit:
            return _error(
                "InvalidFormat",
                column,
                f"the value for {column.name!r} is out of range ({kind})",
                "22003",  # numeric_value_out_of_range
            )
    elif kind in DECIMAL_TYPES and kind != "money":
        if _as_decimal(value) is None:
            return _error("InvalidFormat", column, f"column {column.name!r} needs a number")
    elif kind == "date":
        if not _parses(value, date.fromisoformat):
            return _error(
                "InvalidFormat",
                column,
                f"column {column.name!r} needs a date (YYYY-MM-DD)",
                "22007",  # invalid_datetime_format
            )
    elif kind in TIMESTAMP_TYPES:
        if not _parses(value, datetime.fromisoformat):
            return _error(
                "InvalidFormat",
                column,
                f"column {column.name!r} needs an ISO 8601 date-time",
                "22007",
            )
    elif kind == "uuid" and not _parses(value, UUID):
        return _error("InvalidFormat", column, f"column {column.name!r} needs a UUID")
    if column.max_length is not None:
        text = _as_text(value)
        # PostgreSQL silently drops excess characters when they are all spaces.
        if len(text) > column.max_length and text[column.max_length :].strip(" "):
            return _error(
                "ValueTooLong",
                column,
                f"the value for {column.name!r} is longer than {column.max_length} characters",
            )
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return dumps(value)
    return str(value)


def for_column(column: Column, value: Any) -> Any:
    """The value to send: text columns get exactly the text that was length-checked
    (PostgreSQL would print a JSON number its own way, e.g. 1e-300 in full)."""
    if column.is_text and value is not None:
        return _as_text(value)
    return value


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


def _parses(value: Any, parse: Any) -> bool:
    if isinstance(value, (date, datetime, UUID)):
        return True
    if not isinstance(value, str):
        return False
    try:
        parse(value.strip())
    except ValueError:
        return False
    return True


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in the value (JSON has no spelling for them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} to PostgreSQL")


def dumps(value: Any) -> str:
    """JSON text for PostgreSQL: orjson, as every batch written is encoded (about ten
    times faster than json). check_value has refused NaN first: orjson writes it as null."""
    try:
        return orjson.dumps(value, default=_json_default, option=_PASSTHROUGH).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which json can write
        return json.dumps(value, default=_json_default, allow_nan=False)


# Dates and times go through _json_default, as isoformat() writes them.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME


def to_json_value(value: Any) -> Any:
    """A value read from PostgreSQL, as a JSON-compatible value for `Record.fields`."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (list, dict)):
        return value
    return str(value)
