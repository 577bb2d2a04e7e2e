"""`datasync status` against the real control plane: the CRD from crds/, connections with
fake-but-valid statuses written through the status subresource."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from datasync.api.models import GROUP, PLURAL, VERSION
from datasync.cli import cli
from datasync.commands.status import StatusError, list_connections
from tests.cluster.controlplane import (
    ControlPlane,
    free_port,
    kubeconfig_document,
    write_kubeconfig,
)
from tests.status.support import broken_status, manifest, partial_status

pytestmark = pytest.mark.integration

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "datasyncconnections.yaml"


@pytest.fixture(scope="module")
def crd(kube_api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(kube_api)
    body = yaml.safe_load(CRD_FILE.read_text())
    try:
        extensions.create_custom_resource_definition(body)
    except ApiException as error:
        if error.status != 409:  # already installed (by another test module)
            raise
    custom = client.CustomObjectsApi(kube_api)
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while True:  # served a moment after Established
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            return
        except ApiException:
            if datetime.now(UTC) > deadline:
                raise


def _create(
    kube_api: client.ApiClient,
    namespace: str,
    name: str,
    status: dict[str, Any] | None,
    **spec: Any,
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, manifest(namespace, name, **spec)
    )
    if status is not None:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )


@pytest.fixture
def connections(kube_api: client.ApiClient, namespace: str, crd: None) -> str:
    finished = datetime.now(UTC) - timedelta(minutes=3)
    _create(kube_api, namespace, "contacts", partial_status(finished))
    _create(kube_api, namespace, "paused", None, suspend=True)
    _create(kube_api, namespace, "broken", broken_status())
    return namespace


def _status(
    control_plane: ControlPlane, *args: str, kubeconfig: Path | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["status", "--kubeconfig", str(kubeconfig or control_plane.kubeconfig), *args],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def test_json_per_connection(control_plane: ControlPlane, connections: str) -> None:
    code, output = _status(control_plane, "-n", connections, "-o", "json")
    assert code == 0, output
    rows = {row["name"]: row for row in json.loads(output)}
    assert sorted(rows) == ["broken", "contacts", "paused"]
    contacts = rows["contacts"]
    assert (contacts["source"], contacts["destination"]) == ("hubspot", "salesforce")
    assert contacts["ready"]["status"] == "True"
    assert contacts["credentialsValid"]["status"] == "True"
    assert contacts["lastRun"]["result"] == "PartiallySucceeded"
    assert contacts["skipped"] == {"MissingIdentity": 49, "NotInList": 843, "OptedOut": 57}
    assert contacts["failures"]["byReason"] == {"InvalidEmail": 21, "RequiredFieldMissing": 16}
    assert [s["recordId"] for s in contacts["failures"]["samples"]] == [
        "1077",
        "1113",
        "003Dn0000000ABCIA2",
        "003Dn0000000XYZIA2",
    ]
    next_run = datetime.fromisoformat(contacts["nextRunAt"].replace("Z", "+00:00"))
    assert next_run.minute % 15 == 0 and timedelta(0) < next_run - datetime.now(UTC) <= timedelta(
        minutes=15
    )
    assert rows["paused"]["nextRunAt"] is None and rows["paused"]["lastRun"] is None
    assert rows["broken"]["ready"] == {
        "status": "False",
        "reason": "SecretNotFound",
        "message": "Secret 'hubspot-oauth' not found in namespace",
    }


def test_table_reads_like_the_checklist(control_plane: ControlPlane, connections: str) -> None:
    code, output = _status(control_plane, "-n", connections)
    assert code == 0, output
    for expected in (
        "hubspot <-> salesforce",
        "PartiallySucceeded",
        "(3m ago)",
        "missing email 49 (MissingIdentity)",
        "not in list 843 (NotInList)",
        "filtered out 57 (OptedOut)",
        "InvalidEmail 21: hubspot 1077 (Email), salesforce 003Dn0000000ABCIA2",
        "RequiredFieldMissing 16: hubspot 1113 (LastName)",
        "MissingIdentity e.g. salesforce 003Dn0000000XYZIA2",
        "to salesforce: 760 created, 177 updated",
        "none: spec.suspend is true",
        "no run has finished yet",
        "is the operator running and watching this namespace?",
        "SecretNotFound",
        "refreshToken of Secret hubspot-oauth",
    ):
        assert expected in output, expected
    assert "\x1b[" not in output


def test_names_and_all_namespaces(control_plane: ControlPlane, connections: str) -> None:
    code, output = _status(control_plane, "-A", "-o", "json")
    assert code == 0, output
    ours = {row["name"] for row in json.loads(output) if row["namespace"] == connections}
    assert ours == {"broken", "contacts", "paused"}
    code, output = _status(control_plane, "-n", connections, "paused", "-o", "json")
    assert [row["name"] for row in json.loads(output)] == ["paused"]
    code, output = _status(control_plane, "-n", connections, "nosuch")
    assert code == 1 and "no DataSyncConnection named nosuch" in output


def test_empty_namespace_says_what_to_do(
    control_plane: ControlPlane, namespace: str, crd: None
) -> None:
    code, output = _status(control_plane, "-n", namespace)
    assert code == 0 and "No DataSyncConnections in namespace" in output and "-A" in output


def test_unreachable_cluster(control_plane: ControlPlane, tmp_path: Path) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    kubeconfig = write_kubeconfig(
        tmp_path / "dead.kubeconfig",
        kubeconfig_document(dead, control_plane.ca_file, {"token": "x"}),
    )
    code, output = _status(control_plane, kubeconfig=kubeconfig)
    assert code == 1
    assert f"cannot reach the Kubernetes API server at {dead}" in output
    assert "Traceback" not in output


def test_crd_not_installed_is_named(kube_api: client.ApiClient, namespace: str) -> None:
    # A resource the API server does not serve gets the same 404 as a missing CRD.
    with pytest.raises(StatusError) as caught:
        list_connections(kube_api, namespace, plural="nosuchconnections")
    assert "is not installed" in caught.value.message and "datasync crd" in caught.value.message


def test_forbidden_names_the_permission(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    crd: None,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    kubeconfig = control_plane.kubeconfig_for_token(
        token, tmp_path / "nobody.kubeconfig", namespace
    )
    code, output = _status(control_plane, kubeconfig=kubeconfig)
    assert code == 1
    assert (
        f"not allowed to list datasyncconnections.datasync.io in namespace '{namespace}'" in output
    )


def test_no_configuration_at_all(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "no usable Kubernetes configuration" in result.output and "--kubeconfig" in result.output
    result = CliRunner().invoke(cli, ["status", "--kubeconfig", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_context_picks_cluster_and_default_namespace(
    control_plane: ControlPlane, connections: str, tmp_path: Path
) -> None:
    admin = json.loads(control_plane.kubeconfig.read_text())
    live = admin["contexts"][0]
    document = {
        **admin,
        "clusters": [
            *admin["clusters"],
            {"name": "gone", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}},
        ],
        "contexts": [
            {"name": "live", "context": {**live["context"], "namespace": connections}},
            {"name": "gone", "context": {**live["context"], "cluster": "gone"}},
        ],
        "current-context": "gone",
    }
    kubeconfig = write_kubeconfig(tmp_path / "two.kubeconfig", document)
    code, output = _status(control_plane, "--context", "live", "-o", "json", kubeconfig=kubeconfig)
    assert code == 0, output
    assert {row["namespace"] for row in json.loads(output)} == {connections}
    code, output = _status(control_plane, kubeconfig=kubeconfig)
    assert code == 1 and "cannot reach" in output
