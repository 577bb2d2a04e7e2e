"""Validation against the destination's schema, failures, health and retries."""

from __future__ import annotations

import dataclasses

from datasync.api.models import SyncResult
from tests.engine.world import World


async def test_invalid_email_fails_the_record_and_is_retried_until_fixed() -> None:
    world = World()
    bad = world.a.add(email="not-an-email", firstname="Bad", lastname="Mail")
    world.a.add(email="ok@example.com", firstname="Ok", lastname="Mail")

    first = await world.sync()
    assert first.result == SyncResult.PARTIALLY_SUCCEEDED
    assert first.failures.byReason == {"InvalidEmail": 1}
    sample = first.failures.samples[0]
    assert (sample.app, sample.recordId, sample.field) == ("source", bad, "Email")
    assert "not-an-email" not in sample.message
    assert first.health.failing == {"InvalidEmail": 1}
    assert first.health.inSync == 1

    second = await world.sync()  # no edit: retried anyway
    assert second.failures.byReason == {"InvalidEmail": 1}
    (health,) = world.store.health_for(World.a_side(), [bad]).values()
    assert health.attempts == 2 and health.first_failure_at is not None
    assert health.last_failure_at is not None and health.last_failure_at >= health.first_failure_at

    world.a.edit(bad, email="fixed@example.com")
    third = await world.sync()
    assert third.result == SyncResult.SUCCEEDED
    assert third.health.failing == {} and third.health.inSync == 2
    assert "fixed@example.com" in world.b.by_identity()


async def test_destination_mandatory_field_missing_fails_the_record() -> None:
    world = World()
    world.a.add(email="nolast@example.com", firstname="No")

    summary = await world.sync()

    assert summary.failures.byReason == {"RequiredFieldMissing": 1}
    assert summary.failures.samples[0].field == "LastName"
    assert summary.records.toDestination.failed == 1
    assert world.b.records == {}


async def test_a_failing_optional_field_is_dropped_and_the_rest_syncs() -> None:
    world = World()
    a_id = world.a.add(email="long@example.com", firstname="Ann", lastname="Lee")
    await world.sync()
    world.a.edit(a_id, company="A company name far longer than twenty", firstname="Annie")

    summary = await world.sync()

    (b_id,) = world.b.find("long@example.com")
    assert world.b.get(b_id)["FirstName"] == "Annie"
    assert "Company" not in world.b.get(b_id)
    assert summary.failures.byReason == {"ValueTooLong": 1}
    assert summary.result == SyncResult.PARTIALLY_SUCCEEDED
    assert summary.health.failing == {"ValueTooLong": 1}
    world.a.edit(a_id, company="Short Co")
    fixed = await world.sync()
    assert world.b.get(b_id)["Company"] == "Short Co"
    assert fixed.health.failing == {} and fixed.result == SyncResult.SUCCEEDED


async def test_required_mapping_failure_fails_the_whole_record() -> None:
    world = World(
        mappings={"fields": [{"source": "company", "destination": "Company", "required": True}]}
    )
    world.a.add(email="c@example.com", firstname="C", lastname="L", company="x" * 30)

    summary = await world.sync()

    assert world.b.records == {}
    assert summary.failures.byReason == {"ValueTooLong": 1}
    assert summary.records.toDestination.failed == 1


async def test_required_mapping_without_a_value_is_not_created() -> None:
    world = World(
        mappings={"fields": [{"source": "company", "destination": "Company", "required": True}]}
    )
    world.a.add(email="none@example.com", firstname="N", lastname="V")
    existing = world.b.add(Email="both@example.com", FirstName="B", LastName="W", Company="Acme")
    world.a.add(email="both@example.com", firstname="B", lastname="W")

    summary = await world.sync()

    assert world.b.find("none@example.com") == []
    assert summary.failures.byReason == {"RequiredFieldMissing": 1}
    sample = summary.failures.samples[0]
    assert (sample.field, sample.app) == ("Company", "source")
    # An update never needs the value: a blank does not erase the destination's.
    assert world.b.get(existing)["Company"] == "Acme"


async def test_types_formats_options_and_read_only_fields() -> None:
    world = World(
        direction="OneWay",
        mappings={
            "fields": [
                {"source": "score", "destination": "Score"},
                {"source": "birthday", "destination": "Birthdate"},
                {"source": "stage", "destination": "Status", "values": {"customer": "Closed Won"}},
                {"source": "phone", "destination": "Phone"},
            ]
        },
    )
    good = world.a.add(
        email="g@example.com",
        lastname="G",
        score="42",
        birthday="2001-02-03T10:00:00Z",
        stage="customer",
        phone="+44 20 7946 0958",
    )
    world.a.add(
        email="b@example.com",
        lastname="B",
        score="many",
        birthday="someday",
        stage="lead",
        phone="call me",
    )

    summary = await world.sync()

    (g,) = world.b.find("g@example.com")
    assert world.b.get(g)["Score"] == 42
    assert world.b.get(g)["Birthdate"] == "2001-02-03"
    assert world.b.get(g)["Status"] == "Closed Won"
    (b,) = world.b.find("b@example.com")
    assert set(world.b.get(b)) == {"Email", "LastName"}
    # Counted per record: b failed 3 fields as InvalidFormat and 1 as InvalidOption.
    assert summary.failures.total == 1
    assert summary.failures.byReason == {"InvalidFormat": 1, "InvalidOption": 1}
    assert len(summary.failures.samples) == 4  # one sample per field, to see which
    assert all(s.recordId == b for s in summary.failures.samples)
    assert all(
        "many" not in s.message and "someday" not in s.message for s in summary.failures.samples
    )
    del good

    read_only = World(
        direction="OneWay",
        mappings={"fields": [{"source": "createdate", "destination": "CreatedDate"}]},
    )
    read_only.a.add(email="r@example.com", lastname="R", createdate="2020-01-01T00:00:00Z")
    summary = await read_only.sync()
    assert summary.failures.byReason == {"ReadOnlyField": 1}
    assert "r@example.com" in read_only.b.by_identity()


async def test_app_rejections_pass_through_with_code_and_without_values() -> None:
    world = World()
    world.b.reject_values["LastName"] = {"Forbidden"}
    world.b.refuse_fields["Phone"] = "PHONE_BLOCKED"
    world.a.add(email="x@example.com", firstname="X", lastname="Forbidden")
    world.a.add(email="y@example.com", firstname="Y", lastname="Fine", phone="+1 555 0100")

    summary = await world.sync()

    assert summary.failures.byReason == {"AppRejected": 2}
    codes = {s.code for s in summary.failures.samples}
    assert codes == {"INVALID", "PHONE_BLOCKED"}
    for sample in summary.failures.samples:
        assert "Forbidden" not in sample.message and "555" not in sample.message
    assert "y@example.com" in world.b.by_identity()


async def test_unknown_mapped_field_fails_the_run_with_a_clear_message() -> None:
    world = World(mappings={"fields": [{"source": "nosuch", "destination": "Company"}]})
    world.a.add(email="z@example.com", lastname="Z")

    summary = await world.sync()

    assert summary.result == SyncResult.FAILED
    assert summary.error is not None
    assert "'nosuch'" in summary.error and "spec.mappings.fields[0].source" in summary.error
    assert world.writes() == 0


async def test_one_way_failing_destination_writes_are_retried_without_edits() -> None:
    world = World(direction="OneWay")
    a_id = world.a.add(email="o@example.com", firstname="O", lastname="W")
    await world.sync()
    world.a.edit(a_id, company="A company name far longer than twenty")
    first = await world.sync()
    assert first.failures.byReason == {"ValueTooLong": 1}

    second = await world.sync()  # no edit anywhere: the failing record is retried
    assert second.failures.byReason == {"ValueTooLong": 1}
    (b_id,) = world.b.find("o@example.com")
    (health,) = world.store.health_for(World.b_side(), [b_id]).values()
    assert health.attempts == 2

    world.b.schema["Company"] = dataclasses.replace(world.b.schema["Company"], max_length=100)
    third = await world.sync()
    assert third.result == SyncResult.SUCCEEDED and third.health.failing == {}
    assert world.b.get(b_id)["Company"] == "A company name far longer than twenty"


async def test_a_record_failing_a_local_check_is_not_reread_until_something_changes() -> None:
    """A record that failed a local check (its value against the spec and the target's
    schema) fails it again until the record, the spec or the schema changes: retries
    report it without reading it; a schema change or an edit reads it again."""
    world = World()
    bad = world.a.add(email="not-an-email", firstname="Bad", lastname="Mail")
    ok = world.a.add(email="ok@example.com", firstname="Ok", lastname="Mail")
    assert (await world.sync()).health.failing == {"InvalidEmail": 1}
    for n in range(4):  # move the source's watermark past the bad record and the overlap
        world.a.edit(ok, company=f"C{n}")
    await world.sync()
    (before,) = world.store.health_for(World.a_side(), [bad]).values()
    world.a.read_ids.clear()

    quiet = await world.sync()

    assert bad not in world.a.read_ids  # not read again ...
    assert quiet.failures.byReason == {"InvalidEmail": 1}  # ... but still reported
    assert quiet.failures.samples[0].recordId == bad
    assert quiet.records.toDestination.failed == 1
    assert quiet.health.failing == {"InvalidEmail": 1}
    (after,) = world.store.health_for(World.a_side(), [bad]).values()
    assert after == before  # attempts and last failure unchanged: nothing was tried

    # The destination's schema changes (a longer Company): the check is tried again.
    company = world.b.schema["Company"]
    world.b.schema["Company"] = dataclasses.replace(company, max_length=40)
    retried = await world.sync()
    assert bad in world.a.read_ids
    assert retried.health.failing == {"InvalidEmail": 1}
    (again,) = world.store.health_for(World.a_side(), [bad]).values()
    assert again.attempts == before.attempts + 1

    world.a.read_ids.clear()
    await world.sync()
    assert bad not in world.a.read_ids  # settled again under the new schema

    world.a.edit(bad, email="fixed@example.com")  # an edit is read as usual
    fixed = await world.sync()
    assert fixed.health.failing == {} and "fixed@example.com" in world.b.by_identity()


async def test_a_spec_change_retries_records_that_failed_a_local_check() -> None:
    world = World()
    bad = world.a.add(email="not-an-email", firstname="Bad", lastname="Mail")
    ok = world.a.add(email="ok@example.com", firstname="Ok", lastname="Mail")
    await world.sync()
    for n in range(4):
        world.a.edit(ok, company=f"C{n}")
    await world.sync()
    world.a.read_ids.clear()
    await world.sync()
    assert bad not in world.a.read_ids

    world.spec = world.spec.model_copy(update={"schedule": "*/5 * * * *"})
    await world.sync()
    assert bad in world.a.read_ids
