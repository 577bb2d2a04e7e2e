"""Render sync progress and summaries in a terminal (rich), or as plain lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgressBar
from rich.table import Table

from datasync.api.models import SyncResult, SyncSummary

log = logging.getLogger("datasync.sync")


class RichProgress:
    """A live progress display: one line per (side, phase), counting records."""

    def __init__(self, console: Console) -> None:
        self._bar = RichProgressBar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[tuple[str, str], Any] = {}
        self._current: Any = None
        self._bar.start()

    def started(self, side: str, phase: str) -> None:
        key = (side, phase)
        if key not in self._tasks:
            self._tasks[key] = self._bar.add_task(f"{phase.capitalize()} {side}", total=None)
        self._current = self._tasks[key]

    def advance(self, count: int = 1) -> None:
        if self._current is not None:
            self._bar.advance(self._current, count)

    def finished(self) -> None:
        self._bar.stop()


class LineProgress:
    """Progress as a few plain lines, for pipes, files, CI and pod logs: one line when a
    side's phase ("reading source") first starts, then at most one every `interval`
    seconds with the records done so far, and one line of totals at the end. (A run does
    not know its totals in advance, so there are no percentages.)"""

    def __init__(
        self,
        emit: Callable[[str], None] | None = None,
        names: Mapping[str, str] | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit or (lambda line: log.info("%s", line))
        self._names = dict(names or {})
        self._interval = interval
        self._clock = clock
        self._last_line = clock()
        self._current: tuple[str, str] | None = None
        self._counts: dict[tuple[str, str], int] = {}

    def _say(self, line: str) -> None:
        self._emit(line)
        self._last_line = self._clock()

    def _label(self, key: tuple[str, str]) -> str:
        side, phase = key
        return f"{phase} {self._names.get(side, side)}"

    def started(self, side: str, phase: str) -> None:
        self._current = (str(side), phase)
        if self._current not in self._counts:
            self._counts[self._current] = 0
            self._say(self._label(self._current))

    def advance(self, count: int = 1) -> None:
        if self._current is None:
            return
        self._counts[self._current] += count
        if self._clock() - self._last_line >= self._interval:
            self._say(f"{self._label(self._current)}: {self._counts[self._current]} records")

    def finished(self) -> None:
        if self._counts:
            self._say(
                "done: "
                + ", ".join(f"{self._label(key)} {count}" for key, count in self._counts.items())
            )


RESULT_STYLE = {
    SyncResult.SUCCEEDED: "bold green",
    SyncResult.PARTIALLY_SUCCEEDED: "bold yellow",
    SyncResult.FAILED: "bold red",
}


def render_summary(summary: SyncSummary, console: Console) -> None:
    result = SyncResult(summary.result)
    title = f"Sync {result}" + (" (dry run: nothing was written)" if summary.dryRun else "")
    console.print(title, style=RESULT_STYLE[result])
    if summary.error:
        console.print(f"Error: {summary.error}", style="red", markup=False)
    counts = Table(title="Records", title_justify="left")
    for column in ("Direction", "Read", "Created", "Updated", "Unchanged", "Skipped", "Failed"):
        counts.add_column(column, justify="left" if column == "Direction" else "right")
    for label, direction in (
        ("to destination", summary.records.toDestination),
        ("to source", summary.records.toSource),
    ):
        counts.add_row(
            label,
            *(
                str(getattr(direction, name))
                for name in ("read", "created", "updated", "unchanged", "skipped", "failed")
            ),
        )
    console.print(counts)
    if summary.skipped:
        console.print(
            "Skipped: " + ", ".join(f"{reason} {n}" for reason, n in summary.skipped.items()),
            markup=False,
        )
    if summary.failures.total:
        console.print(
            f"Failures: {summary.failures.total} ("
            + ", ".join(f"{reason} {n}" for reason, n in summary.failures.byReason.items())
            + ")",
            markup=False,
        )
    if summary.failures.samples:
        samples = Table(title="Samples", title_justify="left")
        for column in ("App", "Record", "Field", "Reason", "Code", "Message"):
            samples.add_column(column, overflow="fold")
        for sample in summary.failures.samples:
            samples.add_row(
                str(sample.app),
                sample.recordId,
                sample.field or "",
                sample.reason,
                sample.code or "",
                sample.message,
            )
        console.print(samples)
    health = summary.health
    parts = [f"in sync {health.inSync}"]
    parts += [f"excluded {reason} {n}" for reason, n in health.excluded.items()]
    parts += [f"failing {reason} {n}" for reason, n in health.failing.items()]
    console.print("Health: " + ", ".join(parts), markup=False)
    if summary.apiCalls:
        console.print(
            "API calls: " + ", ".join(f"{side} {n}" for side, n in summary.apiCalls.items()),
            markup=False,
        )
