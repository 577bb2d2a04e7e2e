"""Matching by identity, inclusion lists and filters."""

from __future__ import annotations

from datetime import timedelta

from datasync.api.models import SyncResult
from tests.engine.world import World


async def test_contact_without_email_is_skipped_and_stays_excluded() -> None:
    world = World()
    world.a.add(firstname="Nomail", lastname="Person")
    world.a.add(email="ann@example.com", firstname="Ann", lastname="Lee")

    summary = await world.sync()

    assert summary.skipped == {"MissingIdentity": 1}
    assert summary.records.toDestination.skipped == 1
    assert summary.health.excluded == {"MissingIdentity": 1}
    assert summary.result == SyncResult.SUCCEEDED
    assert [s.reason for s in summary.failures.samples] == ["MissingIdentity"]
    assert len(world.b.records) == 1


async def test_duplicates_on_one_side_the_most_recent_is_the_match() -> None:
    world = World()
    older = world.a.add(email="dup@example.com", firstname="Old", lastname="X")
    newer = world.a.add(email="DUP@example.com", firstname="New", lastname="X")

    summary = await world.sync()

    assert summary.skipped == {"DuplicateIdentity": 1}
    (only,) = world.b.records.values()
    assert only.fields["FirstName"] == "New"
    samples = [(s.recordId, s.reason) for s in summary.failures.samples]
    assert samples == [(older, "DuplicateIdentity")]
    pairs = world.store.pairs_for(world.a_side(), [newer, older])
    assert set(pairs) == {newer}


async def test_a_later_duplicate_takes_over_the_match_when_more_recent() -> None:
    world = World()
    first = world.a.add(email="dup@example.com", firstname="First", lastname="X")
    await world.sync()
    second = world.a.add(email="dup@example.com", firstname="Second", lastname="X")

    summary = await world.sync()

    assert len(world.b.records) == 1
    (only,) = world.b.records.values()
    assert only.fields["FirstName"] == "Second"
    assert summary.skipped.get("DuplicateIdentity") == 1
    assert set(world.store.pairs_for(world.a_side(), [first, second])) == {second}
    assert world.store.health().excluded == {"DuplicateIdentity": 1}


async def test_inclusion_list_only_members_leave_their_app() -> None:
    world = World(inclusionList={"app": "source", "list": "newsletter"})
    member = world.a.add(email="in@example.com", firstname="In", lastname="L")
    outsider = world.a.add(email="out@example.com", firstname="Out", lastname="L")
    world.a.lists["newsletter"] = {member}
    incoming = world.b.add(Email="new@example.com", FirstName="New", LastName="B")

    summary = await world.sync()

    assert set(world.b.by_identity()) == {"in@example.com", "new@example.com"}
    # Records entering the list's app from the other side are created (not added to it).
    assert "new@example.com" in world.a.by_identity()
    assert summary.skipped == {"NotInList": 1}
    assert summary.health.excluded == {"NotInList": 1}
    # The record created from b is not a list member: from now on its own edits stay in a.
    created_in_a = world.a.find("new@example.com")[0]
    world.a.edit(created_in_a, firstname="Local")
    world.b.edit(incoming, LastName="Remote")
    summary = await world.sync()
    assert world.b.get(incoming)["FirstName"] == "New"
    assert world.a.get(created_in_a)["lastname"] == "Remote"
    assert summary.health.excluded == {"NotInList": 2}

    # Entering the list, without any edit: synced on the next run.
    world.a.lists["newsletter"].add(outsider)
    await world.sync()
    assert "out@example.com" in world.b.by_identity()

    # Leaving the list: still in sync while both sides agree; then its edits stay home
    # (excluded while they differ), and nothing is deleted over there.
    world.a.lists["newsletter"].discard(member)
    summary = await world.sync()
    assert summary.health.excluded == {"NotInList": 1}  # the record created from b
    world.a.edit(member, firstname="Changed")
    summary = await world.sync()
    assert world.b.by_identity()["in@example.com"]["FirstName"] == "In"
    assert summary.health.excluded == {"NotInList": 2}
    # Edits made on the other side still flow into it.
    (b_id,) = world.b.find("in@example.com")
    world.b.edit(b_id, LastName="FromB")
    await world.sync()
    assert world.a.get(member)["lastname"] == "FromB"
    assert world.a.get(member)["firstname"] == "Changed"


async def test_opted_out_contacts_are_filtered_with_their_reason() -> None:
    world = World(
        filters=[
            {
                "app": "source",
                "field": "optout",
                "operator": "NotEquals",
                "values": ["true"],
                "reason": "OptedOut",
            }
        ]
    )
    world.a.add(email="yes@example.com", firstname="Y", lastname="L", optout=False)
    world.a.add(email="no@example.com", firstname="N", lastname="L", optout=True)
    world.a.add(email="unset@example.com", firstname="U", lastname="L")

    summary = await world.sync()

    assert set(world.b.by_identity()) == {"yes@example.com", "unset@example.com"}
    assert summary.skipped == {"OptedOut": 1}
    assert summary.health.excluded == {"OptedOut": 1}
    assert summary.result == SyncResult.SUCCEEDED


async def test_an_out_of_scope_record_with_a_counterpart_is_skipped_once_per_run() -> None:
    optout_filter = {
        "app": "source",
        "field": "optout",
        "operator": "NotEquals",
        "values": ["true"],
        "reason": "OptedOut",
    }
    world = World(inclusionList={"app": "source", "list": "newsletter"}, filters=[optout_filter])
    member = world.a.add(email="in@example.com", firstname="In", lastname="L")
    world.a.add(email="out@example.com", firstname="Out", lastname="L")
    opted = world.a.add(email="opted@example.com", firstname="Opt", lastname="L", optout=True)
    world.a.lists["newsletter"] = {member, opted}
    # Both out-of-scope records have a counterpart: the b pass meets them again.
    world.b.add(Email="out@example.com", FirstName="OutB", LastName="B")
    world.b.add(Email="opted@example.com", FirstName="OptB", LastName="B")

    summary = await world.sync()

    assert summary.skipped == {"NotInList": 1, "OptedOut": 1}
    assert summary.records.toDestination.skipped == 2
    assert summary.records.toSource.skipped == 0
    assert summary.health.excluded == {"NotInList": 1, "OptedOut": 1}


async def test_a_run_without_edits_leaves_health_as_it_was_with_an_inclusion_list() -> None:
    world = World(
        inclusionList={"app": "source", "list": "newsletter"},
        systemOfRecord="destination",
    )
    world.a.add(email="out@example.com", firstname="Out", lastname="L")
    # Older than the re-read overlap: a never-synced outsider read again would be skipped
    # again (rule c), which is not what this test is about.
    world.clock.now += timedelta(hours=1)
    member = world.a.add(email="in@example.com", firstname="In", lastname="L")
    world.a.lists["newsletter"] = {member}
    for n in range(3):
        world.b.add(Email=f"b{n}@example.com", FirstName=f"B{n}", LastName="B")

    first = await world.sync()

    # The three records created in a from b are not list members, but the two sides agree.
    assert first.records.toSource.created == 3
    assert first.skipped == {"NotInList": 1}
    assert first.health.inSync == 4
    assert first.health.excluded == {"NotInList": 1}

    writes = world.writes()
    second = await world.sync()

    # The engine's own writes read back from a are unchanged, not skipped.
    assert second.skipped == {}
    assert second.health == first.health
    assert world.writes() == writes
    assert second.records.toDestination.updated == second.records.toSource.updated == 0

    # A person edits a created-by-sync record in a: the change stays in a.
    (created,) = world.a.find("b0@example.com")
    world.a.edit(created, firstname="Local")
    third = await world.sync()
    assert third.skipped == {"NotInList": 1}
    assert world.b.by_identity()["b0@example.com"]["FirstName"] == "B0"
    assert third.health.excluded == {"NotInList": 2}
    assert third.health.inSync == 3

    # Edits made in b still reach it, and the local edit still stays home.
    (b_id,) = world.b.find("b0@example.com")
    world.b.edit(b_id, LastName="Remote")
    fourth = await world.sync()
    assert world.a.get(created)["lastname"] == "Remote"
    assert world.a.get(created)["firstname"] == "Local"
    assert world.b.get(b_id)["FirstName"] == "B0"
    assert fourth.health.excluded == {"NotInList": 2}

    # Once the two sides agree again (the local edit undone), the pair is in sync again.
    world.a.edit(created, firstname="B0")
    fifth = await world.sync()
    assert fifth.health.excluded == {"NotInList": 1}
    assert fifth.health.inSync == 4
    assert fifth.skipped == {}
