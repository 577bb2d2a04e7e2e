"""How a sync run reports progress; the CLI renders it with rich, the demo reuses it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def started(self, side: str, phase: str) -> None:
        """Work of `phase` ("reading" or "writing") on `side` begins or resumes."""

    def advance(self, count: int = 1) -> None:
        """`count` records of the current phase are done."""

    def finished(self) -> None:
        """The run is over."""


class NoProgress:
    def started(self, side: str, phase: str) -> None:
        return None

    def advance(self, count: int = 1) -> None:
        return None

    def finished(self) -> None:
        return None
