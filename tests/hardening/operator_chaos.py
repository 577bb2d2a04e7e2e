"""Shared helpers of the operator chaos tests (test_operator_kill, test_operator_apiserver)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from tests.operator.conftest import Apps
from tests.operator.support import GROUP, PLURAL, VERSION, Cluster, connection

# The controller-manager's CronJob controller runs for real: a schedule that comes due
# while a test runs starts a Job, as it should. Hourly schedules ("<minute> * * * *")
# did, whenever the wall clock passed one of their minutes mid-test. So every schedule
# here is daily, at an hour twelve hours from now on the clock the controller-manager
# reads (same host, same time zone; CronJobs without timeZone use its local time): none
# can come due during a test, and any Job is one the operator made.
QUIET_HOUR = (datetime.now().astimezone().hour + 12) % 24


def quiet_schedule(minute: int, hour: int = QUIET_HOUR) -> str:
    return f"{minute} {hour} * * *"


def connection_for(apps: Apps, name: str, minute: int, **metadata: Any) -> dict[str, Any]:
    body = connection(name, apps.source(), apps.destination(), schedule=quiet_schedule(minute))
    body["metadata"].update(metadata)
    return body


def made_by(job: Any) -> str:
    """Who made a Job, for a failure message: its owner and the CronJob controller's or the
    operator's marks on it."""
    owners = [f"{o.kind}/{o.name}" for o in job.metadata.owner_references or []]
    marks = {
        key: value
        for key, value in (job.metadata.annotations or {}).items()
        if key.startswith(("batch.kubernetes.io/", "cronjob.kubernetes.io/", "datasync.io/"))
    }
    return f"{job.metadata.name} owned by {owners}, {marks}"


def all_settled(cluster: Cluster, names: list[str]) -> bool:
    items = {
        item["metadata"]["name"]: item
        for item in cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL
        )["items"]
    }
    for name in names:
        item = items.get(name)
        if item is None:
            return False
        status = item.get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            return False
        if status.get("observedGeneration") != item["metadata"]["generation"]:
            return False
    return True


def assert_exactly_one_of_each(cluster: Cluster, names: list[str]) -> None:
    """One CronJob, ServiceAccount, PVC and ConfigMap per connection, owned by it alone,
    with the spec's schedule; no Job (nothing asked for a run)."""
    uids = {
        item["metadata"]["name"]: item["metadata"]["uid"]
        for item in cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL
        )["items"]
    }
    owned: Counter[str] = Counter()
    for kind, items in (
        ("CronJob", cluster.batch.list_namespaced_cron_job(cluster.namespace).items),
        (
            "ServiceAccount",
            cluster.core.list_namespaced_service_account(cluster.namespace).items,
        ),
        (
            "PersistentVolumeClaim",
            cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace).items,
        ),
        ("ConfigMap", cluster.core.list_namespaced_config_map(cluster.namespace).items),
    ):
        for item in items:
            references = item.metadata.owner_references or []
            if not references:
                continue  # the namespace's own default objects
            assert len(references) == 1, f"{kind}/{item.metadata.name}: {references}"
            (reference,) = references
            assert reference.uid == uids[reference.name], f"{kind}/{item.metadata.name}"
            owned[f"{kind}/{reference.name}"] += 1
    expected = {
        f"{kind}/{name}": 1
        for name in names
        for kind in ("CronJob", "ServiceAccount", "PersistentVolumeClaim", "ConfigMap")
    }
    assert dict(owned) == expected
    # Nothing asked for a run and no schedule came due: a Job here was made up.
    assert [made_by(job) for job in cluster.jobs()] == []
    for name in names:
        spec = cluster.get(name)["spec"]
        assert cluster.cron_job(f"{name}-sync").spec.schedule == spec["schedule"]
