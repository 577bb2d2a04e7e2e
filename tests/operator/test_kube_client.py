"""The operator's small Kubernetes client against the real API server."""

from __future__ import annotations

import asyncio
import time

import pytest
from datasync_operator.kube import Kube, KubeError, load_credentials
from kubernetes import client

from tests.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def test_writes_into_a_terminating_namespace_are_recognised(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    # A finalizer keeps the namespace in Terminating long enough to write into it.
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="hold", finalizers=["datasync.test/hold"])
        ),
    )
    core.delete_namespace(namespace)
    deadline = time.monotonic() + 30
    while core.read_namespace(namespace).status.phase != "Terminating":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    async def write() -> KubeError:
        kube = Kube(load_credentials(str(control_plane.kubeconfig)))
        try:
            await kube.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}},
            )
        except KubeError as error:
            return error
        finally:
            await kube.close()
        raise AssertionError("the API server accepted a write into a terminating namespace")

    try:
        error = asyncio.run(write())
        assert error.status == 403
        assert error.namespace_terminating
    finally:
        core.patch_namespaced_config_map("hold", namespace, {"metadata": {"finalizers": None}})


def test_other_refusals_are_not_mistaken_for_termination(
    control_plane: ControlPlane, namespace: str
) -> None:
    async def write() -> KubeError:
        kube = Kube(load_credentials(str(control_plane.kubeconfig)))
        try:
            await kube.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}},
            )
        except KubeError as error:
            return error
        finally:
            await kube.close()
        raise AssertionError("an invalid name was accepted")

    error = asyncio.run(write())
    assert error.status == 422
    assert not error.namespace_terminating
