"""The inclusion list's refresh: incremental through a join-order feed, proven by the list's
size, with the whole list read whenever the proof fails (see _Run.refresh_list)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.api.models import Side
from datasync.state.base import ListCursor
from tests.engine.world import World

LIST = {"app": "source", "list": "newsletter"}


def full_reads(world: World) -> int:
    return world.a.calls.get("iter_list_members", 0)


def mirror(world: World, ids: list[str]) -> set[str]:
    return world.store.list_known(Side.SOURCE, ids)


async def started(count: int, **options: object) -> tuple[World, list[str]]:
    world = World(inclusionList=LIST, page_size=3, **options)  # type: ignore[arg-type]
    ids = [
        world.a.add(email=f"p{i}@example.com", firstname=f"P{i}", lastname="L")
        for i in range(count)
    ]
    world.a.lists["newsletter"] = set(ids[: count // 2])
    await world.sync()
    return world, ids


async def test_the_first_sync_reads_the_whole_list_then_runs_read_only_the_feed() -> None:
    world, ids = await started(10)
    assert full_reads(world) == 2  # 5 members, pages of 3

    summary = await world.sync()

    assert full_reads(world) == 2
    assert summary.result == "Succeeded"
    assert mirror(world, ids) == set(ids[:5])
    assert world.store.list_count(Side.SOURCE) == 5


async def test_a_member_who_joins_is_synced_without_an_edit_or_a_full_read() -> None:
    world, ids = await started(6)
    assert "p4@example.com" not in world.b.by_identity()

    world.a.lists["newsletter"].add(ids[4])
    await world.sync()

    assert full_reads(world) == 1
    assert world.b.by_identity()["p4@example.com"]["FirstName"] == "P4"
    assert mirror(world, ids) == {*ids[:3], ids[4]}


async def test_a_member_who_leaves_is_noticed_by_a_full_read_and_its_edits_stay_home() -> None:
    world, ids = await started(6)
    reads = full_reads(world)

    world.a.lists["newsletter"].discard(ids[0])
    summary = await world.sync()

    assert full_reads(world) > reads  # the size disagreed: the whole list was read
    assert mirror(world, ids) == set(ids[1:3])
    assert summary.health.excluded == {"NotInList": 3}  # unchanged: leaving changes nothing
    world.a.edit(ids[0], firstname="Changed")
    summary = await world.sync()
    assert world.b.by_identity()["p0@example.com"]["FirstName"] == "P0"
    assert summary.health.excluded == {"NotInList": 4}
    assert world.store.health_for(Side.SOURCE, [ids[0]])[ids[0]].reason == "NotInList"


async def test_leaving_and_joining_again_syncs_what_changed_meanwhile() -> None:
    world, ids = await started(6)
    world.a.lists["newsletter"].discard(ids[1])
    await world.sync()
    world.a.edit(ids[1], firstname="WhileOut")
    await world.sync()
    assert world.b.by_identity()["p1@example.com"]["FirstName"] == "P1"
    reads = full_reads(world)

    world.a.lists["newsletter"].add(ids[1])  # not edited since: entering is what syncs it
    await world.sync()

    assert full_reads(world) == reads
    assert world.b.by_identity()["p1@example.com"]["FirstName"] == "WhileOut"
    assert mirror(world, ids) == set(ids[:3])


async def test_leaving_and_joining_again_between_two_runs_changes_nothing_but_the_edit() -> None:
    world, ids = await started(6)
    reads = full_reads(world)

    world.a.lists["newsletter"].discard(ids[2])
    world.a.edit(ids[2], firstname="Between")
    world.a.lists["newsletter"].add(ids[2])
    await world.sync()

    assert full_reads(world) == reads  # a new joining time, already mirrored; size agrees
    assert world.b.by_identity()["p2@example.com"]["FirstName"] == "Between"
    assert mirror(world, ids) == set(ids[:3])


async def test_one_leaving_while_another_joins_is_caught_by_the_size() -> None:
    world, ids = await started(6)
    reads = full_reads(world)

    world.a.lists["newsletter"].discard(ids[0])
    world.a.lists["newsletter"].add(ids[5])
    await world.sync()

    assert full_reads(world) > reads
    assert mirror(world, ids) == {ids[1], ids[2], ids[5]}
    assert "p5@example.com" in world.b.by_identity()


async def test_without_a_feed_the_whole_list_is_read_every_run() -> None:
    world, ids = await started(6, join_order=False)
    reads = full_reads(world)
    world.a.lists["newsletter"].add(ids[4])

    await world.sync()

    assert full_reads(world) == reads + 2
    assert "list_changes" not in world.a.calls
    assert "p4@example.com" in world.b.by_identity()
    assert world.store.get_list_cursor(Side.SOURCE) is None


async def test_the_whole_list_is_read_again_after_a_day_or_for_another_list() -> None:
    world, _ids = await started(6)
    cursor = world.store.get_list_cursor(Side.SOURCE)
    assert cursor is not None and cursor.list_ref == "newsletter"
    reads = full_reads(world)

    old = ListCursor(cursor.list_ref, cursor.joined_at, cursor.full_read_at - timedelta(days=1))
    world.store.set_list_cursor(Side.SOURCE, old)
    await world.sync()
    assert full_reads(world) == reads + 1
    renewed = world.store.get_list_cursor(Side.SOURCE)
    assert renewed is not None and renewed.full_read_at > old.full_read_at

    other = ListCursor("another list", cursor.joined_at, renewed.full_read_at)
    world.store.set_list_cursor(Side.SOURCE, other)
    await world.sync()
    assert full_reads(world) == reads + 2


async def test_a_dry_run_moves_neither_the_mirror_nor_the_cursor() -> None:
    world, ids = await started(6)
    cursor = world.store.get_list_cursor(Side.SOURCE)
    world.a.lists["newsletter"].add(ids[4])

    await world.sync(dry_run=True)

    assert world.store.get_list_cursor(Side.SOURCE) == cursor
    assert mirror(world, ids) == set(ids[:3])
    assert "p4@example.com" not in world.b.by_identity()
    await world.sync()
    assert "p4@example.com" in world.b.by_identity()


membership = st.tuples(st.sampled_from(["join", "leave", "edit", "sync"]), st.integers(0, 5))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(membership, max_size=30))
async def test_the_mirror_always_holds_exactly_the_members(steps: list[tuple[str, int]]) -> None:
    """Whatever joins, leaves and rejoins happen between runs, the mirror after a run is
    the list, and every member's latest edit has reached the other app."""
    world, ids = await started(6)
    for action, index in [*steps, ("sync", 0)]:
        record_id = ids[index]
        if action == "join":
            world.a.lists["newsletter"].add(record_id)
        elif action == "leave":
            world.a.lists["newsletter"].discard(record_id)
        elif action == "edit":
            world.a.edit(record_id, firstname=f"E{len(world.a.call_log)}")
        else:
            await world.sync()
            members = set(world.a.lists["newsletter"])
            assert mirror(world, ids) == members
            assert world.store.list_count(Side.SOURCE) == len(members)
            there = world.b.by_identity()
            for member in members:
                email = f"p{ids.index(member)}@example.com"
                assert there[email]["FirstName"] == world.a.get(member)["firstname"]


async def test_the_cursor_follows_the_apps_clock_when_nobody_joins() -> None:
    """Otherwise a list filled at once would be read back whole while its members' joining
    stayed within the overlap of the cursor."""
    world, ids = await started(6)
    for n in range(5):  # time passes in the app; nobody joins
        world.a.edit(ids[5], firstname=f"N{n}")

    await world.sync()

    cursor = world.store.get_list_cursor(Side.SOURCE)
    assert cursor is not None and cursor.joined_at == world.a.clock.now
