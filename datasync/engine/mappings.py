"""Resolve a connection's field mappings: connector-pair defaults plus custom mappings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from datasync.api.models import (
    DataSyncConnectionSpec,
    FieldDirection,
    FieldMapping,
    Identity,
    Side,
    ValueType,
)
from datasync.connector import (
    ConfigurationError,
    Connector,
    FieldType,
    ObjectSchema,
    RecordError,
)
from datasync.engine.validation import WriteValidator
from datasync.engine.values import canonical, fingerprint, is_blank, map_value, remembered

# The canonical name (in Connector.standard_fields) of a contact's email opt-out flag. A
# mapping of that field follows the consent rule: the sync never clears an opt-out.
OPT_OUT = "emailOptOut"


@dataclass(frozen=True)
class ResolvedMapping:
    source: str
    destination: str
    direction: FieldDirection
    values: Mapping[str, str] = field(default_factory=dict)
    type: ValueType | None = None
    required: bool = False
    blank_overwrites: bool = False
    identity: bool = False
    opt_out: bool = False  # maps a connector's standard emailOptOut field
    origin: str = "default"  # "default", "identity" or "spec.mappings.fields[i]"

    @property
    def key(self) -> str:
        return f"{self.source}=>{self.destination}"

    def field(self, side: Side) -> str:
        return self.source if side == Side.SOURCE else self.destination

    def writes_to(self, side: Side) -> bool:
        if self.direction == FieldDirection.TWO_WAY:
            return True
        if side == Side.DESTINATION:
            return self.direction == FieldDirection.TO_DESTINATION
        return self.direction == FieldDirection.TO_SOURCE

    @property
    def reverse_values(self) -> dict[str, str]:
        return {target: source for source, target in self.values.items()}


def identity_of(
    spec: DataSyncConnectionSpec, source: Connector, destination: Connector
) -> Identity:
    if spec.identity is not None:
        return spec.identity
    object_type = str(spec.objectType)
    fields = []
    for side, connector in ((Side.SOURCE, source), (Side.DESTINATION, destination)):
        try:
            fields.append(connector.identity_field(object_type))
        except KeyError:
            raise ConfigurationError(
                f"the {side} connector {connector.name!r} has no default email field for "
                f"{object_type}; set spec.identity.{side}",
                field=f"spec.identity.{side}",
            ) from None
    return Identity(source=fields[0], destination=fields[1])


def resolve_mappings(
    spec: DataSyncConnectionSpec, source: Connector, destination: Connector
) -> list[ResolvedMapping]:
    object_type = str(spec.objectType)
    identity = identity_of(spec, source, destination)
    candidates: list[tuple[FieldMapping, str]] = []
    if spec.mappings.defaults:
        source_fields = source.standard_fields.get(object_type, {})
        destination_fields = destination.standard_fields.get(object_type, {})
        for canonical_name, source_field in source_fields.items():
            if canonical_name in destination_fields:
                candidates.append(
                    (
                        FieldMapping(
                            source=source_field, destination=destination_fields[canonical_name]
                        ),
                        "default",
                    )
                )
    custom = [(m, f"spec.mappings.fields[{i}]") for i, m in enumerate(spec.mappings.fields)]
    custom_sources = {m.source for m, _ in custom}
    custom_destinations = {m.destination for m, _ in custom}
    candidates = [
        (m, origin)
        for m, origin in candidates
        if m.source not in custom_sources and m.destination not in custom_destinations
    ]
    candidates.extend(custom)
    opt_out_fields = (
        source.standard_fields.get(object_type, {}).get(OPT_OUT),
        destination.standard_fields.get(object_type, {}).get(OPT_OUT),
    )
    # One mapping per destination field and per source field: the last one wins.
    by_destination: dict[str, tuple[FieldMapping, str]] = {}
    for mapping, origin in candidates:
        for other in [k for k, (m, _) in by_destination.items() if m.source == mapping.source]:
            del by_destination[other]
        by_destination[mapping.destination] = (mapping, origin)
    resolved = [
        ResolvedMapping(
            source=m.source,
            destination=m.destination,
            direction=spec.effective_direction(m),
            values=dict(m.values),
            type=ValueType(m.type) if m.type else None,
            required=m.required,
            blank_overwrites=m.blankOverwrites,
            identity=(m.source == identity.source and m.destination == identity.destination),
            opt_out=m.source == opt_out_fields[0] or m.destination == opt_out_fields[1],
            origin=origin,
        )
        for m, origin in by_destination.values()
    ]
    if not any(m.identity for m in resolved):
        # Created records must carry the identity, or the next run could not find them.
        resolved.append(
            ResolvedMapping(
                source=identity.source,
                destination=identity.destination,
                direction=spec.effective_direction(
                    FieldMapping(source=identity.source, destination=identity.destination)
                ),
                identity=True,
                origin="identity",
            )
        )
    return resolved


def check_fields(
    spec: DataSyncConnectionSpec,
    mappings: list[ResolvedMapping],
    schemas: Mapping[Side, ObjectSchema],
    apps: Mapping[Side, str],
    identity: Identity,
) -> None:
    """Every mapped, identity and filter field must exist; raise ConfigurationError."""

    def need(side: Side, name: str, where: str) -> None:
        if name not in schemas[side].fields:
            raise ConfigurationError(
                f"{where} names the {side} field {name!r}, which the {apps[side]} "
                f"{schemas[side].object_type} object does not have; fix {where} "
                "(`datasync connectors` lists the standard fields)",
                field=where,
            )

    need(Side.SOURCE, identity.source, "spec.identity.source")
    need(Side.DESTINATION, identity.destination, "spec.identity.destination")
    for mapping in mappings:
        need(Side.SOURCE, mapping.source, f"{mapping.origin}.source")
        need(Side.DESTINATION, mapping.destination, f"{mapping.origin}.destination")
    for index, condition in enumerate(spec.filters):
        need(Side(condition.app), condition.field, f"spec.filters[{index}].field")


def value_kind(mapping: ResolvedMapping, schema: ObjectSchema, side: Side) -> ValueType | FieldType:
    """The type values of `mapping` take when written to `side`."""
    if mapping.type is not None:
        return mapping.type
    return schema.fields[mapping.field(side)].type


# A create step's result for one value: its fingerprint, and (problem, clean) from the
# target's check, or None when the value is blank (not sent).
Prepared = tuple[str, tuple[RecordError | None, Any] | None]


@dataclass(frozen=True)
class CreateStep:
    """One mapping of a create from one side to the other, worked out once per run."""

    origin_field: str  # read from the record being created from
    target_field: str  # written to the new record
    key: str  # the mapping's key in the pair fingerprint
    prepare: Callable[[Any], Prepared]  # raw value -> its fingerprint and checked value


def create_steps(
    mappings: list[ResolvedMapping],
    side: Side,
    kinds: Mapping[str, str],
    validator: WriteValidator,
) -> list[CreateStep]:
    """The steps of creating a record of the other side from one of `side`, in mapping
    order (only the mappings that write to the other side). Each step maps the value,
    fingerprints it (in the destination's terms) and checks it against the target field:
    pure functions of the raw value, so remembered for repeated values."""
    target = Side.DESTINATION if side == Side.SOURCE else Side.SOURCE
    steps: list[CreateStep] = []
    for mapping in mappings:
        if not mapping.writes_to(target):
            continue
        values = dict(mapping.values if side == Side.SOURCE else mapping.reverse_values)
        steps.append(
            CreateStep(
                origin_field=mapping.field(side),
                target_field=mapping.field(target),
                key=mapping.key,
                prepare=remembered(
                    partial(
                        _prepare,
                        values,
                        target == Side.DESTINATION,
                        str(kinds[mapping.key]),
                        validator.check(mapping.field(target)),
                    )
                ),
            )
        )
    return steps


def _prepare(
    values: Mapping[str, str],
    print_mapped: bool,
    kind: str,
    check: Callable[[Any], tuple[RecordError | None, Any]],
    raw: Any,
) -> Prepared:
    value = map_value(raw, values) if values else raw
    printed = fingerprint(canonical(value if print_mapped else raw, kind))
    if is_blank(value):
        return printed, None
    return printed, check(value)
