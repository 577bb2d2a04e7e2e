from __future__ import annotations

from datasync.api.models import SyncResult
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
