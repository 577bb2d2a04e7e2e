"""Salesforce error codes -> Datasync reasons, with messages that never carry values.

Salesforce's own messages often quote the rejected value ("invalid email address: x@"),
so only the code, the field names and (for admin-written validation rules, whose text is
static) the rule's message are passed on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from datasync.connector import RecordError

REASONS: Mapping[str, str] = {
    "REQUIRED_FIELD_MISSING": "RequiredFieldMissing",
    "INVALID_EMAIL_ADDRESS": "InvalidEmail",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": "InvalidOption",
    "STRING_TOO_LONG": "ValueTooLong",
    "DUPLICATE_VALUE": "Duplicate",
    "DUPLICATES_DETECTED": "Duplicate",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "AppRejected",
    "INVALID_FIELD": "UnknownField",
    "INVALID_FIELD_FOR_INSERT_UPDATE": "ReadOnlyField",
    "ENTITY_IS_DELETED": "NotFound",
    "INVALID_CROSS_REFERENCE_KEY": "NotFound",
    "MALFORMED_ID": "NotFound",
    "INVALID_TYPE_ON_FIELD_IN_RECORD": "InvalidValue",
    "JSON_PARSER_ERROR": "InvalidValue",
    "NUMBER_OUTSIDE_VALID_RANGE": "InvalidValue",
    "INVALID_TYPE": "AppRejected",
    "INSUFFICIENT_ACCESS_OR_READONLY": "AccessDenied",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": "AccessDenied",
    "UNABLE_TO_LOCK_ROW": "AppUnavailable",
    "REQUEST_LIMIT_EXCEEDED": "RateLimited",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK": "AppRejected",
}

_TEMPLATES: Mapping[str, str] = {
    "REQUIRED_FIELD_MISSING": "Salesforce requires a value for {fields}",
    "INVALID_EMAIL_ADDRESS": "{fields} is not a valid email address",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": (
        "{fields} is not one of the restricted picklist's values"
    ),
    "STRING_TOO_LONG": "{fields} is longer than the field allows",
    "DUPLICATE_VALUE": "a record with the same {fields} already exists (duplicate rule)",
    "DUPLICATES_DETECTED": "Salesforce's duplicate rules blocked the record",
    "INVALID_FIELD": "no field {fields} on this object (check the field mapping)",
    "INVALID_FIELD_FOR_INSERT_UPDATE": "{fields} cannot be written (read-only for this user)",
    "ENTITY_IS_DELETED": "the record no longer exists in Salesforce",
    "INVALID_CROSS_REFERENCE_KEY": "the record or a record it refers to does not exist",
    "MALFORMED_ID": "not a valid Salesforce record id",
    "JSON_PARSER_ERROR": "a value has the wrong type for its field",
}

# Field names that Salesforce puts in messages (never values): used when `fields` is empty.
_FIELD_IN_MESSAGE = (
    re.compile(r"No such column '([A-Za-z0-9_]+)'"),
    re.compile(r"duplicate value found: ([A-Za-z0-9_]+) duplicates"),
    re.compile(r"for field ([A-Za-z0-9_]+)\b"),
)
CUSTOM_MESSAGE_LIMIT = 200


def reason_for(code: str) -> str:
    return REASONS.get(code, "AppRejected")


def record_error(error: Mapping[str, Any]) -> RecordError:
    """One entry of a SaveResult's `errors` (or of an error array) as a RecordError."""
    code = str(error.get("statusCode") or error.get("errorCode") or "UNKNOWN_EXCEPTION")
    raw_fields = error.get("fields")
    fields: list[str] = (
        [str(name) for name in raw_fields if isinstance(name, str)]
        if isinstance(raw_fields, list)
        else []
    )
    message = str(error.get("message") or "")
    if not fields:
        fields = _fields_named_in(message)
    return RecordError(
        reason=reason_for(code),
        message=scrubbed_message(code, message, fields),
        field=fields[0] if fields else None,
        code=code,
    )


def record_errors(errors: Sequence[Mapping[str, Any]]) -> RecordError:
    """The first error of a failed record; the count of the others is noted."""
    first = record_error(errors[0])
    if len(errors) > 1:
        extra = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        return RecordError(first.reason, first.message + extra, first.field, first.code)
    return first


def scrubbed_message(code: str, message: str, fields: Sequence[str]) -> str:
    names = ", ".join(fields) if fields else "a field"
    if code == "FIELD_CUSTOM_VALIDATION_EXCEPTION":
        # Validation rule messages are static text written by the org's admin.
        text = " ".join(message.split())[:CUSTOM_MESSAGE_LIMIT]
        return f"a Salesforce validation rule rejected the record: {text}"
    template = _TEMPLATES.get(code)
    if template is not None:
        return template.format(fields=names)
    return f"Salesforce rejected the record ({code})" + (f" on {names}" if fields else "")


def _fields_named_in(message: str) -> list[str]:
    for pattern in _FIELD_IN_MESSAGE:
        match = pattern.search(message)
        if match:
            return [match.group(1)]
    return []
