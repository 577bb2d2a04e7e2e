"""Carry a sync summary through a pod's termination message.

The kubelet keeps at most 4096 bytes of a container's termination message, so the summary
travels gzip-compressed and base64-encoded; when even that is too long, failure samples
are dropped one by one (their counts stay) until it fits.
"""

from __future__ import annotations

import base64
import gzip

from datasync.api.models import SyncSummary

PREFIX = "datasync.io/summary.v1:"
LIMIT = 4096


def encode(summary: SyncSummary, limit: int = LIMIT) -> str:
    current = summary.model_copy(deep=True)
    while True:
        raw = current.model_dump_json(exclude_none=True).encode()
        text = PREFIX + base64.b64encode(gzip.compress(raw, mtime=0)).decode()
        if len(text) <= limit or not current.failures.samples:
            return text
        current.failures.samples = current.failures.samples[:-1]


def decode(text: str) -> SyncSummary | None:
    """The summary in a termination message, or None when it carries none."""
    text = text.strip()
    if not text.startswith(PREFIX):
        return None
    try:
        raw = gzip.decompress(base64.b64decode(text[len(PREFIX) :], validate=True))
    except (ValueError, OSError, EOFError):
        return None
    try:
        return SyncSummary.model_validate_json(raw)
    except ValueError:
        return None
