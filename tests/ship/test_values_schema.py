"""values.schema.json turns bad values into a clear `helm template` error naming the key."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.ship.tools import CHART, FULL_VALUES, helm, set_args

SCHEMA = CHART / "values.schema.json"

BAD_VALUES = [
    # (--set or --set-string pairs, the key the error must name)
    ({"replicaCount": "2"}, "/replicaCount"),
    ({"metrics.port": "70000"}, "/metrics/port"),
    ({"operator.logFormat": "xml"}, "/operator/logFormat"),
    ({"operator.credentialsCheckInterval": "5"}, "/operator/credentialsCheckInterval"),
    ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
    ({"watchNamespaces": "{Team_A}"}, "/watchNamespaces/0"),
    ({"replicas": "1"}, "replicas"),  # a typo of replicaCount: unknown keys are rejected
    ({"crds.install": "yes"}, "/crds/install"),
    ({"prometheusRule.failingWindow": "an hour"}, "/prometheusRule/failingWindow"),
    ({"networkPolicy.apiServerCidrs": "{10.0.0.1}"}, "/networkPolicy/apiServerCidrs/0"),
]


@pytest.mark.parametrize(("values", "key"), BAD_VALUES, ids=[k for _, k in BAD_VALUES])
def test_bad_value_fails_helm_template_naming_the_key(values: dict[str, str], key: str) -> None:
    result = helm("template", "ds", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert key in result.stderr, result.stderr


def test_a_string_where_a_number_belongs_fails() -> None:
    result = helm("template", "ds", str(CHART), "--set-string", "metrics.port=8080", check=False)
    assert result.returncode != 0
    assert "/metrics/port" in result.stderr and "want integer" in result.stderr


def test_schema_is_draft_07_and_covers_every_default_key() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        properties = node.get("properties", {})
        for key, value in values.items():
            assert key in properties, f"{path}{key} has no schema"
            if isinstance(value, dict) and "properties" in properties[key]:
                walk(value, properties[key], f"{path}{key}.")

    walk(defaults, schema, "")


def test_non_default_values_pass_the_schema() -> None:
    helm("template", "ds", str(CHART), "--values", str(FULL_VALUES))
