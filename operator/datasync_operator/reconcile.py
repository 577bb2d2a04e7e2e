"""The reconcile loop of one DataSyncConnection, and the recording of its finished runs.

Everything here is idempotent: running it twice in a row writes nothing the second time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from datasync.api.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    DataSyncConnectionSpec,
    LocatedError,
    SyncResult,
    SyncSummary,
)

from . import conditions, credentials, metrics, naming, resources, runs
from .apply import NotOwnedError, Outcome, RejectedChangeError, ensure
from .config import current
from .kube import Json, Kube, KubeError, client, core_path, group_path

log = logging.getLogger(__name__)
_INSTANCE = socket.gethostname()


@dataclass
class Memory:
    """What the operator remembers about a connection between events (not persisted)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    check_fingerprint: str | None = None
    checked_at: float = 0.0
    recorded_jobs: set[str] = field(default_factory=set)
    # Secret name -> hash of the data the last reconcile read ("" when it was missing).
    secrets: dict[str, str] = field(default_factory=dict)


_memories: dict[tuple[str, str], Memory] = {}


def memory(namespace: str, name: str) -> Memory:
    key = (namespace, name)
    if key not in _memories:
        _memories[key] = Memory()
    return _memories[key]


def forget(namespace: str, name: str) -> None:
    _memories.pop((namespace, name), None)
    metrics.forget(namespace, name)


def known_connections() -> list[tuple[str, str, Memory]]:
    return [(ns, name, mem) for (ns, name), mem in _memories.items()]


def plain(value: Any) -> Any:
    """A deep, mutable copy of Kopf's read-only body views."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def connection_path(namespace: str, name: str) -> str:
    return group_path(f"{GROUP}/{VERSION}", namespace, PLURAL, name)


def reference(namespace: str, name: str, uid: str | None) -> Json:
    metadata: Json = {"name": name, "namespace": namespace}
    if uid:
        metadata["uid"] = uid
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata}


async def _event(body: Json, type_: str, reason: str, message: str) -> None:
    """An Event on the connection for `kubectl describe`. Posted directly (not through
    Kopf) so that background tasks can post too; a failed post never fails a reconcile."""
    meta = body["metadata"]
    now = conditions.now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": reference(meta["namespace"], meta["name"], meta.get("uid"))["metadata"]
        | {"apiVersion": API_VERSION, "kind": KIND},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": "datasync-operator"},
        "reportingComponent": "datasync.io/operator",
        "reportingInstance": _INSTANCE,
    }
    try:
        await client().create(core_path(meta["namespace"], "events"), event)
    except KubeError as error:
        if error.namespace_terminating:
            return
        log.warning(
            "could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], error
        )
    except (OSError, TimeoutError) as error:
        log.warning(
            "could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], error
        )


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in ("spec", *item["loc"]))
        context = item.get("ctx") or {}
        inner = context.get("error")
        if isinstance(inner, LocatedError):
            location = ".".join(str(part) for part in ("spec", *inner.loc))
            parts.append(f"{location}: {inner}")
        else:
            parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def _checked_recently(status: Json, generation: int | None, interval: float) -> float | None:
    """When the stored CredentialsValid is current for this generation: its check time."""
    found = conditions.find(status.get("conditions") or [], conditions.CREDENTIALS_VALID)
    checked = status.get("credentialsCheckedAt")
    if found is None or not checked or found.get("observedGeneration") != generation:
        return None
    at = datetime.fromisoformat(str(checked).replace("Z", "+00:00")).timestamp()
    return at if time.time() - at < interval else None


async def _patch_status(kube: Kube, body: Json, changes: Json) -> None:
    meta = body["metadata"]
    status = body.get("status") or {}
    delta = {key: value for key, value in changes.items() if status.get(key) != value}
    if not delta:
        return
    await kube.merge_patch(
        connection_path(meta["namespace"], meta["name"]) + "/status", {"status": delta}
    )


async def reconcile(body: Json, *, force_check: bool = False) -> None:
    """Bring the owned objects and the status of one connection in line with its spec."""
    meta = body["metadata"]
    await _reconcile(meta["namespace"], meta["name"], force_check)


async def reconcile_for_secret(namespace: str, name: str, secret: str, digest: str) -> bool:
    """Reconcile a connection after a watch event of a Secret it references, unless its
    last reconcile already read that data. A connection this process has not reconciled
    yet is left to its own create/resume handler, which reads the Secret itself. Returns
    whether it reconciled."""
    if (namespace, name) not in _memories:
        return False
    return await _reconcile(namespace, name, False, (secret, digest))


async def _reconcile(
    namespace: str, name: str, force_check: bool, secret_event: tuple[str, str] | None = None
) -> bool:
    remembered = memory(namespace, name)
    async with remembered.lock:
        if secret_event is not None:
            secret, digest = secret_event
            if remembered.secrets.get(secret, digest) == digest:
                return False  # seen already, or not read yet (the handler will read it)
            log.info("Secret %s/%s changed: re-checking connection %s", namespace, secret, name)
        fresh = await client().get(connection_path(namespace, name))
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return False
        try:
            await _reconcile_locked(client(), fresh, remembered, force_check)
        except KubeError as error:
            if error.namespace_terminating:
                log.debug("%s/%s: namespace is being deleted, nothing to do", namespace, name)
                return True
            metrics.reconcile_errors.labels(namespace, name).inc()
            raise
        except Exception:
            metrics.reconcile_errors.labels(namespace, name).inc()
            raise
        return True


async def _reconcile_locked(kube: Kube, body: Json, remembered: Memory, force: bool) -> None:
    config = current()
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = meta.get("generation")
    status: Json = body.get("status") or {}
    existing_conditions: list[Json] = list(status.get("conditions") or [])
    updates: list[Json] = []
    changes: Json = {"observedGeneration": generation}

    pending: list[tuple[str, str, str]] = []

    def finish(ready: bool, reason: str, message: str) -> list[Json]:
        updates.insert(
            0, conditions.condition(conditions.READY, ready, reason, message, generation)
        )
        if conditions.find(existing_conditions, conditions.SYNCED) is None:
            updates.append(
                conditions.condition(
                    conditions.SYNCED, None, "NoRunYet", "no sync run has finished yet", generation
                )
            )
        merged = conditions.merge(existing_conditions, updates)
        metrics.connection_ready.labels(namespace, name).set(1 if ready else 0)
        metrics.record_schedule(namespace, name, body.get("spec") or {})
        previous = conditions.find(existing_conditions, conditions.READY)
        if not ready and (
            previous is None
            or previous.get("reason") != reason
            or previous.get("status") != "False"
        ):
            pending.append(("Warning", reason, message))
        return merged

    try:
        spec = DataSyncConnectionSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        message = describe_validation_error(error)
        changes["conditions"] = finish(False, "InvalidSpec", message)
        await _patch_status(kube, body, changes)
        await _post(body, pending)
        return
    problems = credentials.spec_problems(spec)
    if problems:
        changes["conditions"] = finish(False, problems[0].reason, problems[0].message)
        await _patch_status(kube, body, changes)
        await _post(body, pending)
        return

    resolution = await credentials.resolve(kube, namespace, spec)
    remembered.secrets = dict(resolution.seen)

    # Credentials: check on spec or Secret change, when forced (periodic), or never checked.
    fingerprint = naming.content_hash(
        [
            spec.source.model_dump(mode="json"),
            spec.destination.model_dump(mode="json"),
            resolution.fingerprint(),
            [p.message for p in resolution.problems],
        ]
    )
    if remembered.check_fingerprint is None and not force and not resolution.problems:
        recent = _checked_recently(status, generation, config.credentials_check_interval)
        if recent is not None:
            remembered.check_fingerprint, remembered.checked_at = fingerprint, recent
    previous_check = conditions.find(existing_conditions, conditions.CREDENTIALS_VALID)
    problem: credentials.Problem | None = None
    if resolution.problems:
        # Nothing to log in with: no app is called until the Secrets are fixed.
        problem = resolution.problems[0]
        remembered.check_fingerprint, remembered.checked_at = None, 0.0
    elif force or remembered.check_fingerprint != fingerprint:
        problem = await credentials.check(spec, resolution, config.credentials_check_timeout)
        remembered.check_fingerprint, remembered.checked_at = fingerprint, time.time()
        changes["credentialsCheckedAt"] = conditions.now()
        metrics.credentials_checks.labels(
            namespace, name, problem.reason if problem else "Valid"
        ).inc()
    elif previous_check is not None:
        # Unchanged credentials: the stored result still holds for this generation.
        carried = {k: v for k, v in previous_check.items() if k != "lastTransitionTime"}
        carried["observedGeneration"] = generation
        updates.append(carried)
        previous_check = None
    if problem is not None or "credentialsCheckedAt" in changes:
        metrics.credentials_valid.labels(namespace, name).set(0 if problem else 1)
        if problem is None:
            updates.append(
                conditions.condition(
                    conditions.CREDENTIALS_VALID,
                    True,
                    "CredentialsAccepted",
                    "both apps accepted the credentials",
                    generation,
                )
            )
        else:
            updates.append(
                conditions.condition(
                    conditions.CREDENTIALS_VALID, False, problem.reason, problem.message, generation
                )
            )
            before = conditions.find(existing_conditions, conditions.CREDENTIALS_VALID)
            changed = (
                before is None
                or before.get("reason") != problem.reason
                or (before.get("status") != "False")
            )
            if changed and not resolution.problems:  # missing Secrets are reported by Ready
                await _event(body, "Warning", "CredentialsRejected", problem.message)

    # Owned objects: identity, connection document, state store, then the CronJob.
    # A connection never reconciled before (no status yet) has none: create them straight
    # away, reading one only if the create answers AlreadyExists. Otherwise read each once
    # and write only when its spec-hash differs, so a resync writes nothing.
    new = not status
    wanted = [resources.service_account(body), resources.connection_config_map(body)]
    claim = resources.state_claim(body, spec)
    if claim is not None:
        wanted.append(claim)
    cron: Json | None = None
    written: dict[Outcome, list[str]] = {}
    try:
        for manifest in wanted:
            try:
                await _ensure_and_note(kube, manifest, new, written)
            except RejectedChangeError as error:
                pending.append(("Warning", "StateClaimUnchanged", str(error)))
        if resolution.ok:
            mounts = resources.secret_mounts(
                {d: (secret, keys) for d, (secret, keys) in resolution.mounts.items()}
            )
            cron = await _ensure_and_note(
                kube, resources.cron_job(body, spec, mounts, config), new, written
            )
        elif not new:
            cron = await kube.get(
                f"/apis/batch/v1/namespaces/{namespace}/cronjobs/{naming.cronjob_name(name)}"
            )
    except NotOwnedError as error:
        _note_written(body, written, pending)
        changes["conditions"] = finish(False, "ObjectConflict", str(error))
        await _patch_status(kube, body, changes)
        await _post(body, pending)
        return
    _note_written(body, written, pending)

    if cron is not None:
        changes["cronJob"] = cron["metadata"]["name"]
    if not resolution.ok:
        problem = resolution.problems[0]
        changes["conditions"] = finish(False, problem.reason, problem.message)
    else:
        note = " (suspended)" if spec.suspend else ""
        changes["conditions"] = finish(
            True, "Ready", f"CronJob {naming.cronjob_name(name)} runs on {spec.schedule!r}{note}"
        )

    trigger = (meta.get("annotations") or {}).get(naming.SYNC_NOW)
    if trigger and trigger != status.get("syncNowHandled") and resolution.ok and cron:
        await _sync_now(kube, body, cron, trigger)
        changes["syncNowHandled"] = trigger[:253]
    await _patch_status(kube, body, changes)
    await _post(body, pending)


async def _post(body: Json, pending: list[tuple[str, str, str]]) -> None:
    for type_, reason, message in pending:
        await _event(body, type_, reason, message)
    pending.clear()


async def _ensure_and_note(
    kube: Kube, manifest: Json, new: bool, written: dict[Outcome, list[str]]
) -> Json:
    outcome, stored = await ensure(kube, manifest, create_first=new)
    if outcome != Outcome.UNCHANGED:
        written.setdefault(outcome, []).append(f"{manifest['kind']} {manifest['metadata']['name']}")
    return stored


def _note_written(
    body: Json, written: dict[Outcome, list[str]], pending: list[tuple[str, str, str]]
) -> None:
    """One log line and one Event per outcome (not per object): fewer API writes."""
    meta = body["metadata"]
    for outcome, objects in written.items():
        text = f"{', '.join(objects)} {outcome.lower()}"
        log.info("%s for %s/%s", text, meta["namespace"], meta["name"])
        pending.insert(0, ("Normal", outcome.value, text))
    written.clear()


async def _sync_now(kube: Kube, body: Json, cron: Json, trigger: str) -> None:
    name = naming.sync_now_job_name(body["metadata"]["name"], trigger)
    job = resources.job_from_cron_job(cron, name, trigger)
    path = f"/apis/batch/v1/namespaces/{body['metadata']['namespace']}/jobs"
    try:
        await kube.create(path, job)
    except KubeError as error:
        if error.status != 409:  # already started for this value (e.g. before a restart)
            raise
        return
    await _event(
        body, "Normal", "SyncStarted", f"Job {name} started on request (datasync.io/sync-now)"
    )


# ------------------------------------------------------------------- finished runs


def _counts_text(summary: SyncSummary) -> str:
    parts = []
    for direction in ("toDestination", "toSource"):
        counts = getattr(summary.records, direction)
        parts.append(
            f"{direction}: {counts.created} created, {counts.updated} updated, "
            f"{counts.unchanged} unchanged, {counts.skipped} skipped, {counts.failed} failed"
        )
    return "; ".join(parts)


def _newer(summary: SyncSummary, status: Json) -> bool:
    last = status.get("lastSync") or {}
    if last.get("job") and last.get("job") == summary.job:
        return False
    finished_at = last.get("finishedAt")
    if not finished_at:
        return True
    previous = datetime.fromisoformat(str(finished_at).replace("Z", "+00:00"))
    if previous.tzinfo is None:
        previous = previous.replace(tzinfo=UTC)
    current_end = summary.finishedAt
    if current_end.tzinfo is None:
        current_end = current_end.replace(tzinfo=UTC)
    return current_end >= previous


async def record_job(job: Json) -> None:
    """Record a finished sync Job in its connection's status, events and metrics."""
    outcome = runs.finished(job)
    if outcome is None:
        return
    meta = job["metadata"]
    namespace = meta["namespace"]
    connection = (meta.get("annotations") or {}).get(naming.CONNECTION_LABEL) or (
        meta.get("labels") or {}
    ).get(naming.CONNECTION_LABEL)
    if not connection:
        return
    remembered = memory(namespace, connection)
    if meta["name"] in remembered.recorded_jobs:
        return
    kube = client()
    async with remembered.lock:
        body = await kube.get(connection_path(namespace, connection))
        if body is None:
            return
        pods = await kube.list(
            core_path(namespace, "pods"), label_selector=f"{naming.JOB_NAME_LABEL}={meta['name']}"
        )
        summary, reported = runs.summary_of(job, pods, outcome)
        status: Json = body.get("status") or {}
        remembered.recorded_jobs.add(meta["name"])
        if len(remembered.recorded_jobs) > 100:  # Jobs expire; forget the oldest names
            remembered.recorded_jobs = set(sorted(remembered.recorded_jobs)[-50:])
        if not _newer(summary, status):
            return
        await _record(kube, body, summary, reported)


async def _record(kube: Kube, body: Json, summary: SyncSummary, reported: bool) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: Json = body.get("status") or {}
    generation = meta.get("generation")
    changes: Json = {"lastSync": summary.model_dump(mode="json", exclude_none=True)}
    succeeded = summary.result != SyncResult.FAILED
    finished_text = summary.model_dump(mode="json")["finishedAt"]
    if succeeded:
        changes["lastSuccessfulSyncAt"] = finished_text
    if reported:
        changes["health"] = summary.health.model_dump(mode="json")
    failure = runs.failure_reason(summary) if not succeeded else None
    if summary.result == SyncResult.SUCCEEDED:
        synced = conditions.condition(
            conditions.SYNCED, True, "Succeeded", f"last run: {_counts_text(summary)}", generation
        )
    elif summary.result == SyncResult.PARTIALLY_SUCCEEDED:
        synced = conditions.condition(
            conditions.SYNCED,
            True,
            "PartiallySucceeded",
            f"{summary.failures.total} records failed (see status.lastSync.failures); "
            f"{_counts_text(summary)}",
            generation,
        )
    else:
        synced = conditions.condition(
            conditions.SYNCED,
            False,
            failure or "SyncFailed",
            summary.error or "the sync run failed",
            generation,
        )
    changes["conditions"] = conditions.merge(status.get("conditions") or [], [synced])
    await _patch_status(kube, body, changes)
    if succeeded:
        await _event(
            body,
            "Normal",
            "SyncFinished",
            f"Job {summary.job}: {summary.result}; {_counts_text(summary)}",
        )
    else:
        await _event(
            body, "Warning", "SyncFailed", f"Job {summary.job}: {summary.error or 'failed'}"
        )
    success_at = summary.finishedAt.timestamp() if succeeded else None
    metrics.record_run(summary, namespace, name, failure)
    metrics.record_state(summary, namespace, name, success_at)


def restore_metrics(body: Json) -> None:
    """Gauges of the last run from the stored status, after a restart."""
    meta = body["metadata"]
    status: Json = body.get("status") or {}
    last = status.get("lastSync")
    if not last:
        return
    try:
        summary = SyncSummary.model_validate(last)
    except ValidationError:
        return
    success = status.get("lastSuccessfulSyncAt")
    success_at = (
        datetime.fromisoformat(str(success).replace("Z", "+00:00")).timestamp() if success else None
    )
    metrics.record_state(summary, meta["namespace"], meta["name"], success_at)
