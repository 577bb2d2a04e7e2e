"""Resolve a connection's field mappings: connector-pair defaults plus custom mappings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from datasync.api.models import (
    DataSyncConnectionSpec,
    FieldDirection,
    FieldMapping,
    Identity,
    Side,
    ValueType,
)
from datasync.connector import ConfigurationError, Connector, FieldType, ObjectSchema
from datasync.engine.values import ValueMemo, fingerprinter

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


@dataclass(frozen=True)
class CreateStep:
    """One mapping of a create from `side` to the other side, worked out once per run."""

    origin_field: str  # read from the record being created from
    target_field: str  # written to the new record
    key: str  # the mapping's key in the pair fingerprint
    values: Mapping[str, str]  # the value map in this direction ({}: none)
    print_mapped: bool  # fingerprint the mapped value (into the destination) or the raw one
    fingerprint: ValueMemo[str]  # fingerprint(canonical(value, the mapping's kind))


def create_steps(
    mappings: list[ResolvedMapping], side: Side, kinds: Mapping[str, str]
) -> list[CreateStep]:
    """The steps of creating a record of the other side from one of `side`, in mapping
    order (only the mappings that write to the other side)."""
    target = Side.DESTINATION if side == Side.SOURCE else Side.SOURCE
    return [
        CreateStep(
            origin_field=mapping.field(side),
            target_field=mapping.field(target),
            key=mapping.key,
            values=dict(mapping.values if side == Side.SOURCE else mapping.reverse_values),
            print_mapped=target == Side.DESTINATION,
            fingerprint=fingerprinter(kinds[mapping.key]),
        )
        for mapping in mappings
        if mapping.writes_to(target)
    ]
