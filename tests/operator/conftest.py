"""Fixtures for the operator tests (the control plane fixtures come from tests.cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox
from kubernetes import client

from datasync.api.models import AuthType
from tests.cluster.controlplane import ControlPlane
from tests.operator.support import BackgroundLoop, Cluster, OperatorProcess, endpoint, install_crd


@pytest.fixture(scope="session")
def dsc_crd(kube_api: client.ApiClient) -> None:
    install_crd(kube_api)


@pytest.fixture
def cluster(kube_api: client.ApiClient, namespace: str, dsc_crd: None) -> Cluster:
    return Cluster(kube_api, namespace)


@dataclass
class Apps:
    hubspot: HubSpotSandbox
    salesforce: SalesforceSandbox

    def source(self, secret: str = "hubspot-auth") -> dict[str, object]:
        return endpoint("hubspot", "AppParameters", secret, self.hubspot.connector_settings())

    def destination(self, secret: str = "salesforce-auth") -> dict[str, object]:
        return endpoint("salesforce", "OAuth", secret, self.salesforce.connector_settings())

    def hubspot_secret(self) -> dict[str, str]:
        return self.hubspot.credentials(AuthType.APP_PARAMETERS)

    def salesforce_secret(self) -> dict[str, str]:
        return self.salesforce.credentials(AuthType.OAUTH)


@contextmanager
def serving(hubspot: HubSpotSandbox, salesforce: SalesforceSandbox) -> Iterator[Apps]:
    """Both sandboxes served from a background loop for as long as the block runs."""
    loop = BackgroundLoop()
    loop.run(hubspot.start())
    loop.run(salesforce.start())
    try:
        yield Apps(hubspot, salesforce)
    finally:
        loop.run(hubspot.stop())
        loop.run(salesforce.stop())
        loop.close()


@pytest.fixture
def apps() -> Iterator[Apps]:
    with serving(HubSpotSandbox(), SalesforceSandbox()) as served:
        yield served


@pytest.fixture
def operator_factory(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, dsc_crd: None
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(
        kubeconfig: Path | None = None,
        extra_args: list[str] | None = None,
        log_name: str = "operator.log",
        cluster_wide: bool = False,
    ) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig or control_plane.kubeconfig,
            [] if cluster_wide else [namespace],
            tmp_path / log_name,
            extra_args,
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        print(f"--- operator log {process.log_path} (tail) ---\n{process.log_tail(80)}")


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_factory()
