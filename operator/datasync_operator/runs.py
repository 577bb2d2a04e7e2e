"""Turn a finished sync Job into a SyncSummary, also when the pod never reported one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from datasync.api import summary_codec
from datasync.api.models import SyncResult, SyncSummary

Json = dict[str, Any]


@dataclass(frozen=True)
class Finished:
    succeeded: bool
    reason: str  # Job condition reason when failed (BackoffLimitExceeded, DeadlineExceeded)
    message: str
    at: datetime | None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def finished(job: Json) -> Finished | None:
    """Whether the Job has finished, and how; None while it runs."""
    for item in (job.get("status") or {}).get("conditions") or []:
        if item.get("status") != "True":
            continue
        kind = item.get("type")
        if kind in ("Complete", "Failed"):
            at = _parse_time(item.get("lastTransitionTime")) or _parse_time(
                (job.get("status") or {}).get("completionTime")
            )
            return Finished(
                succeeded=kind == "Complete",
                reason=str(item.get("reason") or kind),
                message=str(item.get("message") or ""),
                at=at,
            )
    return None


def _terminated(pod: Json) -> Json | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _latest_pod(pods: list[Json]) -> tuple[Json, Json] | None:
    candidates = []
    for pod in pods:
        terminated = _terminated(pod)
        if terminated is not None:
            candidates.append((terminated.get("finishedAt") or "", pod, terminated))
    if not candidates:
        return None
    candidates.sort(key=lambda item: item[0])
    _, pod, terminated = candidates[-1]
    return pod, terminated


def _failure_reason(outcome: Finished, pods: list[Json]) -> tuple[str, str]:
    latest = _latest_pod(pods)
    if latest is not None:
        pod, terminated = latest
        pod_reason = (pod.get("status") or {}).get("reason")
        container_reason = terminated.get("reason")
        if container_reason == "OOMKilled":
            return "OOMKilled", "the sync container ran out of memory (OOMKilled)"
        if pod_reason == "DeadlineExceeded" or outcome.reason == "DeadlineExceeded":
            return "DeadlineExceeded", "the run took longer than spec.job.activeDeadlineSeconds"
        code = terminated.get("exitCode")
        if code not in (None, 0):
            return (
                "Crashed",
                f"the sync container exited with code {code} without reporting a summary",
            )
    if outcome.reason == "DeadlineExceeded":
        return "DeadlineExceeded", "the run took longer than spec.job.activeDeadlineSeconds"
    return outcome.reason or "JobFailed", outcome.message or "the sync Job failed"


def summary_of(job: Json, pods: list[Json], outcome: Finished) -> tuple[SyncSummary, bool]:
    """The run's summary from its pod's termination message (and True), or a failed
    summary that says why there is none: crash, OOM, deadline (and False)."""
    name = job["metadata"]["name"]
    latest = _latest_pod(pods)
    if latest is not None:
        decoded = summary_codec.decode(latest[1].get("message") or "")
        if decoded is not None:
            if decoded.job is None:
                decoded.job = name
            return decoded, True
    status = job.get("status") or {}
    started = _parse_time(status.get("startTime")) or _parse_time(
        job["metadata"].get("creationTimestamp")
    )
    ended = outcome.at or datetime.now(UTC)
    if outcome.succeeded:
        reason, message = "NoSummary", "the sync pod finished without reporting a summary"
    else:
        reason, message = _failure_reason(outcome, pods)
    summary = SyncSummary(
        job=name,
        startedAt=started or ended,
        finishedAt=ended,
        result=SyncResult.FAILED,
        error=f"{reason}: {message}"[:1024],
    )
    return summary, False


def failure_reason(summary: SyncSummary) -> str:
    """A low-cardinality reason for a failed run (the error's leading word)."""
    if summary.error:
        head = summary.error.split(":", 1)[0].strip()
        if head.isidentifier() and head[:1].isupper() and len(head) <= 64:
            return head
    return "SyncFailed"
