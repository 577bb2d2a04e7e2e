"""Prometheus metrics on /metrics. Labels stay low-cardinality: namespace, name, direction,
outcome, result, reason; never a record id, an email or a value. Documented in
docs/operator.md."""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

from croniter import croniter
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from datasync.api.models import SyncResult, SyncSummary

REGISTRY = CollectorRegistry(auto_describe=True)
_KEY = ["namespace", "name"]

connection_ready = Gauge(
    "datasync_connection_ready",
    "1 when the connection is Ready (spec valid, Secrets found, CronJob in place), else 0.",
    _KEY,
    registry=REGISTRY,
)
credentials_valid = Gauge(
    "datasync_connection_credentials_valid",
    "1 when both apps accepted the credentials at the last check, else 0.",
    _KEY,
    registry=REGISTRY,
)
credentials_checks = Counter(
    "datasync_credentials_checks_total",
    "Credentials checks, by outcome (Valid or the failure reason).",
    [*_KEY, "outcome"],
    registry=REGISTRY,
)
sync_runs = Counter(
    "datasync_sync_runs_total",
    "Finished sync runs, by result (Succeeded, PartiallySucceeded, Failed).",
    [*_KEY, "result"],
    registry=REGISTRY,
)
sync_records = Counter(
    "datasync_sync_records_total",
    "Records handled by finished runs, by direction and outcome.",
    [*_KEY, "direction", "outcome"],
    registry=REGISTRY,
)
sync_record_failures = Counter(
    "datasync_sync_record_failures_total",
    "Records that failed to sync in finished runs, by reason (e.g. InvalidEmail).",
    [*_KEY, "reason"],
    registry=REGISTRY,
)
sync_run_failures = Counter(
    "datasync_sync_run_failures_total",
    "Runs that failed as a whole, by reason (e.g. AuthenticationFailed, OOMKilled).",
    [*_KEY, "reason"],
    registry=REGISTRY,
)
last_duration = Gauge(
    "datasync_sync_last_duration_seconds",
    "Duration of the last finished run.",
    _KEY,
    registry=REGISTRY,
)
last_run = Gauge(
    "datasync_sync_last_run_timestamp_seconds",
    "Unix time the last run finished.",
    _KEY,
    registry=REGISTRY,
)
last_success = Gauge(
    "datasync_sync_last_success_timestamp_seconds",
    "Unix time the last successful (or partially successful) run finished.",
    _KEY,
    registry=REGISTRY,
)
records_in_sync = Gauge(
    "datasync_records_in_sync",
    "Records matched and in step after the last run (status.health.inSync).",
    _KEY,
    registry=REGISTRY,
)
records_failing = Gauge(
    "datasync_records_failing",
    "Records failing to sync after the last run, by reason (status.health.failing).",
    [*_KEY, "reason"],
    registry=REGISTRY,
)
records_excluded = Gauge(
    "datasync_records_excluded",
    "Records kept out of the sync after the last run, by reason (status.health.excluded: "
    "MissingIdentity, NotInList, OptedOut ...).",
    [*_KEY, "reason"],
    registry=REGISTRY,
)
schedule_interval = Gauge(
    "datasync_schedule_interval_seconds",
    "Longest gap between the next scheduled runs (from spec.schedule); absent while the "
    "connection is suspended. The stale-sync alert compares the last success with it.",
    _KEY,
    registry=REGISTRY,
)
reconcile_errors = Counter(
    "datasync_reconcile_errors_total",
    "Reconciliations that raised an error (retried by the operator).",
    _KEY,
    registry=REGISTRY,
)

_PER_CONNECTION = [
    connection_ready,
    credentials_valid,
    credentials_checks,
    sync_runs,
    sync_records,
    sync_record_failures,
    sync_run_failures,
    last_duration,
    last_run,
    last_success,
    records_in_sync,
    records_failing,
    records_excluded,
    schedule_interval,
    reconcile_errors,
]


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped in-cluster
    start_http_server(port, addr=address, registry=REGISTRY)


def record_state(summary: SyncSummary, namespace: str, name: str, success_at: float | None) -> None:
    """Gauges that describe the last run (also restored from status on restart)."""
    last_duration.labels(namespace, name).set(
        max(0.0, (summary.finishedAt - summary.startedAt).total_seconds())
    )
    last_run.labels(namespace, name).set(summary.finishedAt.timestamp())
    if success_at is not None:
        last_success.labels(namespace, name).set(success_at)
    records_in_sync.labels(namespace, name).set(summary.health.inSync)
    _set_by_reason(records_failing, namespace, name, summary.health.failing)
    _set_by_reason(records_excluded, namespace, name, summary.health.excluded)


def _set_by_reason(gauge: Gauge, namespace: str, name: str, counts: dict[str, int]) -> None:
    """Set this run's counts, and zero reasons that no longer occur."""
    for labels in _series_labels(gauge):
        if labels[:2] == (namespace, name) and labels[2] not in counts:
            gauge.labels(*labels).set(0)
    for reason, count in counts.items():
        gauge.labels(namespace, name, reason).set(count)


def record_schedule(namespace: str, name: str, spec: dict[str, Any]) -> None:
    """The schedule's longest gap over its next runs, or no series while suspended."""
    schedule = spec.get("schedule")
    if spec.get("suspend") or not isinstance(schedule, str) or not croniter.is_valid(schedule):
        with contextlib.suppress(KeyError):
            schedule_interval.remove(namespace, name)
        return
    runs = croniter(schedule, time.time())
    times = [runs.get_next(float) for _ in range(9)]
    longest = max(later - earlier for earlier, later in itertools.pairwise(times))
    schedule_interval.labels(namespace, name).set(longest)


def record_run(summary: SyncSummary, namespace: str, name: str, run_failure: str | None) -> None:
    """Counters for one newly finished run."""
    sync_runs.labels(namespace, name, str(summary.result)).inc()
    for direction in ("toDestination", "toSource"):
        counts = getattr(summary.records, direction)
        for outcome in ("read", "created", "updated", "unchanged", "skipped", "failed"):
            value = getattr(counts, outcome)
            if value:
                sync_records.labels(namespace, name, direction, outcome).inc(value)
    for reason, count in summary.failures.byReason.items():
        sync_record_failures.labels(namespace, name, reason).inc(count)
    if summary.result == SyncResult.FAILED and run_failure:
        sync_run_failures.labels(namespace, name, run_failure).inc()


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted connection."""
    for metric in _PER_CONNECTION:
        for labels in list(_series_labels(metric)):
            if labels[:2] == (namespace, name):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)


def _series_labels(metric: object) -> list[tuple[str, ...]]:
    # prometheus-client keeps children keyed by their label values.
    children = getattr(metric, "_metrics", {})
    return list(children)
