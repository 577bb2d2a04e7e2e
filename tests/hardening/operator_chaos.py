"""Shared helpers of the operator chaos tests (test_operator_kill, test_operator_apiserver)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.operator.conftest import Apps
from tests.operator.support import GROUP, PLURAL, VERSION, Cluster, connection


def connection_for(apps: Apps, name: str, minute: int) -> dict[str, Any]:
    return connection(name, apps.source(), apps.destination(), schedule=f"{minute} * * * *")


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
    assert cluster.jobs() == []
    for name in names:
        spec = cluster.get(name)["spec"]
        assert cluster.cron_job(f"{name}-sync").spec.schedule == spec["schedule"]
