"""Names, labels and hashes of the objects a DataSyncConnection owns."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from datasync.api.models import API_VERSION, KIND

MANAGED_BY = "app.kubernetes.io/managed-by"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
CONNECTION_LABEL = "datasync.io/connection"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
SYNC_APP = "datasync-sync"
OPERATOR = "datasync"

SPEC_HASH = "datasync.io/spec-hash"
SYNC_NOW = "datasync.io/sync-now"
SYNC_NOW_VALUE = "datasync.io/sync-now-value"
# Kopf's own bookkeeping (progress, diff base) lives under a prefix of its own: Kopf leaves
# every annotation under its prefix out of the diff, and datasync.io/sync-now must count.
KOPF_PREFIX = "operator.datasync.io"

# A CronJob's Jobs append 11 characters to its name, and Job names become label values.
CRONJOB_NAME_LIMIT = 52
LABEL_VALUE_LIMIT = 63


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def child_name(owner: str, suffix: str, limit: int = 253) -> str:
    """`<owner>-<suffix>`, shortened with a hash of the owner's name when too long."""
    name = f"{owner}-{suffix}"
    if len(name) <= limit:
        return name
    keep = limit - len(suffix) - 10
    return f"{owner[:keep].rstrip('-.')}-{_short_hash(owner)}-{suffix}"


def service_account_name(connection: str) -> str:
    return child_name(connection, "sync")


def cronjob_name(connection: str) -> str:
    return child_name(connection, "sync", CRONJOB_NAME_LIMIT)


def config_map_name(connection: str) -> str:
    return child_name(connection, "connection")


def state_claim_name(connection: str) -> str:
    return child_name(connection, "state")


def sync_now_job_name(connection: str, value: str) -> str:
    return f"{cronjob_name(connection)}-now-{_short_hash(value, 5)}"


def label_value(text: str) -> str:
    if len(text) <= LABEL_VALUE_LIMIT:
        return text
    return f"{text[: LABEL_VALUE_LIMIT - 9].rstrip('-.')}-{_short_hash(text)}"


def labels(connection: str) -> dict[str, str]:
    value = label_value(connection)
    return {
        MANAGED_BY: OPERATOR,
        NAME_LABEL: SYNC_APP,
        INSTANCE_LABEL: value,
        CONNECTION_LABEL: value,
    }


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    metadata = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
    }


def content_hash(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
