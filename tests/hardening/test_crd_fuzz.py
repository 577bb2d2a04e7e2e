"""Generated hostile DataSyncConnections against the CRD on the real kube-apiserver: every
one is either stored or refused with 400/413/422 naming a field, never a 500."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.hardening.hostile import hostile_manifests
from tests.operator.support import install_crd

GROUP, VERSION, PLURAL = "datasync.io", "v1alpha1", "datasyncconnections"

pytestmark = pytest.mark.integration


@pytest.fixture
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    install_crd(kube_api)
    return client.CustomObjectsApi(kube_api)


def test_hostile_manifests_get_a_field_error_never_a_500(
    custom: client.CustomObjectsApi, namespace: str, tally: Counter[str]
) -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile_manifests())
    def check(case: tuple[dict[str, Any], str]) -> None:
        manifest, _ = case
        manifest["metadata"] = {"name": "fuzz-" + uuid.uuid4().hex[:10], "namespace": namespace}
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        except ApiException as error:
            assert error.status in (400, 413, 422), (error.status, str(error.body)[:500])
            if error.status == 422:
                details = json.loads(error.body)["details"]["causes"]
                # (The API server adds a "<nil>" cause when it skipped CEL rules.)
                assert any(cause.get("field", "").startswith("spec") for cause in details)
            outcomes[str(error.status)] += 1
        else:
            outcomes["stored"] += 1
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, manifest["metadata"]["name"]
            )

    check()
    tally["crd_manifests_tried"] += sum(outcomes.values())
    tally["inputs_tried"] += sum(outcomes.values())
    assert outcomes["422"] > sum(outcomes.values()) // 2, outcomes
