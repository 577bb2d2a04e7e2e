"""Sync health of DataSyncConnections, read the way the seed guide's "the sync isn't working
as expected" checklist reads: pure functions from the objects the API server returns to
rows (for the table) and JSON (for scripts). No cluster access here.

Only counts, reasons, record ids and conditions are shown: status never holds values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

Json = dict[str, Any]

# How each reason reads in the checklist's words.
SKIP_LABELS = {
    "MissingIdentity": "missing email",
    "NotInList": "not in list",
    "DuplicateIdentity": "duplicate email",
    "CounterpartDeleted": "deleted in the other app",
    "Deleted": "deleted",
}


@dataclass(frozen=True)
class ConditionView:
    status: str = "Unknown"  # True, False or Unknown
    reason: str = ""
    message: str = ""

    def to_json(self) -> Json:
        return {"status": self.status, "reason": self.reason, "message": self.message}


@dataclass(frozen=True)
class SampleView:
    app: str
    record_id: str
    reason: str
    field: str | None = None


@dataclass
class ConnectionStatus:
    namespace: str
    name: str
    source: str
    destination: str
    direction: str
    schedule: str
    suspended: bool
    goal: str | None = None
    ready: ConditionView = field(default_factory=ConditionView)
    credentials: ConditionView = field(default_factory=ConditionView)
    synced: ConditionView = field(default_factory=ConditionView)
    last_run: Json | None = None  # job, startedAt, finishedAt, result, error
    last_success: str | None = None
    records: Json = field(default_factory=dict)  # toDestination/toSource counts
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_labels: dict[str, str] = field(default_factory=dict)
    failures_total: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    samples: list[SampleView] = field(default_factory=list)
    health: Json | None = None
    next_run: datetime | None = None
    api_calls: dict[str, int] = field(default_factory=dict)
    observed: bool = False  # the operator has written a status
    stale: bool = False  # the status is about an older generation of the spec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def samples_for(self, reason: str) -> list[SampleView]:
        return [sample for sample in self.samples if sample.reason == reason]

    def to_json(self) -> Json:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "goal": self.goal,
            "source": self.source,
            "destination": self.destination,
            "direction": self.direction,
            "schedule": self.schedule,
            "suspended": self.suspended,
            "ready": self.ready.to_json(),
            "credentialsValid": self.credentials.to_json(),
            "synced": self.synced.to_json(),
            "lastRun": self.last_run,
            "lastSuccessfulSyncAt": self.last_success,
            "records": self.records,
            "skipped": self.skipped,
            "failures": {
                "total": self.failures_total,
                "byReason": self.failures,
                "samples": [
                    {
                        "app": sample.app,
                        "recordId": sample.record_id,
                        "reason": sample.reason,
                        "field": sample.field,
                    }
                    for sample in self.samples
                ],
            },
            "health": self.health,
            "apiCalls": self.api_calls,
            "nextRunAt": _iso(self.next_run) if self.next_run else None,
            "observedByOperator": self.observed,
            "specChangePending": self.stale,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _counts(value: Any) -> dict[str, int]:
    return {
        str(key): int(count)
        for key, count in _dict(value).items()
        if isinstance(count, int) and not isinstance(count, bool)
    }


def _condition(conditions: list[Any], kind: str) -> ConditionView:
    for item in conditions:
        if isinstance(item, dict) and item.get("type") == kind:
            return ConditionView(
                status=str(item.get("status") or "Unknown"),
                reason=str(item.get("reason") or ""),
                message=str(item.get("message") or ""),
            )
    return ConditionView()


def next_run(schedule: str, suspended: bool, now: datetime) -> datetime | None:
    """The next scheduled run after `now` (UTC, as the CronJob controller uses by
    default), or None when suspended or the schedule is not valid cron."""
    if suspended or not schedule or not croniter.is_valid(schedule):
        return None
    following: datetime = croniter(schedule, now.astimezone(UTC)).get_next(datetime)
    return following.astimezone(UTC)


def skip_label(reason: str, filter_reasons: set[str]) -> str:
    if reason in SKIP_LABELS:
        return SKIP_LABELS[reason]
    if reason in filter_reasons or reason == "FilteredOut":
        return "filtered out"
    return reason


def connection_status(obj: Json, now: datetime | None = None) -> ConnectionStatus:
    """One DataSyncConnection (as the API returns it) in checklist terms. Tolerates partial
    or older objects: missing parts read as unknown, never as an error."""
    moment = now or datetime.now(UTC)
    meta, spec, status = (
        _dict(obj.get("metadata")),
        _dict(obj.get("spec")),
        _dict(obj.get("status")),
    )
    conditions = _list(status.get("conditions"))
    schedule = str(spec.get("schedule") or "")
    suspended = bool(spec.get("suspend"))
    filters = _list(spec.get("filters"))
    filter_reasons = {
        str(item.get("reason") or "FilteredOut") for item in filters if isinstance(item, dict)
    }
    result = ConnectionStatus(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        source=str(_dict(spec.get("source")).get("app") or "?"),
        destination=str(_dict(spec.get("destination")).get("app") or "?"),
        direction=str(spec.get("direction") or "?"),
        schedule=schedule,
        suspended=suspended,
        goal=spec.get("goal") if isinstance(spec.get("goal"), str) else None,
        ready=_condition(conditions, "Ready"),
        credentials=_condition(conditions, "CredentialsValid"),
        synced=_condition(conditions, "Synced"),
        last_success=status.get("lastSuccessfulSyncAt"),
        next_run=next_run(schedule, suspended, moment),
        observed=bool(conditions),
    )
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    result.stale = (
        isinstance(generation, int) and isinstance(observed, int) and observed < generation
    )
    last = _dict(status.get("lastSync"))
    if last:
        result.last_run = {
            key: last.get(key)
            for key in ("job", "startedAt", "finishedAt", "result", "error", "dryRun")
            if last.get(key) is not None
        }
        records = _dict(last.get("records"))
        result.records = {
            direction: _counts(records.get(direction))
            for direction in ("toDestination", "toSource")
        }
        result.skipped = _counts(last.get("skipped"))
        failures = _dict(last.get("failures"))
        result.failures = _counts(failures.get("byReason"))
        total = failures.get("total")
        result.failures_total = total if isinstance(total, int) else sum(result.failures.values())
        samples = _list(failures.get("samples"))
        result.samples = [
            SampleView(
                app=str(item.get("app") or ""),
                record_id=str(item.get("recordId") or ""),
                reason=str(item.get("reason") or ""),
                field=item.get("field") if isinstance(item.get("field"), str) else None,
            )
            for item in samples
            if isinstance(item, dict)
        ]
        result.api_calls = _counts(last.get("apiCalls"))
    health = status.get("health") or last.get("health")
    if isinstance(health, dict):
        result.health = {
            "inSync": health.get("inSync", 0),
            "excluded": _counts(health.get("excluded")),
            "failing": _counts(health.get("failing")),
        }
    result.skipped_labels = {
        reason: skip_label(reason, filter_reasons)
        for reason in {*result.skipped, *(result.health or {}).get("excluded", {})}
    }
    return result


def app_name(connection: ConnectionStatus, side: str) -> str:
    return connection.source if side == "source" else connection.destination


def moved_text(connection: ConnectionStatus) -> str:
    """`to salesforce: 760 created, 177 updated; to hubspot: ...`."""
    parts = []
    for direction, target in (
        ("toDestination", connection.destination),
        ("toSource", connection.source),
    ):
        counts = connection.records.get(direction) or {}
        if not any(counts.values()):
            continue
        moved = [f"{counts.get(kind, 0)} {kind}" for kind in ("created", "updated", "unchanged")]
        if counts.get("failed"):
            moved.append(f"{counts['failed']} failed")
        parts.append(f"to {target}: " + ", ".join(moved))
    return "; ".join(parts) or "-"


def skipped_text(connection: ConnectionStatus) -> str:
    if not connection.skipped:
        return "-"
    return ", ".join(
        f"{connection.skipped_labels.get(reason, reason)} {count} ({reason})"
        for reason, count in sorted(connection.skipped.items(), key=lambda item: -item[1])
    )


def sample_ids(connection: ConnectionStatus, reason: str, max_ids: int = 5) -> str:
    """`hubspot 1077 (Email), salesforce 003...`: the sample records of one reason."""
    samples = connection.samples_for(reason)
    ids = ", ".join(
        f"{app_name(connection, sample.app)} {sample.record_id}"
        + (f" ({sample.field})" if sample.field else "")
        for sample in samples[:max_ids]
    )
    more = f" +{len(samples) - max_ids} more samples" if len(samples) > max_ids else ""
    return ids + more


def failures_text(connection: ConnectionStatus, max_ids: int = 5) -> list[str]:
    lines = []
    for reason, count in sorted(connection.failures.items(), key=lambda item: -item[1]):
        ids = sample_ids(connection, reason, max_ids)
        lines.append(f"{reason} {count}" + (f": {ids}" if ids else ""))
    return lines


def skip_samples_text(connection: ConnectionStatus, max_ids: int = 5) -> list[str]:
    """Sample ids of skips that point at data to fix (e.g. contacts without email)."""
    lines = []
    for reason in sorted(connection.skipped):
        ids = sample_ids(connection, reason, max_ids)
        if ids:
            lines.append(f"{reason} e.g. {ids}")
    return lines


def ago(moment_text: str | None, now: datetime) -> str:
    """`2026-01-01T10:00:00Z (5m ago)`; the text as given when it does not parse."""
    if not moment_text:
        return "never"
    try:
        moment = datetime.fromisoformat(str(moment_text).replace("Z", "+00:00"))
    except ValueError:
        return str(moment_text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{_iso(moment)} ({human_delta((now - moment).total_seconds())} ago)"


def relative(moment_text: str | None, now: datetime) -> str:
    """`5m ago` (for tables; `ago` gives the full time too)."""
    full = ago(moment_text, now)
    return full[full.index("(") + 1 : -1] if full.endswith(" ago)") else full


def until(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{_iso(moment)} (in {human_delta((moment - now).total_seconds())})"


def human_delta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def sort_key(connection: ConnectionStatus) -> tuple[str, str]:
    return connection.namespace, connection.name
