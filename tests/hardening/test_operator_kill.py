"""The operator SIGKILLed mid-reconcile, several times in a row, with many connections
and changes made while it is down, then restarted against the real control plane: every
connection ends Ready with exactly one of each object, and nothing keeps being rewritten."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest

from tests.hardening.operator_chaos import (
    all_settled,
    assert_exactly_one_of_each,
    connection_for,
)
from tests.operator.conftest import Apps
from tests.operator.support import Cluster, wait_for

pytestmark = pytest.mark.integration

FIRST_BATCH = 8
LATE_PER_KILL = 10
KILLS = 4  # at least this many kills in a row
MID_RECONCILE_KILLS = 2  # ... and at least this many landing before it had finished
MAX_KILLS = 10  # a fast, idle machine may need a few more tries to land those


def test_sigkill_mid_reconcile_many_times_then_restart(
    cluster: Cluster, apps: Apps, operator_factory: Any, tally: Counter[str]
) -> None:
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    names = [f"crm-{i:02d}" for i in range(FIRST_BATCH)]
    for number, name in enumerate(names):
        cluster.create(connection_for(apps, name, number))
    rng = random.Random(4)
    kills = 0
    pending = list(names)  # created or edited since the operator last ran
    tries = 0
    for attempt in range(MAX_KILLS):
        if attempt >= KILLS and kills >= MID_RECONCILE_KILLS:
            break
        tries += 1
        operator = operator_factory(log_name=f"operator-{attempt}.log")

        def started_on_pending(pending: list[str] = pending) -> bool:
            cron_jobs = cluster.batch.list_namespaced_cron_job(cluster.namespace).items
            return any(item.metadata.name[: -len("-sync")] in pending for item in cron_jobs)

        # Kill it while it works: once it has written something, before it is done.
        wait_for(started_on_pending, 60, "the operator to start writing", interval=0.02)
        time.sleep(rng.uniform(0.0, 0.02))
        operator.process.kill()
        operator.process.wait(timeout=30)
        # Dead now: what it left is exactly what it had done when the kill landed.
        kills += 0 if all_settled(cluster, names) else 1
        # Changes made while it is down: new connections and an edited one.
        pending = []
        for number in range(LATE_PER_KILL):
            name = f"late-{attempt}-{number}"
            names.append(name)
            pending.append(name)
            cluster.create(connection_for(apps, name, 30 + number))
        edited = rng.choice(names[:FIRST_BATCH])
        cluster.patch(edited, {"spec": {"schedule": f"{rng.randrange(60)} 3 * * *"}})
    assert kills >= MID_RECONCILE_KILLS, (
        f"only {kills} of {tries} kills came before the operator had finished"
    )
    tally["operator_kills_mid_reconcile"] += kills

    final = operator_factory(log_name="operator-final.log")
    wait_for(lambda: all_settled(cluster, names), 180, "every connection Ready", interval=0.5)
    assert_exactly_one_of_each(cluster, names)
    # Settled means settled: nothing keeps being rewritten.
    time.sleep(2)
    before = cluster.owned_versions()
    time.sleep(3)
    assert cluster.owned_versions() == before
    assert final.process.poll() is None
