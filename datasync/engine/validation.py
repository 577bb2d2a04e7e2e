"""Check a write against the target app's schema before sending it.

The checks are compiled once per schema and rule set (`WriteValidator`): each field gets
its own checker, which remembers its verdict for values it has seen (a run writes the same
company, city or stage again and again). Checks are pure functions of the value, so a
remembered verdict is the verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH

from datasync.connector import FieldSchema, FieldType, ObjectSchema, RecordError
from datasync.engine.values import CoercionError, coerce, is_blank, remembered

PHONE = re.compile(r"^\+?[0-9 ().\-/]{4,30}(\s*(x|ext\.?)\s*[0-9]{1,6})?$", re.IGNORECASE)
PHONE_DIGITS = (5, 17)

Check = tuple[RecordError | None, Any]


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


def is_valid_email(address: str) -> bool:
    """Whether email_validator accepts `address` (syntax only, no DNS), faster.

    A plain ASCII address (a dot-atom local part, the domain unchanged by normalization,
    within the length limit) is valid exactly when its domain is: the domain's verdict is
    email_validator's own, remembered per domain. Everything else goes to email_validator.
    """
    if address.isascii() and len(address) <= EMAIL_MAX_LENGTH:
        local, at, domain = address.partition("@")
        if at and DOT_ATOM_TEXT.match(local) and _plain_domain(domain):
            return True
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> bool:
    """email_validator accepts `domain` after a one-letter local part and leaves it as is
    (so the whole address has the same verdict and length after normalization)."""
    try:
        checked = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return False
    return bool(checked.domain == domain and checked.ascii_domain == domain)


class WriteValidator:
    """`validate_write` for one schema, rule set and kind of write, compiled once."""

    def __init__(
        self, schema: ObjectSchema, rules: Mapping[str, FieldRule], *, create: bool
    ) -> None:
        self.schema = schema
        self.rules = rules
        self.create = create
        self._checks: dict[str, tuple[Callable[[Any], Check], bool]] = {}
        self._required_rules = [name for name, rule in rules.items() if rule.required]
        self._required_fields = [spec.name for spec in schema.fields.values() if spec.required]

    def check(self, name: str) -> Callable[[Any], Check]:
        """The check of field `name` alone (not remembering values): (problem, clean)."""
        spec = self.schema.fields[name]
        return partial(_check, spec, self.rules.get(name, FieldRule(str(spec.type))).kind)

    def _check_for(self, name: str) -> tuple[Callable[[Any], Check], bool]:
        found = self._checks.get(name)
        if found is None:
            spec = self.schema.fields[name]
            rule = self.rules.get(name, FieldRule(str(spec.type)))
            checker = _field_checker(spec, rule.kind)
            found = self._checks[name] = (checker, rule.required)
        return found

    def __call__(self, values: Mapping[str, Any]) -> Validated:
        """Coerce and check `values` (target field -> value). Blank means "clear the field"."""
        return self.finish(
            {name: self._check_for(name)[0](value) for name, value in values.items()}
        )

    def finish(self, checked: Mapping[str, Check]) -> Validated:
        """The outcome of a write whose values were each checked already (field ->
        (problem, clean), in the order of the values)."""
        result = Validated()
        payload = result.payload
        for name, (problem, clean) in checked.items():
            if problem is None:
                payload[name] = clean
            elif self._check_for(name)[1]:  # required
                result.error = problem
                return result
            else:
                result.field_errors.append(problem)
        if self.create:
            for name in self._required_rules:
                if is_blank(payload.get(name)):
                    # A non-negotiable mapping (`required: true`): no value, no record.
                    result.error = RecordError(
                        "RequiredFieldMissing",
                        f"{name} is marked required in spec.mappings and the record has no "
                        "value for it",
                        field=name,
                    )
                    return result
            for name in self._required_fields:
                if is_blank(payload.get(name)):
                    result.error = RecordError(
                        "RequiredFieldMissing",
                        f"{name} is required by the app to create a record and has no value",
                        field=name,
                    )
                    return result
        return result


# The validators of the last few (schema, rules) pairs, by identity: a run asks with the
# same objects for every record. The entries hold the objects, so an id is never reused.
_VALIDATORS: dict[tuple[int, int, bool], WriteValidator] = {}
_VALIDATORS_KEPT = 16


def validator_for(
    schema: ObjectSchema, rules: Mapping[str, FieldRule], *, create: bool
) -> WriteValidator:
    key = (id(schema), id(rules), create)
    found = _VALIDATORS.get(key)
    if found is not None and found.schema is schema and found.rules is rules:
        return found
    if len(_VALIDATORS) >= _VALIDATORS_KEPT:
        _VALIDATORS.clear()
    found = _VALIDATORS[key] = WriteValidator(schema, rules, create=create)
    return found


def validate_write(
    schema: ObjectSchema,
    values: Mapping[str, Any],
    rules: Mapping[str, FieldRule],
    *,
    create: bool,
) -> Validated:
    """Coerce and check `values` (target field -> value). Blank means "clear the field".

    Pass the same `rules` object each time (do not change it afterwards): the compiled
    checks are kept per schema and rules object."""
    return validator_for(schema, rules, create=create)(values)


def _field_checker(spec: FieldSchema, kind: str) -> Callable[[Any], Check]:
    def check(value: Any) -> Check:
        return _check(spec, kind, value)

    if spec.read_only:
        return check  # one answer whatever the value; nothing to remember
    return remembered(check)


def _check(spec: FieldSchema, kind: str, value: Any) -> Check:
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
        if not is_valid_email(str(clean)):
            return RecordError(
                "InvalidEmail", f"{name} is not a valid email address", field=name
            ), None
    elif spec.type == FieldType.PHONE:
        digits = sum(map(str.isdigit, str(clean)))
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
