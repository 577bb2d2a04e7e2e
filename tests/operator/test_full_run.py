"""End to end: DataSyncConnection -> CronJob -> Job (sync-now) -> pod running the real
`datasync sync` (executed by the pod runner) against the HubSpot and Salesforce sandbox
apps -> summary in the status, a Synced condition, an Event and the metrics."""

from __future__ import annotations

import re

import pytest

from tests.cluster.podrunner import PodRunner
from tests.operator.conftest import Apps
from tests.operator.support import Cluster, OperatorProcess, connection, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pod_runner")]

CONTACTS = [
    {
        "email": f"person{index}@example.com",
        "firstname": f"First{index}",
        "lastname": f"Last{index}",
    }
    for index in range(3)
]


def _metric(text: str, metric: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_sync_now_runs_a_real_sync_between_sandboxes(
    cluster: Cluster, apps: Apps, operator: OperatorProcess, pod_runner: PodRunner
) -> None:
    apps.hubspot.load(CONTACTS)
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(
        connection("crm", apps.source(), apps.destination(), direction="OneWay", suspend=True)
    )
    cluster.wait_condition("crm", "Ready", "True")
    cluster.wait_condition("crm", "CredentialsValid", "True")

    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "run-1"}}})

    def recorded() -> dict | None:
        status = cluster.get("crm").get("status") or {}
        return status.get("lastSync")

    last = wait_for(recorded, 120, "the sync run to be recorded")
    assert last["result"] == "Succeeded", last
    assert last["job"].startswith("crm-sync-now-")
    assert last["records"]["toDestination"]["created"] == len(CONTACTS)
    synced = cluster.wait_condition("crm", "Synced", "True", "Succeeded")
    assert f"{len(CONTACTS)} created" in synced["message"]
    status = cluster.get("crm")["status"]
    assert status["syncNowHandled"] == "run-1"
    assert status["lastSuccessfulSyncAt"]
    assert status["health"]["inSync"] == len(CONTACTS)
    emails = {str(record.get("Email", "")).lower() for record in apps.salesforce.records()}
    assert {contact["email"] for contact in CONTACTS} <= emails
    # No personal data in the status, events or metrics.
    assert "person0@example.com" not in str(status)
    events = wait_for(
        lambda: [e for e in cluster.events("crm") if e.reason == "SyncFinished"],
        30,
        "a SyncFinished event",
    )
    assert f"{len(CONTACTS)} created" in events[0].message
    metrics = operator.metrics()
    key = {"namespace": cluster.namespace, "name": "crm"}
    assert _metric(metrics, "datasync_sync_runs_total", result="Succeeded", **key) == 1
    assert _metric(
        metrics, "datasync_sync_records_total", direction="toDestination", outcome="created", **key
    ) == len(CONTACTS)
    assert _metric(metrics, "datasync_sync_last_success_timestamp_seconds", **key)
    assert _metric(metrics, "datasync_connection_ready", **key) == 1
    assert "example.com" not in metrics

    # The SQLite state lives on the connection's claim (the pod runner keeps claims as
    # directories), and a second run finds everything in step.
    claim_dir = pod_runner.state_dir / "pv" / cluster.namespace / "crm-state"
    assert list(claim_dir.rglob("*.sqlite3"))
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "run-2"}}})
    second = wait_for(
        lambda: (recorded() or {}).get("job") != last["job"] and recorded(), 120, "a second run"
    )
    assert second["result"] == "Succeeded", second
    assert second["records"]["toDestination"]["created"] == 0
    assert cluster.get("crm")["status"]["health"]["inSync"] == len(CONTACTS)
    assert len(apps.salesforce.records()) == len(CONTACTS)


def test_postgresql_state_store_reaches_the_pod_through_the_mounted_dsn(
    cluster: Cluster, apps: Apps, operator: OperatorProcess, postgres_dsn: str
) -> None:
    import psycopg

    apps.hubspot.load(CONTACTS[:2])
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create_secret("state-db", {"dsn": postgres_dsn})
    cluster.create(
        connection(
            "crm",
            apps.source(),
            apps.destination(),
            direction="OneWay",
            suspend=True,
            state={"type": "PostgreSQL", "secretRef": {"name": "state-db"}},
        )
    )
    cluster.wait_condition("crm", "Ready", "True")
    assert not cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace).items
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "pg"}}})
    last = wait_for(
        lambda: (cluster.get("crm").get("status") or {}).get("lastSync"),
        120,
        "the run to be recorded",
    )
    assert last["result"] == "Succeeded", last
    assert last["records"]["toDestination"]["created"] == 2
    with psycopg.connect(postgres_dsn) as db:
        tables = db.execute(
            "select count(*) from information_schema.tables where table_schema not in "
            "('pg_catalog', 'information_schema')"
        ).fetchone()
    assert tables is not None and tables[0] > 0  # the state store's tables
