"""Direction, conflict resolution, first sync, blanks and deletions."""

from __future__ import annotations

from datetime import timedelta

from datasync.api.models import SyncResult
from tests.engine.memory import Clock
from tests.engine.world import World


async def _paired(world: World) -> tuple[str, str]:
    a_id = world.a.add(email="ann@example.com", firstname="Ann", lastname="Lee", company="Acme")
    await world.sync()
    (b_id,) = world.b.find("ann@example.com")
    return a_id, b_id


async def test_one_way_never_writes_back_and_source_changes_overwrite() -> None:
    world = World(direction="OneWay")
    a_id, b_id = await _paired(world)
    world.b.add(Email="only-in-b@example.com", LastName="B")
    world.b.edit(b_id, FirstName="Edited in B")

    await world.sync()
    assert world.a.get(a_id)["firstname"] == "Ann"
    assert world.a.find("only-in-b@example.com") == []
    assert world.b.get(b_id)["FirstName"] == "Edited in B"  # kept until the source changes

    world.a.edit(a_id, firstname="Annie")
    summary = await world.sync()
    assert world.b.get(b_id)["FirstName"] == "Annie"
    assert summary.records.toSource.updated == 0 and summary.records.toDestination.updated == 1


async def test_two_way_merges_changes_to_different_fields() -> None:
    world = World()
    a_id, b_id = await _paired(world)
    world.a.edit(a_id, firstname="FromA")
    world.b.edit(b_id, LastName="FromB")

    await world.sync()

    assert world.a.get(a_id)["lastname"] == "FromB"
    assert world.b.get(b_id)["FirstName"] == "FromA"


async def test_most_recent_wins_per_field_with_field_timestamps() -> None:
    world = World()
    a_id, b_id = await _paired(world)
    world.b.edit(b_id, FirstName="OlderB")
    world.a.edit(a_id, firstname="NewerA")
    world.a.edit(a_id, company="CompanyA")  # later than both
    world.b.edit(b_id, Company="LatestB")

    await world.sync()

    assert world.b.get(b_id)["FirstName"] == "NewerA"
    assert world.a.get(a_id)["company"] == "LatestB"


async def test_most_recent_per_record_without_field_timestamps() -> None:
    world = World(field_timestamps=False)
    a_id, b_id = await _paired(world)
    world.a.edit(a_id, firstname="A1", company="CompA")
    world.b.edit(b_id, FirstName="B1")  # b's record is the most recent as a whole

    await world.sync()

    assert world.a.get(a_id)["firstname"] == "B1"
    assert world.a.get(a_id)["company"] == "CompA"  # only a changed it: no conflict
    assert world.b.get(b_id)["Company"] == "CompA"


async def test_system_of_record_mode_always_wins() -> None:
    world = World(conflictResolution="SystemOfRecord", systemOfRecord="destination")
    a_id, b_id = await _paired(world)
    world.b.edit(b_id, FirstName="OlderB")
    world.a.edit(a_id, firstname="NewerA")

    await world.sync()

    assert world.a.get(a_id)["firstname"] == "OlderB"


async def test_tie_goes_to_the_system_of_record() -> None:
    for system, expected in (("source", "A"), ("destination", "B")):
        clock = Clock()
        world = World(clock=clock, systemOfRecord=system)
        a_id, b_id = await _paired(world)
        clock.step = timedelta(0)
        world.a.edit(a_id, firstname="A")
        world.b.edit(b_id, FirstName="B")
        await world.sync()
        assert world.a.get(a_id)["firstname"] == expected
        assert world.b.get(b_id)["FirstName"] == expected


async def test_first_sync_system_of_record_wins_except_where_it_is_blank() -> None:
    world = World(systemOfRecord="destination")
    a_id = world.a.add(
        email="ann@example.com", firstname="A-first", lastname="A-last", phone="+1 555 0100"
    )
    b_id = world.b.add(Email="ann@example.com", FirstName="B-first", LastName="B-last", Phone="")

    await world.sync()

    assert world.a.get(a_id)["firstname"] == "B-first"
    assert world.a.get(a_id)["lastname"] == "B-last"
    assert world.a.get(a_id)["phone"] == "+1 555 0100"  # the blank never overwrote it
    assert world.b.get(b_id)["Phone"] == "+1 555 0100"  # and it filled the blank


async def test_a_blank_never_erases_unless_the_mapping_opts_in() -> None:
    world = World()
    a_id, b_id = await _paired(world)
    world.a.edit(a_id, company="")

    summary = await world.sync()
    assert world.b.get(b_id)["Company"] == "Acme"
    assert world.a.get(a_id)["company"] == ""  # nor is the cleared field refilled
    assert summary.result == SyncResult.SUCCEEDED
    assert world.a.blank_erasures == world.b.blank_erasures == 0
    # A later non-blank change flows normally.
    world.a.edit(a_id, company="NewCo")
    await world.sync()
    assert world.b.get(b_id)["Company"] == "NewCo"

    opted = World(
        mappings={
            "fields": [{"source": "company", "destination": "Company", "blankOverwrites": True}]
        }
    )
    a_id, b_id = await _paired(opted)
    opted.a.edit(a_id, company="")
    await opted.sync()
    assert opted.b.get(b_id)["Company"] in (None, "")


async def test_deletions_are_reported_not_mirrored_nor_recreated() -> None:
    world = World()
    a_id, b_id = await _paired(world)
    world.b.delete(b_id)
    world.a.edit(a_id, firstname="Changed")

    summary = await world.sync()

    assert a_id in world.a.records
    assert world.b.find("ann@example.com") == []
    assert summary.skipped == {"CounterpartDeleted": 1}
    assert summary.health.excluded == {"CounterpartDeleted": 1}
    assert summary.failures.samples[0].reason == "CounterpartDeleted"
    # Re-creating the counterpart by hand re-pairs it.
    new_b = world.b.add(Email="ann@example.com", FirstName="Again", LastName="Lee")
    await world.sync()
    assert set(world.store.pairs_for(World.b_side(), [new_b])) == {new_b}
