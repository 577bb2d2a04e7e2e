"""Generate the CustomResourceDefinition from the pydantic models.

Pydantic's JSON Schema is turned into a Kubernetes structural schema: references inlined,
optional values unwrapped (absence, not null, means "unset"), defaults dropped (the
operator applies them, so objects applied from Git are stored exactly as written and
GitOps tools see no drift), and CEL rules added for what spans several fields.
"""

from __future__ import annotations

from typing import Any

import yaml

from datasync.api import models

_KEEP = {
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "pattern",
    "maxLength",
    "minLength",
    "maximum",
    "minimum",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "format",
    "description",
    "x-kubernetes-validations",
}

SPEC_RULES: list[dict[str, str]] = [
    {
        "rule": "self.direction == 'TwoWay' || !has(self.mappings) || "
        "!has(self.mappings.fields) || self.mappings.fields.all(f, "
        "!has(f.direction) || f.direction == 'ToDestination')",
        "message": "mappings with direction ToSource or TwoWay need direction: TwoWay on the "
        "connection; use ToDestination in a OneWay connection",
        "fieldPath": ".mappings.fields",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!has(self.state) || !has(self.state.type) || self.state.type != 'PostgreSQL' "
        "|| has(self.state.secretRef)",
        "message": "a PostgreSQL state store needs state.secretRef naming a Secret with key dsn",
        "fieldPath": ".state",
        "reason": "FieldValueRequired",
    },
]

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Direction", "type": "string", "jsonPath": ".spec.direction"},
    {"name": "Source", "type": "string", "jsonPath": ".spec.source.app"},
    {"name": "Destination", "type": "string", "jsonPath": ".spec.destination.app"},
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule", "priority": 1},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Last Result", "type": "string", "jsonPath": ".status.lastSync.result"},
    {
        "name": "Synced",
        "type": "integer",
        "description": "Records in sync",
        "jsonPath": ".status.health.inSync",
    },
    {
        "name": "Failed",
        "type": "integer",
        "description": "Records that failed in the last run",
        "jsonPath": ".status.lastSync.failures.total",
    },
    {"name": "Last Sync", "type": "date", "jsonPath": ".status.lastSync.finishedAt"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = _resolve(defs[node.pop("$ref").split("/")[-1]], defs)
        description = node.get("description")
        node = {**target, **{k: v for k, v in node.items() if k != "description"}}
        if description:
            node["description"] = description
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            options = [o for o in node.pop(key) if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"cannot express {key} with {len(options)} options in a CRD")
            merged = _resolve(options[0], defs)
            node = {**merged, **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            result[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = _resolve(value, defs)
        elif key == "additionalProperties":
            continue  # `false` is implied: unknown fields are pruned or rejected by kubectl
        else:
            result[key] = value
    return result


def structural_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    return schema


def _spec_schema() -> dict[str, Any]:
    spec = structural_schema(models.DataSyncConnectionSpec)
    spec["x-kubernetes-validations"] = SPEC_RULES
    from datasync import registry

    names = registry.names()
    if names:
        for side in ("source", "destination"):
            app = spec["properties"][side]["properties"]["app"]
            app["enum"] = names
            app.pop("pattern", None)
    return spec


def crd() -> dict[str, Any]:
    status = structural_schema(models.DataSyncConnectionStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{models.PLURAL}.{models.GROUP}",
            "labels": {"app.kubernetes.io/name": "datasync"},
        },
        "spec": {
            "group": models.GROUP,
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": models.SHORT_NAMES,
                "categories": ["datasync"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A DataSyncConnection keeps records in step "
                            "between two apps on a schedule.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _spec_schema(),
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `datasync crd` from datasync/api/models.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
