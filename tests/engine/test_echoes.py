"""Echoes: a paired record read back with the values last synced (the engine's own write,
or an edit that changed no mapped field) needs no counterpart fetch."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.world import World

PEOPLE = 6


async def synced(**options: object) -> tuple[World, list[str], list[str]]:
    world = World(**options)  # type: ignore[arg-type]
    a_ids = [
        world.a.add(email=f"p{i}@example.com", firstname=f"F{i}", lastname="L")
        for i in range(PEOPLE)
    ]
    await world.sync()
    b_ids = [world.b.find(f"p{i}@example.com")[0] for i in range(PEOPLE)]
    return world, a_ids, b_ids


async def test_the_engines_own_writes_read_back_fetch_no_counterpart() -> None:
    world, _a_ids, _b_ids = await synced()
    world.a.read_ids.clear()
    world.b.read_ids.clear()
    writes = world.writes()

    summary = await world.sync()  # re-reads the latest changes (the overlap) on each side

    counts = summary.records
    assert counts.toSource.read > 0 and counts.toDestination.read > 0  # echoes were read ...
    assert world.a.read_ids == [] and world.b.read_ids == []  # ... but nothing fetched
    assert counts.toSource.unchanged == counts.toDestination.read
    assert counts.toDestination.unchanged == counts.toSource.read
    assert world.writes() == writes
    assert summary.health.inSync == PEOPLE


async def test_a_real_edit_fetches_its_counterpart_and_syncs() -> None:
    world, a_ids, b_ids = await synced()
    await world.sync()
    world.a.read_ids.clear()
    world.b.read_ids.clear()

    world.b.edit(b_ids[2], FirstName="Edited")
    world.a.edit(a_ids[4], company="Acme")
    await world.sync()

    assert world.a.get(a_ids[2])["firstname"] == "Edited"
    assert world.b.get(b_ids[4])["Company"] == "Acme"
    assert set(world.a.read_ids) == {a_ids[2]}
    assert set(world.b.read_ids) == {b_ids[4]}


async def test_an_edit_of_an_unmapped_field_is_an_echo() -> None:
    world, a_ids, _b_ids = await synced()
    await world.sync()
    world.b.read_ids.clear()

    world.a.edit(a_ids[0], birthday="2000-01-01")  # no mapping between the memory apps
    summary = await world.sync()

    assert world.b.read_ids == []
    assert summary.records.toDestination.unchanged >= 1


async def test_a_failing_record_is_still_retried_with_its_counterpart() -> None:
    """The target of a failed write still holds the values last synced, like an echo:
    retry_failing must still fetch its counterpart and write."""
    world, a_ids, b_ids = await synced()
    world.a.reject_values["firstname"] = {"Refused"}
    world.b.edit(b_ids[1], FirstName="Refused")
    assert (await world.sync()).failures.total == 1
    for n in range(4):  # move b's watermark past the edit and its overlap
        world.b.edit(b_ids[3], Company=f"C{n}")
    assert (await world.sync()).health.failing == {"AppRejected": 1}
    world.a.reject_values.clear()

    retried = await world.sync()

    assert world.a.get(a_ids[1])["firstname"] == "Refused"
    assert retried.failures.total == 0 and retried.health.failing == {}


edit = st.tuples(st.sampled_from("ab"), st.integers(0, PEOPLE - 1), st.sampled_from(["x", "y"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(st.lists(edit, max_size=5), min_size=1, max_size=5))
async def test_counterparts_fetched_are_only_those_of_records_edited(
    rounds: list[list[tuple[str, int, str]]],
) -> None:
    """Over any rounds of edits, a run fetches by id only the counterparts of records a
    person edited since the previous run (none in a quiet run), and every edit syncs."""
    world, a_ids, b_ids = await synced(max_batch_size=4, page_size=3)
    await world.sync()
    for edits in [*rounds, []]:
        edited = {"a": set(), "b": set()}
        for app, index, value in edits:
            if app == "a":
                world.a.edit(a_ids[index], company=f"{value}{index}")
            else:
                world.b.edit(b_ids[index], Company=f"{value}{index}")
            edited[app].add(index)
        world.a.read_ids.clear()
        world.b.read_ids.clear()
        await world.sync()
        assert set(world.b.read_ids) <= {b_ids[i] for i in edited["a"]}
        assert set(world.a.read_ids) <= {a_ids[i] for i in edited["b"]}
        for index in range(PEOPLE):
            assert world.a.get(a_ids[index]).get("company") == world.b.get(b_ids[index]).get(
                "Company"
            )


@pytest.mark.parametrize("direction", ["ToDestination", "ToSource"])
async def test_records_the_sync_created_are_echoes_with_a_one_way_mapping(
    direction: str,
) -> None:
    """A created record carries no value of a mapping that only flows towards the record it
    was created from; its pair still has that mapping's fingerprint, so reading the created
    record back (the overlap) fetches no counterpart, in either direction."""
    world = World(
        mappings={"fields": [{"source": "optout", "destination": "OptOut", "direction": direction}]}
    )
    for i in range(PEOPLE):
        world.a.add(email=f"a{i}@example.com", lastname="L", optout=i % 2 == 0)
        world.b.add(Email=f"b{i}@example.com", LastName="L", OptOut=i % 3 == 0)
    first = await world.sync()
    assert first.records.toSource.created == PEOPLE
    assert first.records.toDestination.created == PEOPLE
    world.a.read_ids.clear()
    world.b.read_ids.clear()
    writes = world.writes()

    summary = await world.sync()

    assert summary.records.toSource.read + summary.records.toDestination.read > 0
    assert world.a.read_ids == [] and world.b.read_ids == []
    assert world.writes() == writes
    assert summary.health.inSync == 2 * PEOPLE
    # A person's later edit of the one-way field on the created record still syncs.
    (created_in_b,) = world.b.find("a1@example.com")
    (created_in_a,) = world.a.find("b1@example.com")
    if direction == "ToSource":
        world.b.edit(created_in_b, OptOut=True)
        await world.sync()
        assert world.a.get(world.a.find("a1@example.com")[0])["optout"] is True
    else:
        world.a.edit(created_in_a, optout=True)
        await world.sync()
        assert world.b.get(world.b.find("b1@example.com")[0])["OptOut"] is True
