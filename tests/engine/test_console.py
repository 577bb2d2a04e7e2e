"""LineProgress: a few plain lines per run, however the engine interleaves its phases."""

from __future__ import annotations

import logging

import pytest

from datasync.engine import run_sync
from datasync.engine.console import LineProgress
from tests.engine.world import World


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_run_logs_its_phase_starts_and_totals_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Small batches: the engine switches between reading and writing about 100 times.
    world = World(max_batch_size=2, page_size=3)
    for i in range(100):
        world.a.add(email=f"p{i}@example.com", lastname="L")
    for i in range(50, 150):
        world.b.add(Email=f"p{i}@example.com", LastName="B")
    caplog.set_level(logging.INFO, logger="datasync.sync")
    progress = LineProgress(clock=_Clock())  # the clock stands still: no periodic lines

    await run_sync(
        world.spec, world.a.connector(), world.b.connector(), world.store, progress=progress
    )

    lines = [r.getMessage() for r in caplog.records if r.name == "datasync.sync"]
    assert lines[:-1] == ["reading source", "writing destination", "reading destination",
                          "writing source"]  # fmt: skip
    assert lines[-1] == (
        "done: reading source 100, writing destination 100, "
        "reading destination 50, writing source 50"
    )


def test_counts_so_far_at_most_once_per_interval() -> None:
    clock = _Clock()
    lines: list[str] = []
    progress = LineProgress(lines.append, {"source": "HubSpot"}, interval=10.0, clock=clock)
    progress.started("source", "reading")
    for _ in range(100):  # 100 chunks of 20 records, 1 s apart
        clock.now += 1.0
        progress.advance(20)
        progress.started("destination", "writing")
        progress.advance(1)
        progress.started("source", "reading")
    progress.finished()

    assert lines[:2] == ["reading HubSpot", "writing destination"]
    periodic = lines[2:-1]
    assert len(periodic) == 9  # lines at 11 s, 21 s, ... 91 s: one per 10 s at most
    assert periodic[0] == "reading HubSpot: 220 records"
    assert lines[-1] == "done: reading HubSpot 2000, writing destination 100"
