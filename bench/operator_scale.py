"""Scenario 6: many DataSyncConnections applied at once to a real control plane
(tests/cluster) with the operator running as a subprocess."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox
from kubernetes import client

from bench.common import BackgroundLoop
from datasync.api.models import AuthType
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import wait_for_service_account
from tests.operator.support import (
    GROUP,
    PLURAL,
    VERSION,
    Cluster,
    OperatorProcess,
    connection,
    endpoint,
    install_crd,
    request_counts,
    secret,
)

NAMESPACE = "bench-scale"
# Writes the operator cannot have made: it only ever POSTs Events (the persistent-volume
# controller PATCHes the counts of its FailedBinding Events for the unbound claims), and
# it holds no Lease (standalone Kopf, no such RBAC); the controller-manager renews those.
NOT_THE_OPERATORS = ("PATCH events", "PUT leases")
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE", "APPLY")


def delta(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> dict[str, int]:
    changed = {
        f"{verb} {resource}": after[key] - before.get(key, 0)
        for key in after
        for verb, resource in [key]
        if after[key] - before.get(key, 0) > 0
    }
    return dict(sorted(changed.items(), key=lambda item: -item[1]))


def writes(changes: dict[str, int]) -> int:
    return sum(count for key, count in changes.items() if key.split(" ")[0] in WRITE_VERBS)


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class ScaleResult:
    connections: int
    apply_seconds: float = 0.0
    ready_seconds: float | None = None
    ready: int = 0
    ready_curve: list[tuple[float, int]] = field(default_factory=list)  # (seconds, Ready)
    requests: dict[str, int] = field(default_factory=dict)
    bench_requests: dict[str, int] = field(default_factory=dict)
    operator_rss_mib: float = 0.0
    resync: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_scale(loop: BackgroundLoop, workdir: Path, count: int, timeout: float) -> ScaleResult:
    result = ScaleResult(count)
    hubspot, salesforce = HubSpotSandbox(), SalesforceSandbox()
    loop.run(hubspot.start())
    loop.run(salesforce.start())
    plane = ControlPlane()
    operator: OperatorProcess | None = None
    try:
        plane.start()
        api = plane.api_client()
        install_crd(api)
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        wait_for_service_account(core, NAMESPACE)
        cluster = Cluster(api, NAMESPACE)
        operator = OperatorProcess(plane.kubeconfig, [NAMESPACE], workdir / "operator.log")
        operator.start()
        time.sleep(2)
        source = endpoint("hubspot", "AppParameters", "SECRET", hubspot.connector_settings())
        destination = endpoint("salesforce", "OAuth", "SECRET", salesforce.connector_settings())
        hubspot_data = hubspot.credentials(AuthType.APP_PARAMETERS)
        salesforce_data = salesforce.credentials(AuthType.OAUTH)

        def apply(index: int) -> None:
            name = f"crm-{index:04d}"
            core.create_namespaced_secret(NAMESPACE, secret(f"{name}-hubspot", hubspot_data))
            core.create_namespaced_secret(NAMESPACE, secret(f"{name}-salesforce", salesforce_data))
            body = connection(
                name,
                {**source, "auth": {**source["auth"], "secretRef": {"name": f"{name}-hubspot"}}},
                {
                    **destination,
                    "auth": {**destination["auth"], "secretRef": {"name": f"{name}-salesforce"}},
                },
                schedule="0 3 * * *",
            )
            cluster.create(body)

        before = request_counts(plane)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(apply, range(count)))
        result.apply_seconds = time.monotonic() - started
        polls = 0
        deadline = started + timeout
        while time.monotonic() < deadline:
            items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)[
                "items"
            ]
            polls += 1
            result.ready = sum(1 for item in items if _ready(item))
            result.ready_curve.append((round(time.monotonic() - started, 1), result.ready))
            if result.ready == count:
                result.ready_seconds = time.monotonic() - started
                break
            time.sleep(1.0)
        settle(plane)
        after = request_counts(plane)
        changes = delta(after, before)
        # The bench's own requests: 2 Secrets + 1 connection created per connection, and
        # the polling lists; they are taken out of the operator's figures.
        own = {
            "POST secrets": 2 * count,
            "POST datasyncconnections": count,
            "LIST datasyncconnections": polls,
        }
        result.bench_requests = own
        result.requests = {
            key: value - own.get(key, 0)
            for key, value in changes.items()
            if value - own.get(key, 0)
        }
        assert operator.process is not None
        result.operator_rss_mib = vm_hwm_mib(operator.process.pid)
        result.resync = resync(plane, cluster, operator, workdir)
        operator = None  # resync() leaves the restarted operator stopped
    except Exception as error:  # reported in the results, not hidden
        result.error = repr(error)
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()
        loop.run(hubspot.stop())
        loop.run(salesforce.stop())
    return result


def _ready(item: dict[str, Any]) -> bool:
    for condition in (item.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def settle(plane: ControlPlane, quiet: float = 8.0, limit: float = 120.0) -> None:
    """Wait until no write reaches the API server for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last = writes(delta(request_counts(plane), Counter()))
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = writes(delta(request_counts(plane), Counter()))
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return


def resync(
    plane: ControlPlane, cluster: Cluster, operator: OperatorProcess, workdir: Path
) -> dict[str, Any]:
    """Restart the operator (it resyncs every connection) and compare what it owns."""
    versions = cluster.owned_versions()
    operator.stop()
    before = request_counts(plane)
    restarted = OperatorProcess(plane.kubeconfig, [NAMESPACE], workdir / "operator-restart.log")
    started = time.monotonic()
    restarted.start()
    try:
        time.sleep(5)
        settle(plane)
        seconds = time.monotonic() - started
        after = request_counts(plane)
        changes = delta(after, before)
        later = cluster.owned_versions()
        changed = sorted(key for key in versions if later.get(key) != versions[key])
        assert restarted.process is not None
        rss = vm_hwm_mib(restarted.process.pid)
    finally:
        restarted.stop()
    return {
        "objects": len(versions),
        "objectsChanged": len(changed),
        "changedSample": changed[:10],
        "writeRequests": writes(changes),
        "operatorWriteRequestsAtMost": writes(
            {key: n for key, n in changes.items() if key not in NOT_THE_OPERATORS}
        ),
        "requests": changes,
        "settleSeconds": round(seconds, 1),
        "operatorRssMiB": round(rss, 1),
    }
