"""An opt-out is never cleared by the sync (the `emailOptOut` canonical field)."""

from __future__ import annotations

import pytest

from tests.engine.world import World


@pytest.mark.parametrize("system", ["source", "destination"])
@pytest.mark.parametrize("opted_side", ["a", "b"])
async def test_first_sync_an_opt_out_wins_over_the_system_of_record(
    system: str, opted_side: str
) -> None:
    world = World(systemOfRecord=system)
    a_id = world.a.add(email="ann@example.com", lastname="Lee", optout=opted_side == "a")
    b_id = world.b.add(Email="ann@example.com", LastName="Lee", OptOut=opted_side == "b")

    await world.sync()

    assert world.a.get(a_id)["optout"] is True
    assert world.b.get(b_id)["OptOut"] is True


async def test_a_later_opt_in_elsewhere_does_not_clear_a_new_opt_out() -> None:
    # b is the system of record and its edit is the most recent: both would favour b.
    world = World(systemOfRecord="destination")
    a_id = world.a.add(email="ann@example.com", lastname="Lee")
    await world.sync()
    (b_id,) = world.b.find("ann@example.com")
    world.a.edit(a_id, optout=True)
    world.b.edit(b_id, OptOut=False)

    await world.sync()

    assert world.a.get(a_id)["optout"] is True
    assert world.b.get(b_id)["OptOut"] is True


async def test_opting_back_in_is_done_in_each_app_by_a_person() -> None:
    world = World()
    a_id = world.a.add(email="ann@example.com", lastname="Lee", optout=True)
    await world.sync()
    (b_id,) = world.b.find("ann@example.com")
    assert world.b.get(b_id)["OptOut"] is True

    # A person opts back in in a: b keeps its opt-out, a keeps the person's choice.
    world.a.edit(a_id, optout=False)
    await world.sync()
    assert world.b.get(b_id)["OptOut"] is True
    assert world.a.get(a_id)["optout"] is False
    writes = world.writes()
    quiet = await world.sync()
    assert world.writes() == writes and quiet.failures.total == 0

    # ... and in b too: now both say so, and nothing flips back.
    world.b.edit(b_id, OptOut=False)
    await world.sync()
    assert world.a.get(a_id)["optout"] is False
    assert world.b.get(b_id)["OptOut"] is False
    writes = world.writes()
    await world.sync()
    assert world.writes() == writes


async def test_an_opt_out_that_may_not_leave_its_app_is_kept_there() -> None:
    # The opted-out record is filtered (its values stay home); the other side, the system
    # of record, must still not write its "not opted out" into it.
    world = World(
        systemOfRecord="destination",
        filters=[
            {
                "app": "source",
                "field": "optout",
                "operator": "NotEquals",
                "values": ["true"],
                "reason": "OptedOut",
            }
        ],
    )
    a_id = world.a.add(email="ann@example.com", lastname="Lee", optout=True)
    world.b.add(Email="ann@example.com", LastName="Lee", OptOut=False)

    summary = await world.sync()

    assert world.a.get(a_id)["optout"] is True
    assert summary.skipped == {"OptedOut": 1}


async def test_a_one_way_sync_does_not_clear_an_opt_out_in_the_destination() -> None:
    world = World(direction="OneWay")
    world.a.add(email="ann@example.com", lastname="Lee", optout=False)
    b_id = world.b.add(Email="ann@example.com", LastName="Lee", OptOut=True)

    await world.sync()

    assert world.b.get(b_id)["OptOut"] is True
