"""Incremental runs, batching, transient and fatal errors, crash safety, dry runs."""

from __future__ import annotations

import pytest

from datasync.api.models import SyncResult
from datasync.connector import AuthenticationError
from tests.engine.memory import Killed
from tests.engine.world import World


def _seed(world: World, count: int) -> list[str]:
    return [
        world.a.add(email=f"p{i}@example.com", firstname=f"F{i}", lastname=f"L{i}")
        for i in range(count)
    ]


async def test_cost_grows_with_changes_not_with_app_size() -> None:
    world = World(max_batch_size=10, page_size=10)
    ids = _seed(world, 60)
    first = await world.sync()
    assert first.records.toDestination.created == 60
    assert world.b.calls["create"] == 6  # batches of max_batch_size
    world.a.calls.clear()
    world.b.calls.clear()

    world.a.edit(ids[5], firstname="Changed")
    summary = await world.sync()

    assert summary.records.toDestination.updated == 1
    # Only the change (plus the clock-skew overlap) is read, never the 60 records.
    assert summary.records.toDestination.read <= 4
    assert summary.records.toSource.read <= 4
    assert sum(world.a.calls.values()) + sum(world.b.calls.values()) <= 10
    assert summary.apiCalls["source"] >= 1 and summary.apiCalls["destination"] >= 1


async def test_echo_of_engine_writes_is_not_a_new_edit() -> None:
    world = World()
    a_id = world.a.add(email="e@example.com", firstname="E", lastname="L")
    await world.sync()
    world.a.edit(a_id, firstname="E2")
    await world.sync()
    writes = world.writes()
    for _ in range(3):
        summary = await world.sync()
        assert summary.records.toDestination.updated == summary.records.toSource.updated == 0
    assert world.writes() == writes


async def test_retriable_error_reports_records_and_next_run_picks_them_up() -> None:
    world = World()
    _seed(world, 3)
    world.b.fail_operations["create"] = "RateLimited"

    summary = await world.sync()

    assert summary.result == SyncResult.PARTIALLY_SUCCEEDED
    assert summary.failures.byReason == {"RateLimited": 3}
    assert summary.health.failing == {"RateLimited": 3}
    assert world.b.records == {}
    watermark = world.store.get_watermark(World.a_side())
    assert watermark is None or watermark <= min(r.modified_at for r in world.a.records.values())

    del world.b.fail_operations["create"]
    summary = await world.sync()
    assert summary.result == SyncResult.SUCCEEDED
    assert len(world.b.records) == 3
    assert summary.health.failing == {} and summary.health.inSync == 3


async def test_read_failure_keeps_the_watermark_and_the_run_partial() -> None:
    world = World()
    _seed(world, 2)
    world.a.fail_operations["read_changed"] = "AppUnavailable"
    summary = await world.sync()
    assert summary.result == SyncResult.PARTIALLY_SUCCEEDED
    assert world.store.get_watermark(World.a_side()) is None
    del world.a.fail_operations["read_changed"]
    await world.sync()
    assert len(world.b.records) == 2


async def test_fatal_error_fails_the_run_with_the_message() -> None:
    world = World()
    _seed(world, 1)
    world.b.fatal = AuthenticationError(
        "the app refused the access token; check key `token` of Secret destination-creds",
        credential="token",
    )
    summary = await world.sync()
    assert summary.result == SyncResult.FAILED
    assert summary.error is not None and "destination-creds" in summary.error
    assert summary.health.inSync == 0


@pytest.mark.parametrize("before_apply", [False, True])
@pytest.mark.parametrize("at", [1, 2, 3, 4])
async def test_a_killed_run_rerun_creates_no_duplicate_and_loses_nothing(
    at: int, before_apply: bool
) -> None:
    world = World(max_batch_size=3, page_size=4)
    ids = _seed(world, 7)
    world.b.add(Email="b-only@example.com", FirstName="B", LastName="Only")
    world.kill.at, world.kill.before_apply = world.kill.calls + at, before_apply

    with pytest.raises(Killed):
        await world.sync()
    world.kill.at = None
    await world.sync()

    assert len(world.b.by_identity()) == 8 and len(world.a.by_identity()) == 8
    world.a.edit(ids[0], firstname="After")
    await world.sync()
    assert world.b.by_identity()["p0@example.com"]["FirstName"] == "After"
    writes = world.writes()
    await world.sync()
    assert world.writes() == writes


async def test_dry_run_writes_nothing_and_remembers_nothing() -> None:
    world = World()
    _seed(world, 3)
    world.a.add(email="bad", lastname="X")

    summary = await world.sync(dry_run=True)

    assert summary.dryRun is True
    assert summary.records.toDestination.created == 3
    assert summary.failures.byReason == {"InvalidEmail": 1}
    assert world.writes() == 0 and world.b.records == {}
    assert world.store.get_watermark(World.a_side()) is None
    assert world.store.count_pairs() == 0
    assert world.store.health().failing == {}


async def test_records_stream_page_by_page() -> None:
    world = World(max_batch_size=5, page_size=5, direction="OneWay")
    _seed(world, 15)
    pages: list[str] = []
    world.a.call_log.clear()
    world.b.call_log.clear()
    original_call = world.b._call

    def interleaved(operation: str) -> None:
        pages.append(f"b:{operation}")
        original_call(operation)

    original_a = world.a._call

    def interleaved_a(operation: str) -> None:
        pages.append(f"a:{operation}")
        original_a(operation)

    world.b._call = interleaved  # type: ignore[method-assign]
    world.a._call = interleaved_a  # type: ignore[method-assign]
    await world.sync()

    reads = [i for i, call in enumerate(pages) if call == "a:read_changed"]
    creates = [i for i, call in enumerate(pages) if call == "b:create"]
    assert len(creates) == 3 and len(reads) >= 3
    # Each page is written before the next one is read: memory holds one page at a time.
    assert reads[0] < creates[0] < reads[1] < creates[1] < reads[2] < creates[2]


async def test_inclusion_list_and_filter_on_the_destination_of_a_two_way_connection() -> None:
    world = World(
        inclusionList={"app": "destination", "list": "sync-me"},
        filters=[{"app": "destination", "field": "Company", "operator": "IsSet"}],
    )
    member = world.b.add(Email="m@example.com", LastName="M", Company="Acme")
    no_company = world.b.add(Email="n@example.com", LastName="N")
    world.b.add(Email="x@example.com", LastName="X", Company="Acme")
    world.b.lists["sync-me"] = {member, no_company}
    world.a.add(email="from-a@example.com", lastname="A")

    summary = await world.sync()

    assert set(world.a.by_identity()) == {"m@example.com", "from-a@example.com"}
    assert "from-a@example.com" in world.b.by_identity()
    assert summary.skipped == {"NotInList": 1, "FilteredOut": 1}
