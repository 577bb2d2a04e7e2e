"""The sync engine: keeps records in step between two connectors (see docs/engine.md)."""

from datasync.engine.progress import NoProgress, Progress
from datasync.engine.sync import OVERLAP, run_sync

__all__ = ["OVERLAP", "NoProgress", "Progress", "run_sync"]
