"""Check a write against the target app's schema before sending it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from datasync.connector import FieldSchema, FieldType, ObjectSchema, RecordError
from datasync.engine.values import CoercionError, coerce, is_blank

PHONE = re.compile(r"^\+?[0-9 ().\-/]{4,30}(\s*(x|ext\.?)\s*[0-9]{1,6})?$", re.IGNORECASE)
PHONE_DIGITS = (5, 17)


@dataclass
class Validated:
    payload: dict[str, Any] = field(default_factory=dict)
    field_errors: list[RecordError] = field(default_factory=list)
    error: RecordError | None = None  # the record cannot be written at all


@dataclass(frozen=True)
class FieldRule:
    """What the engine knows about a field it writes: its type and whether it is required."""

    kind: str
    required: bool = False


def validate_write(
    schema: ObjectSchema,
    values: Mapping[str, Any],
    rules: Mapping[str, FieldRule],
    *,
    create: bool,
) -> Validated:
    """Coerce and check `values` (target field -> value). Blank means "clear the field"."""
    result = Validated()
    for name, value in values.items():
        spec = schema.fields[name]
        rule = rules.get(name, FieldRule(str(spec.type)))
        problem, clean = _check(spec, rule.kind, value)
        if problem is None:
            result.payload[name] = clean
        elif rule.required:
            result.error = problem
            return result
        else:
            result.field_errors.append(problem)
    if create:
        for name, rule in rules.items():
            if rule.required and is_blank(result.payload.get(name)):
                # A non-negotiable mapping (`required: true`): no value, no record.
                result.error = RecordError(
                    "RequiredFieldMissing",
                    f"{name} is marked required in spec.mappings and the record has no value "
                    "for it",
                    field=name,
                )
                return result
        for spec in schema.fields.values():
            if spec.required and is_blank(result.payload.get(spec.name)):
                result.error = RecordError(
                    "RequiredFieldMissing",
                    f"{spec.name} is required by the app to create a record and has no value",
                    field=spec.name,
                )
                return result
    return result


def _check(spec: FieldSchema, kind: str, value: Any) -> tuple[RecordError | None, Any]:
    name = spec.name
    if spec.read_only:
        return RecordError("ReadOnlyField", f"{name} is read-only in the app", field=name), None
    if is_blank(value):
        return None, None
    try:
        clean = coerce(value, kind)
        if kind != str(spec.type) and spec.type not in (FieldType.EMAIL, FieldType.PHONE):
            clean = coerce(clean, spec.type)
    except CoercionError as exc:
        return RecordError("InvalidFormat", f"{name}: {exc}", field=name), None
    if spec.type == FieldType.EMAIL:
        try:
            validate_email(str(clean), check_deliverability=False)
        except EmailNotValidError:
            return RecordError(
                "InvalidEmail", f"{name} is not a valid email address", field=name
            ), None
    elif spec.type == FieldType.PHONE:
        digits = sum(ch.isdigit() for ch in str(clean))
        if not PHONE.match(str(clean)) or not PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]:
            return RecordError(
                "InvalidFormat", f"{name} is not a valid phone number", field=name
            ), None
    if spec.options is not None and spec.type == FieldType.ENUMERATION:
        option = _option(spec.options, clean)
        if option is None:
            return RecordError(
                "InvalidOption",
                f"{name} only accepts one of the app's {len(spec.options)} options; "
                "add a value map to the mapping",
                field=name,
            ), None
        clean = option
    if spec.max_length is not None and isinstance(clean, str) and len(clean) > spec.max_length:
        return RecordError(
            "ValueTooLong", f"{name} is longer than {spec.max_length} characters", field=name
        ), None
    return None, clean


def _option(options: tuple[str, ...], value: Any) -> str | None:
    text = str(value).strip()
    if text in options:
        return text
    lowered = text.lower()
    for option in options:
        if option.lower() == lowered:
            return option
    return None
