"""Creates in flight while the next batch is worked out (see _Run._write_creates)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from datasync.api.models import SyncResult
from datasync.connector import Record, WriteResult
from datasync.engine import run_sync
from datasync.engine.sync import CreateWork, _Run
from datasync.state.sql import _Cursor
from datasync.state.sqlite import SqliteStateStore
from tests.engine.memory import MemoryConnector
from tests.engine.world import World


class SlowCreates(MemoryConnector):
    """Creates that answer after a while, as a real app's do."""

    async def create(
        self, object_type: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        await asyncio.sleep(0.003)
        return await super().create(object_type, records)


class OneThreadAtATime(SqliteStateStore):
    """A state store that counts statements run while another thread was running one
    (each takes a little while, so that an overlap is hard to miss)."""

    def __init__(self, path: str) -> None:
        self._guard = threading.Lock()
        self._inside: set[int] = set()
        self.overlaps = 0
        super().__init__(path, "test/connection")

    @contextmanager
    def _watched(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._guard:
            if self._inside - {me}:
                self.overlaps += 1
            self._inside.add(me)
        try:
            time.sleep(0.0005)
            yield
        finally:
            with self._guard:
                self._inside.discard(me)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        with self._watched():
            return super()._execute(sql, params)

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._watched():
            super()._execute_many(sql, rows)


def _seed(world: World, count: int, bad_every: int = 0) -> tuple[list[str], list[str]]:
    good: list[str] = []
    bad: list[str] = []
    for i in range(count):
        invalid = bad_every and i % bad_every == 3
        record_id = world.a.add(
            email=f"not-an-email-{i}" if invalid else f"p{i}@example.com",
            firstname=f"F{i}",
            lastname=f"L{i}",
        )
        (bad if invalid else good).append(record_id)
    return good, bad


async def test_records_failing_checks_between_batches_in_flight_are_all_accounted(
    tmp_path: Path,
) -> None:
    store = OneThreadAtATime(str(tmp_path / "state.sqlite3"))
    # Pages longer than _YIELD_EVERY, so the event loop turns while a page's batches are
    # worked out and the state writes of the batch before run meanwhile.
    world = World(store=store, direction="OneWay", max_batch_size=10, page_size=150)
    good, bad = _seed(world, 340, bad_every=7)

    summary = await run_sync(
        world.spec, world.a.connector(), SlowCreates(world.b), store, commit_seconds=0
    )

    assert store.overlaps == 0, "the state store was used by two threads at once"
    assert summary.records.toDestination.created == len(good)
    assert summary.records.toDestination.failed == len(bad)
    assert summary.failures.byReason == {"InvalidEmail": len(bad)}
    assert summary.health.failing == {"InvalidEmail": len(bad)}
    assert summary.health.inSync == len(good) == store.count_pairs()
    assert sorted(world.b.by_identity()) == sorted(
        f"p{i}@example.com" for i in range(340) if i % 7 != 3
    )
    # Batches stay full: failing records do not make the app take more calls.
    pages = [(0, 150), (150, 300), (300, 340)]
    per_page = [sum(1 for i in range(a, b) if i % 7 != 3) for a, b in pages]
    assert world.b.calls["create"] == sum(-(-n // 10) for n in per_page)


async def test_a_failure_while_the_next_batch_is_worked_out_keeps_the_batch_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStateStore(str(tmp_path / "state.sqlite3"), "test/connection")
    world = World(store=store, direction="OneWay", max_batch_size=10, page_size=40)
    good, _ = _seed(world, 30)
    create = _Run._create

    def broken(run: _Run, side: Any, record: Record) -> CreateWork | None:
        if record.fields.get("email") == "p15@example.com":
            raise RuntimeError("a bug while working out a payload")
        return create(run, side, record)

    monkeypatch.setattr(_Run, "_create", broken)
    failed = await run_sync(world.spec, world.a.connector(), SlowCreates(world.b), store)

    assert failed.result == SyncResult.FAILED
    # The first batch was in the app when the bug struck: it is paired, not left to chance.
    assert len(world.b.records) == 10 == store.count_pairs()

    monkeypatch.setattr(_Run, "_create", create)
    again = await run_sync(world.spec, world.a.connector(), SlowCreates(world.b), store)

    assert again.result == SyncResult.SUCCEEDED
    assert again.records.toDestination.created == 20
    assert len(world.b.records) == len(good) == store.count_pairs()
    assert sorted(world.b.by_identity()) == sorted(f"p{i}@example.com" for i in range(30))
