"""The operator's own configuration, set once by `datasync operator` before Kopf starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_SYNC_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}


@dataclass
class OperatorConfig:
    sync_image: str = "ghcr.io/datasync/datasync:latest"
    image_pull_policy: str = "IfNotPresent"
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    credentials_check_interval: float = 3600.0
    credentials_check_timeout: float = 20.0
    allowed_hosts: str = ""
    allow_sandbox_urls: bool = False
    sync_resources: dict[str, Any] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_SYNC_RESOURCES.items()}
    )
    # Finished Jobs (and their pods' termination messages) are kept this long.
    job_ttl_seconds: int = 86400
    starting_deadline_seconds: int = 300
    history_limit: int = 3


_current = OperatorConfig()


def current() -> OperatorConfig:
    return _current


def set_current(config: OperatorConfig) -> None:
    global _current
    _current = config
