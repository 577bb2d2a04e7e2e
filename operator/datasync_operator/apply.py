"""Write an owned object only when its desired state differs from what is stored."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from . import naming
from .kube import Json, Kube, KubeError

PLURALS = {
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("batch/v1", "CronJob"): "cronjobs",
    ("batch/v1", "Job"): "jobs",
}


class Outcome(StrEnum):
    CREATED = "Created"
    UPDATED = "Updated"
    UNCHANGED = "Unchanged"


class RejectedChangeError(Exception):
    """The API refused the update (e.g. shrinking a claim); the stored object stays."""


class NotOwnedError(Exception):
    """An object with the desired name exists but belongs to something else."""


def collection_path(manifest: Json) -> str:
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    namespace = manifest["metadata"]["namespace"]
    plural = PLURALS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(manifest: Json) -> str:
    return f"{collection_path(manifest)}/{manifest['metadata']['name']}"


def _owned_by(existing: Json, desired: Json) -> bool:
    wanted = {ref["uid"] for ref in desired["metadata"].get("ownerReferences") or []}
    present = {ref.get("uid") for ref in existing["metadata"].get("ownerReferences") or []}
    return not wanted or bool(wanted & present)


def stored_hash(existing: Json) -> str | None:
    annotations: dict[str, Any] = existing.get("metadata", {}).get("annotations") or {}
    value = annotations.get(naming.SPEC_HASH)
    return str(value) if value is not None else None


async def ensure(kube: Kube, desired: Json, *, create_first: bool = False) -> tuple[Outcome, Json]:
    """Create the object, or update it when its spec-hash differs; never touch it otherwise.

    `create_first` (the object is almost certainly absent): try the create before any read,
    and read only when the API answers AlreadyExists."""
    if create_first:
        try:
            return Outcome.CREATED, await kube.create(collection_path(desired), desired)
        except KubeError as error:
            if error.status != 409:
                raise
    existing = await kube.get(object_path(desired))
    if existing is None:
        return Outcome.CREATED, await kube.create(collection_path(desired), desired)
    if not _owned_by(existing, desired):
        raise NotOwnedError(
            f"{desired['kind']} {desired['metadata']['name']} already exists and is not owned "
            "by this DataSyncConnection; delete or rename it"
        )
    if stored_hash(existing) == stored_hash(desired):
        return Outcome.UNCHANGED, existing
    if desired["kind"] == "PersistentVolumeClaim":
        # Most of a claim's spec is immutable: only grow the storage request.
        patch = {
            "metadata": {
                "labels": desired["metadata"]["labels"],
                "annotations": desired["metadata"]["annotations"],
            },
            "spec": {"resources": desired["spec"]["resources"]},
        }
        try:
            return Outcome.UPDATED, await kube.merge_patch(object_path(desired), patch)
        except KubeError as error:
            if error.status == 422:
                raise RejectedChangeError(
                    f"PersistentVolumeClaim {desired['metadata']['name']} keeps its current "
                    f"size: {error.message}"
                ) from None
            raise
    replacement = dict(desired)
    replacement["metadata"] = {
        **desired["metadata"],
        "resourceVersion": existing["metadata"]["resourceVersion"],
    }
    return Outcome.UPDATED, await kube.replace(object_path(desired), replacement)
