"""The desired state of every object a DataSyncConnection owns, as plain manifests.

Pure functions of the connection and the operator's configuration, so that the same input
always yields the same manifest and the same `datasync.io/spec-hash`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from datasync.api.models import API_VERSION, KIND, DataSyncConnectionSpec, StateStoreType

from . import naming
from .config import OperatorConfig

Json = dict[str, Any]

CONNECTION_DIR = "/etc/datasync/connection"
SECRETS_DIR = "/etc/datasync/secrets"
STATE_DIR = "/var/lib/datasync"
TERMINATION_LOG = "/dev/termination-log"
NON_ROOT_ID = 65532


@dataclass(frozen=True)
class SecretMount:
    """A Secret projected under SECRETS_DIR/<directory>/<key>."""

    directory: str  # source, destination or state
    secret: str
    keys: tuple[str, ...]


def _metadata(body: Json, name: str) -> Json:
    connection = body["metadata"]["name"]
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": naming.labels(connection),
        "ownerReferences": [naming.owner_reference(body)],
    }


def with_hash(manifest: Json) -> Json:
    """The manifest with its own content hash as an annotation."""
    stamped = copy.deepcopy(manifest)
    digest = naming.content_hash(manifest)
    stamped["metadata"].setdefault("annotations", {})[naming.SPEC_HASH] = digest
    return stamped


def service_account(body: Json) -> Json:
    name = naming.service_account_name(body["metadata"]["name"])
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(body, name),
            "automountServiceAccountToken": False,
        }
    )


def connection_config_map(body: Json) -> Json:
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": body["metadata"]["name"],
            "namespace": body["metadata"]["namespace"],
        },
        "spec": body.get("spec") or {},
    }
    name = naming.config_map_name(body["metadata"]["name"])
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(body, name),
            "data": {"connection.yaml": yaml.safe_dump(document, sort_keys=True)},
        }
    )


def state_claim(body: Json, spec: DataSyncConnectionSpec) -> Json | None:
    if spec.state.type != StateStoreType.SQLITE:
        return None
    claim_spec: Json = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.state.size}},
    }
    if spec.state.storageClassName:
        claim_spec["storageClassName"] = spec.state.storageClassName
    name = naming.state_claim_name(body["metadata"]["name"])
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _metadata(body, name),
            "spec": claim_spec,
        }
    )


def _resources(spec: DataSyncConnectionSpec, config: OperatorConfig) -> Json:
    chosen = spec.job.resources
    if chosen is None:
        return copy.deepcopy(config.sync_resources)
    result: Json = {}
    for kind in ("requests", "limits"):
        values = getattr(chosen, kind)
        if values is not None:
            quantities = values.model_dump(exclude_none=True)
            if quantities:
                result[kind] = quantities
    return result


def sync_arguments(spec: DataSyncConnectionSpec) -> list[str]:
    arguments = [
        "sync",
        "--connection-file",
        f"{CONNECTION_DIR}/connection.yaml",
        "--secrets-dir",
        SECRETS_DIR,
        "--termination-log",
        TERMINATION_LOG,
        "--job-name",
        "$(JOB_NAME)",
        "--log-format",
        "json",
        "--output",
        "json",
    ]
    if spec.state.type == StateStoreType.POSTGRESQL:
        arguments += ["--state-dsn-file", f"{SECRETS_DIR}/state/dsn"]
    # SQLite: `datasync sync` keeps its default store under $XDG_STATE_HOME, which the pod
    # points at the claim (see pod_template). A plain path survives volume remapping
    # (as in the test pod runner) where a sqlite:/// URL would not.
    return arguments


def _secrets_volume(mounts: Sequence[SecretMount]) -> Json:
    sources = [
        {
            "secret": {
                "name": mount.secret,
                "items": [{"key": key, "path": f"{mount.directory}/{key}"} for key in mount.keys],
            }
        }
        for mount in mounts
    ]
    # 0400 stays readable by the non-root sync user: with the pod's fsGroup the kubelet
    # hands the files to that group and adds group read.
    return {"name": "secrets", "projected": {"defaultMode": 0o400, "sources": sources}}


def pod_template(
    body: Json,
    spec: DataSyncConnectionSpec,
    secrets: Sequence[SecretMount],
    config: OperatorConfig,
) -> Json:
    connection = body["metadata"]["name"]
    volumes: list[Json] = [
        {
            "name": "connection",
            "configMap": {"name": naming.config_map_name(connection), "defaultMode": 0o444},
        },
        _secrets_volume(secrets),
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounts: list[Json] = [
        {"name": "connection", "mountPath": CONNECTION_DIR, "readOnly": True},
        {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own scratch volume
    ]
    if spec.state.type == StateStoreType.SQLITE:
        volumes.append(
            {
                "name": "state",
                "persistentVolumeClaim": {"claimName": naming.state_claim_name(connection)},
            }
        )
        mounts.append({"name": "state", "mountPath": STATE_DIR})
    env = [
        {
            "name": "JOB_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{naming.JOB_NAME_LABEL}']"}},
        },
        {"name": "DATASYNC_ALLOWED_HOSTS", "value": config.allowed_hosts},
        {
            "name": "DATASYNC_ALLOW_SANDBOX_URLS",
            "value": "true" if config.allow_sandbox_urls else "false",
        },
        {"name": "HOME", "value": "/tmp"},  # noqa: S108
    ]
    if spec.state.type == StateStoreType.SQLITE:
        env.append({"name": "XDG_STATE_HOME", "value": STATE_DIR})
    container = {
        "name": "sync",
        "image": config.sync_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["datasync"],
        "args": sync_arguments(spec),
        "env": env,
        "resources": _resources(spec, config),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "metadata": {
            "labels": naming.labels(connection),
            "annotations": {naming.CONNECTION_LABEL: connection},
        },
        "spec": {
            "serviceAccountName": naming.service_account_name(connection),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": NON_ROOT_ID,
                "runAsGroup": NON_ROOT_ID,
                "fsGroup": NON_ROOT_ID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }


def cron_job(
    body: Json,
    spec: DataSyncConnectionSpec,
    secrets: Sequence[SecretMount],
    config: OperatorConfig,
) -> Json:
    connection = body["metadata"]["name"]
    job_metadata = {
        "labels": naming.labels(connection),
        "annotations": {naming.CONNECTION_LABEL: connection},
    }
    return with_hash(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _metadata(body, naming.cronjob_name(connection)),
            "spec": {
                "schedule": spec.schedule,
                "suspend": spec.suspend,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": config.starting_deadline_seconds,
                "successfulJobsHistoryLimit": config.history_limit,
                "failedJobsHistoryLimit": config.history_limit,
                "jobTemplate": {
                    "metadata": job_metadata,
                    "spec": {
                        "backoffLimit": spec.job.backoffLimit,
                        "activeDeadlineSeconds": spec.job.activeDeadlineSeconds,
                        "ttlSecondsAfterFinished": config.job_ttl_seconds,
                        "template": pod_template(body, spec, secrets, config),
                    },
                },
            },
        }
    )


def job_from_cron_job(cron: Json, name: str, trigger: str) -> Json:
    """A Job from the CronJob's template, as `kubectl create job --from=cronjob/...` makes."""
    template = copy.deepcopy(cron["spec"]["jobTemplate"])
    metadata = template.get("metadata") or {}
    annotations: dict[str, str] = dict(metadata.get("annotations") or {})
    annotations["cronjob.kubernetes.io/instantiate"] = "manual"
    annotations[naming.SYNC_NOW_VALUE] = trigger[:253]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cron["metadata"]["namespace"],
            "labels": dict(metadata.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": cron["metadata"]["name"],
                    "uid": cron["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": template["spec"],
    }


def secret_mounts(resolved: Mapping[str, tuple[str, Sequence[str]]]) -> list[SecretMount]:
    return [
        SecretMount(directory, secret, tuple(sorted(keys)))
        for directory, (secret, keys) in resolved.items()
    ]
