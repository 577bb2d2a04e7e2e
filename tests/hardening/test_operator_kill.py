"""The operator SIGKILLed mid-reconcile, several times in a row, with many connections
and changes made while it is down, then restarted against the real control plane: every
connection ends Ready with exactly one of each object, no Job but those asked for, and
nothing keeps being rewritten."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from datasync_operator import naming

from tests.hardening.operator_chaos import (
    QUIET_HOUR,
    all_settled,
    assert_exactly_one_of_each,
    connection_for,
    made_by,
    quiet_schedule,
)
from tests.operator.conftest import Apps
from tests.operator.support import Cluster, wait_for

pytestmark = pytest.mark.integration

FIRST_BATCH = 8
LATE_PER_KILL = 10
KILLS = 4  # at least this many kills in a row
MID_RECONCILE_KILLS = 2  # ... and at least this many landing before it had finished
MAX_KILLS = 10  # a fast, idle machine may need a few more tries to land those


def requested_by(job: Any) -> str | None:
    return (job.metadata.annotations or {}).get(naming.CONNECTION_LABEL)


def _kill_while_it_works(operator: Any, started: Any, rng: random.Random) -> None:
    # Kill it while it works: once it has written something, before it is done.
    wait_for(started, 60, "the operator to start writing", interval=0.02)
    time.sleep(rng.uniform(0.0, 0.02))
    operator.process.kill()
    operator.process.wait(timeout=30)


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

        _kill_while_it_works(operator, started_on_pending, rng)
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
        schedule = quiet_schedule(rng.randrange(60), (QUIET_HOUR + 1) % 24)
        cluster.patch(edited, {"spec": {"schedule": schedule}})
    assert kills >= MID_RECONCILE_KILLS, (
        f"only {kills} of {tries} kills came before the operator had finished"
    )
    tally["operator_kills_mid_reconcile"] += kills

    final = operator_factory(log_name="operator-final.log")
    wait_for(lambda: all_settled(cluster, names), 180, "every connection Ready", interval=0.5)
    # Nothing asked for a run and no schedule came due: a Job here was made up.
    assert [made_by(job) for job in cluster.jobs()] == []
    assert_exactly_one_of_each(cluster, names)
    # Settled means settled: nothing keeps being rewritten.
    time.sleep(2)
    before = cluster.owned_versions()
    time.sleep(3)
    assert cluster.owned_versions() == before
    assert final.process.poll() is None


SYNC_NOW_FIRST = 4
SYNC_NOW_LATE = 3
SYNC_NOW_KILLS = 5


def test_sync_now_across_sigkills_starts_exactly_one_job_per_request(
    cluster: Cluster, apps: Apps, operator_factory: Any, tally: Counter[str]
) -> None:
    """Each connection asks for one run (datasync.io/sync-now) once; the operator is
    SIGKILLed while it starts them, again and again, and more requests arrive while it is
    down. In the end every request has exactly one Job, named after it, and no other Job
    exists: a kill between creating the Job and recording it in the status must not make
    the next operator start the run a second time."""
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    triggers: dict[str, str] = {}

    def request(name: str, minute: int) -> None:
        triggers[name] = f"run-{name}-{minute}"
        annotations = {naming.SYNC_NOW: triggers[name]}
        cluster.create(connection_for(apps, name, minute, annotations=annotations))

    for number in range(SYNC_NOW_FIRST):
        request(f"now-{number}", number)
    pending = list(triggers)  # requested since the operator last ran
    rng = random.Random(7)
    landed = 0  # kills that left a Job whose request the status does not show handled yet
    for attempt in range(SYNC_NOW_KILLS):
        operator = operator_factory(log_name=f"operator-now-{attempt}.log")

        def started_a_job(pending: list[str] = pending) -> bool:
            return any(requested_by(job) in pending for job in cluster.jobs())

        _kill_while_it_works(operator, started_a_job, rng)
        handled = {
            name: (cluster.get(name).get("status") or {}).get("syncNowHandled") for name in triggers
        }
        started = {requested_by(job) for job in cluster.jobs()}
        landed += sum(
            1 for name, trigger in triggers.items() if name in started and handled[name] != trigger
        )
        pending = [f"now-late-{attempt}-{number}" for number in range(SYNC_NOW_LATE)]
        for number, name in enumerate(pending):
            request(name, 20 + number)
    tally["operator_kills_between_job_and_status"] += landed

    operator_factory(log_name="operator-now-final.log")

    def all_handled() -> bool:
        return all_settled(cluster, list(triggers)) and all(
            (cluster.get(name).get("status") or {}).get("syncNowHandled") == trigger
            for name, trigger in triggers.items()
        )

    wait_for(all_handled, 180, "every sync-now request handled", interval=0.5)
    jobs = cluster.jobs()
    runs = Counter(requested_by(job) for job in jobs)
    assert runs == dict.fromkeys(triggers, 1), [made_by(job) for job in jobs]
    expected = sorted(naming.sync_now_job_name(name, trigger) for name, trigger in triggers.items())
    assert sorted(job.metadata.name for job in jobs) == expected, [made_by(job) for job in jobs]
    for job in jobs:
        (owner,) = job.metadata.owner_references
        connection_name = requested_by(job)
        assert connection_name in triggers, made_by(job)
        cron = cluster.cron_job(naming.cronjob_name(connection_name))
        assert (owner.kind, owner.uid) == ("CronJob", cron.metadata.uid), made_by(job)
        assert job.metadata.annotations[naming.SYNC_NOW_VALUE] == triggers[connection_name]
        assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
