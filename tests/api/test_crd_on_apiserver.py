"""The generated CRD on a real kube-apiserver: schema, CEL rules, status, printer columns."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.api.test_manifests import VALID
from tests.cluster.controlplane import ControlPlane
from tests.operator.support import install_crd

GROUP, VERSION, PLURAL = "datasync.io", "v1alpha1", "datasyncconnections"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    install_crd(kube_api)
    return client.CustomObjectsApi(kube_api)


def _manifest(namespace: str, name: str, **spec_changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    document["metadata"] = {"name": name, "namespace": namespace}
    document["spec"].update(spec_changes)
    return document


def _rejection(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


def test_valid_connection_is_stored_exactly_as_written(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = _manifest(namespace, "contacts")
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert created["spec"] == body["spec"], "the API server must add no defaults (GitOps drift)"


def test_api_server_rejects_an_unknown_direction(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    message = _rejection(custom, namespace, _manifest(namespace, "bad", direction="Sideways"))
    assert "spec.direction" in message and "TwoWay" in message


def test_api_server_rejects_a_bad_schedule_and_unknown_connector(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = _manifest(namespace, "bad", schedule="every monday")
    body["spec"]["source"]["app"] = "hubspott"
    message = _rejection(custom, namespace, body)
    assert "spec.schedule" in message and "spec.source.app" in message


def test_api_server_rejects_a_missing_secret_ref(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = _manifest(namespace, "bad")
    del body["spec"]["destination"]["auth"]["secretRef"]
    message = _rejection(custom, namespace, body)
    assert "spec.destination.auth.secretRef" in message and "Required" in message


def test_cel_rule_rejects_to_source_mapping_in_a_one_way_connection(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    message = _rejection(custom, namespace, _manifest(namespace, "bad", direction="OneWay"))
    assert "spec.mappings.fields" in message
    assert "need direction: TwoWay on the connection" in message


def test_status_is_a_subresource_with_a_declared_schema(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = _manifest(namespace, "with-status")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    status = {
        "observedGeneration": 1,
        "health": {"inSync": 7, "excluded": {"MissingIdentity": 2}, "failing": {}},
        "unknownField": "pruned",
    }
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "with-status",
        {"status": status, "spec": {"suspend": True}},
    )
    assert patched["status"]["health"]["inSync"] == 7
    assert "unknownField" not in patched["status"], "status schema must be structural, not open"
    assert "suspend" not in patched["spec"], "the status subresource must not change spec"
    assert patched["metadata"]["generation"] == 1


def test_kubectl_explain_and_get_read_like_documentation(
    control_plane: ControlPlane, custom: client.CustomObjectsApi, namespace: str
) -> None:
    explain = control_plane.kubectl("explain", "datasyncconnection.spec.mappings").stdout
    assert "connector pair's default field mappings" in explain
    body = _manifest(namespace, "columns")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    table = control_plane.kubectl("get", "dsc", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    for column in ("DIRECTION", "SOURCE", "DESTINATION", "READY", "SYNCED", "FAILED"):
        assert column in header
    assert "TwoWay" in table and "hubspot" in table
