"""Status conditions following the Kubernetes API conventions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

READY = "Ready"
CREDENTIALS_VALID = "CredentialsValid"
SYNCED = "Synced"
ORDER = (READY, CREDENTIALS_VALID, SYNCED)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    value = "Unknown" if status is None else ("True" if status else "False")
    result: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
    }
    if generation is not None:
        result["observedGeneration"] = generation
    return result


def merge(
    existing: list[dict[str, Any]], updates: list[dict[str, Any]], at: str | None = None
) -> list[dict[str, Any]]:
    """Existing conditions with `updates` applied; lastTransitionTime moves only when a
    condition's status changes."""
    timestamp = at or now()
    by_type = {item.get("type"): dict(item) for item in existing}
    for update in updates:
        previous = by_type.get(update["type"])
        merged = dict(update)
        if previous is not None and previous.get("status") == update["status"]:
            merged["lastTransitionTime"] = previous.get("lastTransitionTime") or timestamp
        else:
            merged["lastTransitionTime"] = timestamp
        by_type[update["type"]] = merged
    ordered = [by_type[name] for name in ORDER if name in by_type]
    ordered += [item for name, item in by_type.items() if name not in ORDER]
    return ordered


def find(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    for item in conditions:
        if item.get("type") == type_:
            return item
    return None
