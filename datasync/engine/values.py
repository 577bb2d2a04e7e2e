"""Blank detection, type coercion and canonical forms of field values.

Values cross apps in a canonical form: the mapped value coerced to the mapping's type, as a
string. Two apps agree on a field when the canonical forms are equal, and the fingerprint
in the state store keeps only a hash of it (never the value).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from datasync.api.models import ValueType
from datasync.connector import FieldType

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off"})
STRINGLIKE = frozenset({"string", "enumeration", "email", "phone"})
# Values whose equal instances are interchangeable for every function here (not floats:
# 0.0 == -0.0, yet they print differently).
_MEMO_TYPES = frozenset({str, int, bool, type(None)})

R = TypeVar("R")
_MISSING = object()


class CoercionError(ValueError):
    """A value cannot be read as the requested type. The message never holds the value."""

    reason = "InvalidFormat"


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def normalize_identity(value: Any) -> str | None:
    """Identity values (emails) compare trimmed and case-insensitively."""
    if is_blank(value):
        return None
    return str(value).strip().lower()


def map_value(value: Any, values: Mapping[str, str]) -> Any:
    """Apply a picklist value map (exact match first, then case-insensitive)."""
    if not values or is_blank(value):
        return value
    text = str(value).strip()
    if text in values:
        return values[text]
    lowered = text.lower()
    for key, mapped in values.items():
        if key.lower() == lowered:
            return mapped
    return value


def coerce(value: Any, kind: ValueType | FieldType | str) -> Any:
    """`value` as a JSON value of `kind`; raises CoercionError. Blank stays None."""
    if is_blank(value):
        return None
    kind = str(kind)
    if kind in STRINGLIKE:
        return _to_string(value)
    if kind == "number":
        return _to_number(value)
    if kind == "boolean":
        return _to_boolean(value)
    if kind == "date":
        return _to_date(value)
    if kind == "datetime":
        return _to_datetime(value)
    return value


def canonical(value: Any, kind: ValueType | FieldType | str) -> str:
    """The comparable form of `value`: "" for a blank, else the coerced value as text.

    A blank checkbox is "false": apps without an unset state (Salesforce checkboxes)
    store false for it, and the two must compare equal or every run would write one
    over the other."""
    if is_blank(value):
        return "false" if str(kind) == "boolean" else ""
    try:
        coerced = coerce(value, kind)
    except CoercionError:
        return "\x00" + str(value).strip()  # uncoercible: compare as raw text
    if str(kind) == "email":
        return str(coerced).lower()
    if isinstance(coerced, bool):
        return "true" if coerced else "false"
    return str(coerced)


def fingerprint(canonical_value: str) -> str:
    return hashlib.sha256(canonical_value.encode()).hexdigest()[:20]


def remembered(compute: Callable[[Any], R], limit: int = 4096) -> Callable[[Any], R]:
    """`compute`, a pure function of one field value, remembering its results for repeated
    values (a column of names, cities or stages repeats a lot). Bounded: it forgets
    everything when full, and stops remembering for good when a full memo was hardly ever
    used (a column of unique values, such as emails). A closure, not an object: it is
    called for every value of every record."""
    seen: dict[Any, R] = {}
    get = seen.get
    hits = 0
    remember = True

    def call(value: Any) -> R:
        nonlocal hits, remember
        if not remember:
            return compute(value)
        kind = type(value)
        if kind is str:
            key: Any = value  # the common case: no key tuple to build
        elif kind in _MEMO_TYPES:
            key = (kind, value)
        else:
            return compute(value)
        found = get(key, _MISSING)
        if found is not _MISSING:
            hits += 1
            return found  # type: ignore[return-value]
        result = compute(value)
        if len(seen) >= limit:
            if hits < limit // 4:
                remember = False
            seen.clear()
            hits = 0
        seen[key] = result
        return result

    return call


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise CoercionError("a true/false value cannot be read as a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CoercionError("not a finite number")
        return int(value) if value.is_integer() else value
    text = str(value).strip().replace(",", "") if isinstance(value, str) else str(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise CoercionError("cannot be read as a number") from None
    if not number.is_finite():
        raise CoercionError("not a finite number")
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise CoercionError("cannot be read as true or false")


def _parse_datetime(text: str) -> datetime:
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.fromtimestamp(float(text) / 1000, tz=UTC)  # epoch milliseconds
        except (ValueError, OverflowError, OSError):
            raise CoercionError("cannot be read as an ISO 8601 date or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _to_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if len(text) == 10:
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise CoercionError("cannot be read as a date (YYYY-MM-DD)") from None
    return _parse_datetime(text).date().isoformat()


def _to_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        parsed = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        text = str(value).strip()
        if len(text) == 10:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise CoercionError("cannot be read as a date or time") from None
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            parsed = _parse_datetime(text)
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")
