"""Property-based tests: what the models accept round-trips, and nothing crashes them."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.api.models import DataSyncConnectionSpec
from datasync.api.validate import ManifestError, load_documents, validate_connection

names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
field_names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    direction = draw(st.sampled_from(["TwoWay", "OneWay"]))
    field_directions = (
        ["TwoWay", "ToDestination", "ToSource"] if direction == "TwoWay" else ["ToDestination"]
    )

    def endpoint(app: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "app": app,
            "auth": {
                "type": draw(st.sampled_from(["OAuth", "AppParameters"])),
                "secretRef": {"name": draw(names)},
            },
            "settings": draw(
                st.dictionaries(st.from_regex(r"[a-zA-Z]{1,12}", fullmatch=True), text, max_size=3)
            ),
        }
        if draw(st.booleans()):
            bundle: dict[str, Any] = {"secretRef": {"name": draw(names)}}
            if draw(st.booleans()):
                bundle["key"] = draw(st.from_regex(r"[a-z][-._a-z0-9]{0,20}", fullmatch=True))
            result["tls"] = {"caBundle": bundle} if draw(st.booleans()) else {}
        return result

    spec: dict[str, Any] = {
        "direction": direction,
        "schedule": draw(st.sampled_from(["*/15 * * * *", "0 * * * *", "@hourly", "5 4 * * sun"])),
        "source": endpoint(draw(names)),
        "destination": endpoint(draw(names)),
        "systemOfRecord": draw(st.sampled_from(["source", "destination"])),
        "conflictResolution": draw(st.sampled_from(["MostRecent", "SystemOfRecord"])),
        "suspend": draw(st.booleans()),
        "mappings": {
            "defaults": draw(st.booleans()),
            "fields": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"source": field_names, "destination": field_names},
                        optional={
                            "direction": st.sampled_from(field_directions),
                            "values": st.dictionaries(text, text, max_size=3),
                            "required": st.booleans(),
                            "blankOverwrites": st.booleans(),
                            "type": st.sampled_from(["string", "number", "boolean", "date"]),
                        },
                    ),
                    max_size=4,
                )
            ),
        },
    }
    if draw(st.booleans()):
        spec["goal"] = draw(text)
    if draw(st.booleans()):
        spec["inclusionList"] = {
            "app": draw(st.sampled_from(["source", "destination"])),
            "list": draw(field_names),
        }
    if draw(st.booleans()):
        spec["filters"] = [
            {
                "app": "source",
                "field": draw(field_names),
                "operator": "NotEquals",
                "values": ["true"],
                "reason": "OptedOut",
            }
        ]
    return spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_accepted_specs_round_trip_through_yaml_and_json(raw: dict[str, Any]) -> None:
    spec = DataSyncConnectionSpec.model_validate(raw)
    dumped = spec.model_dump(mode="json", exclude_unset=True)
    assert dumped == raw
    assert DataSyncConnectionSpec.model_validate(yaml.safe_load(yaml.safe_dump(dumped))) == spec
    assert DataSyncConnectionSpec.model_validate(json.loads(json.dumps(dumped))) == spec


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status", "x"]), json_values
    )
)
def test_no_document_crashes_the_validator(document: dict[str, Any]) -> None:
    document.setdefault("apiVersion", "datasync.io/v1alpha1")
    problems = validate_connection(document)
    for problem in problems:
        assert problem.message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_no_text_crashes_the_yaml_reader(raw: str) -> None:
    try:
        documents = load_documents(raw)
    except ManifestError as error:
        assert str(error)
        return
    for document in documents:
        if isinstance(document, dict):
            validate_connection(document)
