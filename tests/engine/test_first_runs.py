from __future__ import annotations

import json

from datasync.api.models import SyncResult, SyncSummary
from datasync.engine import run_sync
from tests.engine.world import World


async def test_first_sync_creates_both_ways_and_second_run_writes_nothing() -> None:
    world = World()
    world.a.add(email="ann@example.com", firstname="Ann", lastname="Lee")
    world.b.add(Email="bob@example.com", FirstName="Bob", LastName="Ray")

    summary = await world.sync()

    assert summary.result == SyncResult.SUCCEEDED
    assert summary.records.toDestination.created == 1
    assert summary.records.toSource.created == 1
    assert world.b.by_identity()["ann@example.com"]["FirstName"] == "Ann"
    assert world.a.by_identity()["bob@example.com"]["lastname"] == "Ray"
    assert summary.health.inSync == 2
    before = world.writes()
    again = await world.sync()
    assert world.writes() == before
    assert again.records.toDestination.created == again.records.toDestination.updated == 0
    assert again.result == SyncResult.SUCCEEDED


async def test_records_match_by_trimmed_case_insensitive_email() -> None:
    world = World()
    world.a.add(email="  Ann@Example.COM ", firstname="Ann", lastname="Lee")
    world.b.add(Email="ann@example.com", FirstName="Ann", LastName="Lee")

    summary = await world.sync()

    assert len(world.b.records) == 1 and len(world.a.records) == 1
    assert summary.records.toDestination.created == 0
    assert summary.health.inSync == 1


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def started(self, side: str, phase: str) -> None:
        self.events.append(("started", str(side), phase))

    def advance(self, count: int = 1) -> None:
        self.events.append(("advance", str(count)))

    def finished(self) -> None:
        self.events.append(("finished",))


async def test_progress_reports_reading_and_writing_per_side() -> None:
    world = World(max_batch_size=2, page_size=3)
    for i in range(5):
        world.a.add(email=f"p{i}@example.com", lastname="L")
    progress = RecordingProgress()

    await run_sync(
        world.spec, world.a.connector(), world.b.connector(), world.store, progress=progress
    )

    assert ("started", "source", "reading") in progress.events
    assert ("started", "destination", "writing") in progress.events
    assert progress.events[-1] == ("finished",)
    advanced = sum(int(e[1]) for e in progress.events if e[0] == "advance")
    assert advanced == 10  # 5 records read, 5 created


async def test_summary_json_is_the_contract() -> None:
    world = World()
    world.a.add(email="ann@example.com", lastname="Lee")
    summary = await world.sync()
    data = json.loads(summary.model_dump_json(exclude_none=True))
    assert data["result"] == "Succeeded" and "error" not in data
    assert data["apiCalls"] == {
        "source": summary.apiCalls["source"],
        "destination": summary.apiCalls["destination"],
    }
    assert data["health"] == {"inSync": 1, "excluded": {}, "failing": {}}
    assert SyncSummary.model_validate(data) == summary


async def test_naive_timestamps_from_a_connector_are_read_as_utc() -> None:
    world = World()
    world.b.naive_times = True
    a_id = world.a.add(email="n@example.com", lastname="N")
    await world.sync()
    (b_id,) = world.b.find("n@example.com")
    world.a.edit(a_id, firstname="Older")
    world.b.edit(b_id, FirstName="Newer")
    summary = await world.sync()
    assert summary.result == SyncResult.SUCCEEDED, summary.error
    assert world.a.get(a_id)["firstname"] == "Newer"
