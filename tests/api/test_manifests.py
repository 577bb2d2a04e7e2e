"""The API as users meet it: the generated CRD and docs, `datasync validate`, and its errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from datasync.api.crd import crd_yaml
from datasync.api.reference import reference_markdown
from datasync.api.validate import validate_connection
from datasync.cli import cli

ROOT = Path(__file__).resolve().parents[2]

VALID: dict[str, Any] = {
    "apiVersion": "datasync.io/v1alpha1",
    "kind": "DataSyncConnection",
    "metadata": {"name": "contacts", "namespace": "sales"},
    "spec": {
        "goal": "Sales and marketing see the same contact details",
        "direction": "TwoWay",
        "schedule": "*/15 * * * *",
        "source": {"app": "hubspot", "auth": {"type": "OAuth", "secretRef": {"name": "hs"}}},
        "destination": {
            "app": "salesforce",
            "auth": {"type": "AppParameters", "secretRef": {"name": "sf"}},
            "settings": {"organizationUrl": "https://acme.my.salesforce.com"},
        },
        "identity": {"source": "email", "destination": "Email"},
        "inclusionList": {"app": "source", "list": "Sales-qualified contacts"},
        "mappings": {
            "fields": [
                {"source": "jobtitle", "destination": "Title", "direction": "TwoWay"},
                {
                    "source": "lifecyclestage",
                    "destination": "Status__c",
                    "direction": "ToDestination",
                    "values": {"lead": "Open"},
                    "required": True,
                },
            ]
        },
    },
}


def test_committed_crd_is_generated_from_the_models() -> None:
    committed = (ROOT / "crds" / "datasyncconnections.yaml").read_text()
    assert committed == crd_yaml(), "run `datasync crd --write` and commit the result"


def test_api_reference_is_generated_from_the_models() -> None:
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == reference_markdown(), "run `datasync docs --write` and commit it"


def test_crd_carries_no_defaults_so_gitops_sees_no_drift() -> None:
    assert "default:" not in crd_yaml()


def test_a_complete_connection_is_valid() -> None:
    assert validate_connection(VALID) == []


def _with(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    node: Any = document
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return document


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("spec.direction", "Sideways", "spec.direction", "TwoWay"),
        ("spec.schedule", "every monday", "spec.schedule", "cron"),
        ("spec.schedule", "61 * * * *", "spec.schedule", "cron"),
        ("spec.source.auth.secretRef", _DELETE, "spec.source.auth.secretRef", "required"),
        ("spec.source.app", "hubspott", "spec.source.app", "unknown connector"),
        (
            "spec.destination.auth.secretRef",
            {"name": "sf", "namespace": "kube-system"},
            "spec.destination.auth.secretRef",
            "own namespace",
        ),
        (
            "spec.mappings.fields.0.direction",
            "Upwards",
            "spec.mappings.fields[0].direction",
            "ToDestination",
        ),
        ("spec.inclusionList.app", "hubspot", "spec.inclusionList.app", "source"),
        ("spec.surprise", True, "spec.surprise", "unknown field"),
        ("metadata.name", "Not_A_Name", "metadata.name", "lowercase"),
    ],
)
def test_invalid_manifests_name_the_field(path: str, value: Any, field: str, words: str) -> None:
    problems = validate_connection(_with(path, value))
    assert problems, "expected a problem"
    assert any(p.location == field and words in p.message for p in problems), problems


def test_to_source_mapping_in_a_one_way_connection_is_refused() -> None:
    document = _with("spec.direction", "OneWay")
    problems = validate_connection(document)
    assert [p.location for p in problems] == ["spec.mappings.fields[0].direction"]
    assert "TwoWay" in problems[0].message


def test_auth_type_the_connector_does_not_accept() -> None:
    document = _with("spec.destination.app", "postgres")
    document["spec"]["destination"]["settings"] = {"table": "contacts"}
    document["spec"]["destination"]["auth"]["type"] = "OAuth"
    problems = validate_connection(document)
    assert any(p.location == "spec.destination.auth.type" for p in problems), problems


def test_secret_keys_are_checked_when_secrets_are_given() -> None:
    secrets = {"hs": {"clientId": "x", "clientSecret": "y"}, "sf": {"clientId": "a"}}
    problems = validate_connection(VALID, secrets)
    messages = " ".join(p.message for p in problems)
    assert "'refreshToken'" in messages and "'clientSecret'" in messages
    assert "x" not in [p.message for p in problems]


def test_validate_command_reports_file_and_field(tmp_path: Path) -> None:
    bad = _with("spec.direction", "Sideways")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hs"}, "stringData": {}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([secret, bad]))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(VALID))
    result = CliRunner().invoke(cli, ["validate", str(good), str(path)])
    assert result.exit_code == 1
    assert f"{path}: spec.direction: must be one of" in result.output
    assert f"{good}: valid" in result.output
    assert CliRunner().invoke(cli, ["validate", str(good)]).exit_code == 0


def test_validate_command_refuses_yaml_alias_bombs(tmp_path: Path) -> None:
    lines = [
        "apiVersion: datasync.io/v1alpha1",
        "kind: DataSyncConnection",
        "metadata: {name: bomb}",
        'x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for level in range(1, 10):
        alias = f"*a{level - 1}"
        lines.append(f"x{level}: &a{level} [{', '.join([alias] * 9)}]")
    lines.append("spec: {goal: *a9}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert "aliases" in result.output
    assert "Traceback" not in result.output


def test_validate_command_reports_broken_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert "not valid YAML: line" in result.output


def test_every_example_is_valid() -> None:
    files = sorted((ROOT / "examples").rglob("*.yaml"))
    connections = 0
    for path in files:
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 0, result.output
        connections += "valid (" in result.output
    assert connections >= 3, "examples/ should hold at least three DataSyncConnections"


def test_yaml_errors_never_repeat_the_offending_token(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    for value in ("*Sup3rSecretPw", "!Sup3rSecretTag"):
        path.write_text(f"kind: Secret\nstringData:\n  password: {value}\n")
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 1
        assert "not valid YAML: line 3" in result.output
        assert "Sup3rSecret" not in result.output
