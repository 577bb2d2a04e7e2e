"""Kopf handlers: what the operator reacts to. `register()` adds them to a registry.

- DataSyncConnection create/update/resume: reconcile (handlers return None so Kopf never
  writes into the explicitly declared status; its bookkeeping stays in annotations).
- Secrets: re-check only the connections whose referenced Secret's data changed.
- Jobs with the sync labels (filtered server-side too): record finished runs.
  `on.event` handlers make Kopf write nothing onto the Jobs or Secrets.
- No timers or daemons: they would need a finalizer, which could block deletion while the
  operator is down; the periodic credentials check is a background task instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import kopf

from datasync.api.models import GROUP, PLURAL, VERSION

from . import credentials, naming, reconcile
from .config import current
from .kube import Json, client

log = logging.getLogger(__name__)

_background: list[asyncio.Task[None]] = []


def _referenced_secrets(spec: Any) -> list[str]:
    names: list[str] = []
    for side in ("source", "destination"):
        endpoint = spec.get(side) or {}
        ref = (endpoint.get("auth") or {}).get("secretRef") or {}
        if ref.get("name"):
            names.append(str(ref["name"]))
        bundle = ((endpoint.get("tls") or {}).get("caBundle") or {}).get("secretRef") or {}
        if bundle.get("name"):
            names.append(str(bundle["name"]))
    state_ref = (spec.get("state") or {}).get("secretRef") or {}
    if state_ref.get("name"):
        names.append(str(state_ref["name"]))
    return names


async def on_connection(body: kopf.Body, **_: Any) -> None:
    await reconcile.reconcile(reconcile.plain(body))


async def on_resume(body: kopf.Body, **_: Any) -> None:
    plain: Json = reconcile.plain(body)
    reconcile.restore_metrics(plain)
    await reconcile.reconcile(plain)


def secret_index(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, str]:
    return {(namespace, secret): name for secret in _referenced_secrets(spec)}


async def on_secret(
    event: kopf.RawEvent, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    if not namespace:
        return
    index: kopf.Index[Any, str] = kwargs["secret_index"]
    connections = sorted(set(index.get((namespace, name), [])))
    if not connections:  # most Secrets in a cluster: not ours
        return
    # Each connection remembers the hash of the data its last reconcile read: a Secret
    # created just before its connection, a metadata-only change or a re-listing after a
    # watch restart reads nothing and writes nothing.
    deleted = event.get("type") == "DELETED"
    digest = "" if deleted else credentials.secret_data_hash(body.get("data"))
    for connection in connections:
        await reconcile.reconcile_for_secret(namespace, connection, name, digest)


async def on_connection_event(
    event: kopf.RawEvent, namespace: str | None, name: str, **_: Any
) -> None:
    if event.get("type") == "DELETED" and namespace:
        reconcile.forget(namespace, name)


async def on_job(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    await reconcile.record_job(reconcile.plain(body))


async def _periodic_credentials_check() -> None:
    interval = current().credentials_check_interval
    tick = max(1.0, min(interval / 4, 60.0))
    while True:
        await asyncio.sleep(tick)
        for namespace, name, remembered in reconcile.known_connections():
            if time.time() - remembered.checked_at < interval or remembered.checked_at == 0:
                continue
            try:
                await reconcile.reconcile(
                    reconcile.reference(namespace, name, None), force_check=True
                )
            except Exception as error:  # keep checking the others
                log.warning("periodic check of %s/%s failed: %s", namespace, name, error)


async def on_startup(**_: Any) -> None:
    _background.append(asyncio.create_task(_periodic_credentials_check()))


async def on_cleanup(**_: Any) -> None:
    for task in _background:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _background.clear()
    await client().close()


def login(**_: Any) -> kopf.ConnectionInfo:
    creds = client().credentials
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_path,
        insecure=creds.insecure,
        scheme="Bearer" if creds.bearer() else None,
        token=creds.bearer(),
        certificate_path=creds.certificate_path,
        private_key_path=creds.private_key_path,
    )


def register(registry: kopf.OperatorRegistry) -> None:
    connections = (GROUP, VERSION, PLURAL)
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    # A failed reconcile (API hiccup, conflict) is retried soon, not after Kopf's 60 s.
    kopf.on.create(*connections, id="create", registry=registry, backoff=5)(on_connection)
    kopf.on.update(*connections, id="update", registry=registry, backoff=5)(on_connection)
    kopf.on.resume(*connections, id="resume", registry=registry, backoff=5)(on_resume)
    kopf.on.event(*connections, registry=registry, id="forget")(on_connection_event)
    kopf.index(*connections, registry=registry, id="secret_index")(secret_index)
    kopf.on.event("", "v1", "secrets", registry=registry, id="secrets")(on_secret)
    kopf.on.event(
        "batch",
        "v1",
        "jobs",
        registry=registry,
        id="jobs",
        labels={naming.MANAGED_BY: naming.OPERATOR, naming.NAME_LABEL: naming.SYNC_APP},
    )(on_job)


JOB_SELECTOR = f"{naming.MANAGED_BY}={naming.OPERATOR},{naming.NAME_LABEL}={naming.SYNC_APP}"


def settings(namespaces: tuple[str, ...]) -> kopf.OperatorSettings:
    configured = kopf.OperatorSettings()
    configured.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=naming.KOPF_PREFIX
    )
    configured.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.KOPF_PREFIX, key="last-handled-configuration"
    )
    configured.posting.level = logging.WARNING
    configured.watching.server_timeout = 300
    configured.watching.client_timeout = 330
    configured.watching.connect_timeout = 30
    configured.watching.label_selectors["batch", "jobs"] = JOB_SELECTOR
    # After its own patch Kopf waits this long for the patched version to come back through
    # the watch before it judges the object again. With the default 5 s a watch lagging
    # behind a busy API server (hundreds of connections applied at once) hands Kopf the
    # connection as it was before its diff-base annotation, and Kopf runs the create
    # handler a second time. New events wake the wait early, so a long one costs nothing.
    configured.persistence.consistency_timeout = 120
    # The CRD is installed with the chart before the operator starts: no CRD watching,
    # so no cluster-wide read of CustomResourceDefinitions is needed.
    configured.scanning.disabled = True
    configured.peering.standalone = True
    configured.execution.max_workers = 8
    # SIGTERM lets in-flight handlers finish (a credentials check takes up to 20 s) within
    # the pod's 30 s termination grace period.
    configured.queueing.exit_timeout = 25
    configured.networking.request_timeout = 60
    return configured
