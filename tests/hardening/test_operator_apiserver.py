"""The API server restarted under the operator, and its watch streams expired (etcd
compacted past what it has seen, so resuming gets 410 Gone): it follows every change
afterwards, without duplicates or stuck resources."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.cluster.controlplane import ControlPlane
from tests.hardening.operator_chaos import (
    QUIET_HOUR,
    all_settled,
    assert_exactly_one_of_each,
    connection_for,
    quiet_schedule,
)
from tests.operator.conftest import Apps
from tests.operator.support import GROUP, PLURAL, VERSION, Cluster, wait_for

pytestmark = pytest.mark.integration

# Schedules the tests move to: another hour that cannot come due during the test.
QUIET_7 = quiet_schedule(7, (QUIET_HOUR + 1) % 24)
QUIET_8 = quiet_schedule(8, (QUIET_HOUR + 1) % 24)


def test_api_server_restart_and_expired_watches(
    cluster: Cluster,
    apps: Apps,
    operator_factory: Any,
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    tally: Counter[str],
) -> None:
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    operator = operator_factory()
    names = [f"crm-{i}" for i in range(3)]
    for number, name in enumerate(names):
        cluster.create(connection_for(apps, name, number))
    wait_for(lambda: all_settled(cluster, names), 120, "every connection Ready")
    seen = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL)
    old_version = seen["metadata"]["resourceVersion"]

    # 1. The API server goes away for a while and comes back.
    control_plane.restart_apiserver(down_for=1.0)
    tally["apiserver_restarts"] += 1
    cluster.patch(names[0], {"spec": {"schedule": QUIET_7}})
    names.append("after-restart")
    cluster.create(connection_for(apps, "after-restart", 44))
    wait_for(lambda: all_settled(cluster, names), 120, "the operator to follow after a restart")
    assert cluster.cron_job(f"{names[0]}-sync").spec.schedule == QUIET_7

    # 2. Its watch streams expire: history compacted past what it has seen, then the API
    # server restarts (its watch cache rebuilt), so resuming gets 410 Gone.
    core = client.CoreV1Api(kube_api)
    for number in range(5):  # move etcd's revision past the operator's last seen version
        core.create_namespaced_config_map(
            cluster.namespace,
            {"metadata": {"name": f"filler-{number}"}, "data": {"n": str(number)}},
        )
    control_plane.compact_etcd()
    control_plane.restart_apiserver()
    tally["apiserver_restarts"] += 1
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(
            cluster.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            cluster.namespace,
            PLURAL,
            resource_version=old_version,
            timeout_seconds=5,
        ):
            pass
    assert gone.value.status == 410, "resuming an old watch must be refused as expired"
    tally["watch_410_forced"] += 1

    cluster.patch(names[1], {"spec": {"schedule": QUIET_8}})
    names.append("after-410")
    cluster.create(connection_for(apps, "after-410", 45))
    cluster.delete("crm-2")
    names.remove("crm-2")
    wait_for(lambda: all_settled(cluster, names), 120, "the operator to follow after 410")
    assert cluster.cron_job(f"{names[1]}-sync").spec.schedule == QUIET_8

    def collected() -> bool:
        objects = [
            *cluster.batch.list_namespaced_cron_job(cluster.namespace).items,
            *cluster.core.list_namespaced_service_account(cluster.namespace).items,
            *cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace).items,
            *cluster.core.list_namespaced_config_map(cluster.namespace).items,
        ]
        return not any(
            ref.name == "crm-2" for item in objects for ref in item.metadata.owner_references or []
        )

    wait_for(collected, 60, "the deleted connection's objects to be collected")
    assert_exactly_one_of_each(cluster, names)
    assert operator.process.poll() is None, operator.log_tail()
