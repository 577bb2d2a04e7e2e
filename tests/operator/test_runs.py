"""How the operator records finished sync Jobs: reported summaries, crashes, deadlines.

These Jobs carry the sync labels but run a small Python command instead of `datasync
sync`, so each outcome (a summary in the termination message, a crash, a deadline) is
produced for real by the pod runner and observed by the operator like any other run."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from datasync.api import summary_codec
from datasync.api.models import (
    DirectionCounts,
    Failures,
    FailureSample,
    Health,
    RecordCounts,
    SyncResult,
    SyncSummary,
)
from tests.operator.conftest import Apps
from tests.operator.support import Cluster, OperatorProcess, connection, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pod_runner")]


def _ready(cluster: Cluster, apps: Apps) -> None:
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination(), suspend=True))
    cluster.wait_condition("crm", "Ready", "True")


def _job(cluster: Cluster, name: str, script: str, **spec: Any) -> None:
    cron = cluster.cron_job("crm-sync")
    labels = dict(cron.spec.job_template.metadata.labels)
    annotations = dict(cron.spec.job_template.metadata.annotations or {})
    cluster.batch.create_namespaced_job(
        cluster.namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {
                "backoffLimit": 0,
                **spec,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "containers": [
                            {
                                "name": "sync",
                                "image": "datasync:test",
                                "command": ["python", "-c", script],
                                "terminationMessagePath": "/dev/termination-log",
                            }
                        ],
                    },
                },
            },
        },
    )


def _metric(text: str, metric: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_reported_summary_lands_in_status_events_and_metrics(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    _ready(cluster, apps)
    now = datetime.now(UTC).replace(microsecond=0)
    summary = SyncSummary(
        job="crm-manual-1",
        startedAt=now - timedelta(seconds=42),
        finishedAt=now,
        result=SyncResult.PARTIALLY_SUCCEEDED,
        records=RecordCounts(toDestination=DirectionCounts(read=5, created=3, updated=1, failed=1)),
        failures=Failures(
            total=1,
            byReason={"InvalidEmail": 1},
            samples=[
                FailureSample(
                    app="destination", recordId="003A", field="Email", reason="InvalidEmail"
                )
            ],
        ),
        health=Health(inSync=4, failing={"InvalidEmail": 1}),
    )
    message = summary_codec.encode(summary)
    script = f"open('/dev/termination-log', 'w').write({message!r})"
    _job(cluster, "crm-manual-1", script)

    synced = cluster.wait_condition("crm", "Synced", "True", "PartiallySucceeded")
    assert "1 records failed" in synced["message"]
    status = cluster.get("crm")["status"]
    assert status["lastSync"]["job"] == "crm-manual-1"
    assert status["lastSync"]["records"]["toDestination"]["created"] == 3
    assert status["lastSync"]["failures"]["samples"][0]["recordId"] == "003A"
    assert status["health"] == {"inSync": 4, "excluded": {}, "failing": {"InvalidEmail": 1}}
    assert status["lastSuccessfulSyncAt"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
    events = wait_for(
        lambda: [e for e in cluster.events("crm") if e.reason == "SyncFinished"],
        30,
        "a SyncFinished event",
    )
    assert "3 created" in events[0].message

    metrics = operator.metrics()
    key = {"namespace": cluster.namespace, "name": "crm"}
    assert _metric(metrics, "datasync_sync_runs_total", result="PartiallySucceeded", **key) == 1
    assert (
        _metric(
            metrics,
            "datasync_sync_records_total",
            direction="toDestination",
            outcome="created",
            **key,
        )
        == 3
    )
    assert (
        _metric(metrics, "datasync_sync_record_failures_total", reason="InvalidEmail", **key) == 1
    )
    assert _metric(metrics, "datasync_sync_last_duration_seconds", **key) == 42
    assert (
        _metric(metrics, "datasync_sync_last_success_timestamp_seconds", **key) == now.timestamp()
    )
    assert _metric(metrics, "datasync_records_in_sync", **key) == 4
    assert "003A" not in metrics


def test_crash_without_summary_is_a_failed_sync(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    _ready(cluster, apps)
    _job(cluster, "crm-crash", "import sys; sys.exit(3)")
    synced = cluster.wait_condition("crm", "Synced", "False", "Crashed")
    assert "code 3" in synced["message"]
    last = cluster.get("crm")["status"]["lastSync"]
    assert last["result"] == "Failed" and last["job"] == "crm-crash"
    assert "lastSuccessfulSyncAt" not in cluster.get("crm")["status"]
    wait_for(
        lambda: [e for e in cluster.events("crm") if e.reason == "SyncFailed"],
        30,
        "a SyncFailed event",
    )
    metrics = operator.metrics()
    assert (
        _metric(
            metrics,
            "datasync_sync_run_failures_total",
            reason="Crashed",
            namespace=cluster.namespace,
            name="crm",
        )
        == 1
    )
    assert (
        _metric(
            metrics,
            "datasync_sync_runs_total",
            result="Failed",
            namespace=cluster.namespace,
            name="crm",
        )
        == 1
    )


def test_deadline_exceeded_is_a_failed_sync_with_its_reason(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    _ready(cluster, apps)
    _job(cluster, "crm-slow", "import time; time.sleep(120)", activeDeadlineSeconds=2)
    synced = cluster.wait_condition("crm", "Synced", "False", "DeadlineExceeded", timeout=90)
    assert "activeDeadlineSeconds" in synced["message"]


def test_restart_does_not_record_a_run_twice(
    cluster: Cluster, apps: Apps, operator_factory: Any
) -> None:
    first = operator_factory()
    _ready(cluster, apps)
    _job(cluster, "crm-crash", "import sys; sys.exit(3)")
    cluster.wait_condition("crm", "Synced", "False", "Crashed")
    wait_for(
        lambda: [e for e in cluster.events("crm") if e.reason == "SyncFailed"],
        30,
        "a SyncFailed event",
    )
    first.stop()
    version = cluster.get("crm")["metadata"]["resourceVersion"]
    second = operator_factory(log_name="operator-2.log")
    wait_for(lambda: "Resuming is processed" in second.log_text(), 30, "resume")
    import time

    time.sleep(2)
    assert cluster.get("crm")["metadata"]["resourceVersion"] == version
    failed_events = [e for e in cluster.events("crm") if e.reason == "SyncFailed"]
    assert sum(e.count or 1 for e in failed_events) == 1
    # Gauges come back from the stored status; counters start from the new process.
    metrics = second.metrics()
    assert _metric(
        metrics, "datasync_sync_last_run_timestamp_seconds", namespace=cluster.namespace, name="crm"
    )
