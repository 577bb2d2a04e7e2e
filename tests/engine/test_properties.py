"""Property-based tests: random interleavings of edits on both sides and sync runs."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.engine.values import canonical
from tests.engine.memory import Clock, Killed
from tests.engine.world import World

EMAILS = [f"person{i}@example.com" for i in range(5)]
# a field name -> b field name (the default mappings between the two memory styles)
FIELDS = {"firstname": "FirstName", "lastname": "LastName", "company": "Company"}
VALUES = st.sampled_from(["", "Ann", "Bob", "Cy", "Dee", "Eve"])
NAMES = st.sampled_from(["Lee", "Ray", "Kim"])  # lastname: b requires one on create

add = st.tuples(
    st.just("add"),
    st.sampled_from("ab"),
    st.integers(0, len(EMAILS) - 1),
    st.fixed_dictionaries({"firstname": VALUES, "lastname": NAMES, "company": VALUES}),
)
edit = st.one_of(
    st.tuples(
        st.just("edit"),
        st.sampled_from("ab"),
        st.integers(0, len(EMAILS) - 1),
        st.sampled_from(["company", "firstname"]),
        VALUES,
    ),
    st.tuples(
        st.just("edit"),
        st.sampled_from("ab"),
        st.integers(0, len(EMAILS) - 1),
        st.just("lastname"),
        NAMES,
    ),
)
sync = st.tuples(st.just("sync"), st.one_of(st.none(), st.integers(1, 6)), st.booleans())
operations = st.lists(st.one_of(add, edit, sync), min_size=1, max_size=25)
options = st.fixed_dictionaries(
    {
        "systemOfRecord": st.sampled_from(["source", "destination"]),
        "conflictResolution": st.sampled_from(["MostRecent", "SystemOfRecord"]),
        "field_timestamps": st.booleans(),
        "max_batch_size": st.integers(1, 4),
        "page_size": st.integers(1, 5),
        # 0: every change happens at the same instant, so MostRecent always ties
        "clock_step": st.sampled_from([0, 60]),
    }
)


def _app(world: World, side: str) -> Any:
    return world.a if side == "a" else world.b


def _apply(world: World, operation: tuple[Any, ...]) -> None:
    kind, side = operation[0], operation[1]
    app = _app(world, side)
    email = EMAILS[operation[2]]
    existing = app.find(email)
    if kind == "add":
        values = operation[3]
        if side == "b":
            values = {FIELDS[name]: value for name, value in values.items()}
        if existing:
            app.edit(existing[0], **values)
        else:
            app.add(**{app.identity_field: email}, **values)
    elif existing:
        name = operation[3] if side == "a" else FIELDS[operation[3]]
        app.edit(existing[0], **{name: operation[4]})


def _normalized(world: World) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    a = {
        email: {name: canonical(fields.get(name), "string") for name in FIELDS}
        for email, fields in world.a.by_identity().items()
    }
    b = {
        email: {name: canonical(fields.get(FIELDS[name]), "string") for name in FIELDS}
        for email, fields in world.b.by_identity().items()
    }
    return a, b


def _check_agreement(world: World) -> None:
    a, b = _normalized(world)  # by_identity() asserts there is no duplicate identity
    assert set(a) == set(b)
    for email in a:
        for name in FIELDS:
            left, right = a[email][name], b[email][name]
            # Equal, or one side blank: a blank never erases a value.
            assert left == right or "" in (left, right), (email, name)
    assert world.a.blank_erasures == world.b.blank_erasures == 0


async def _run(world: World, operation: tuple[Any, ...], crash: bool, two_way: bool = True) -> None:
    kill_at, before_apply = operation[1], operation[2]
    if crash and kill_at is not None:
        world.kill.at, world.kill.before_apply = world.kill.calls + kill_at, before_apply
        with contextlib.suppress(Killed):
            await world.sync()
        world.kill.at = None
    summary = await world.sync()
    if two_way:
        _check_agreement(world)
    writes = world.writes()
    quiet = await world.sync()
    assert world.writes() == writes, "a run with no edits wrote something"
    assert quiet.failures.total == 0
    assert quiet.health == summary.health, "a run with no edits changed health"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations=operations, options=options)
def test_random_edits_and_runs_keep_the_apps_in_step(
    operations: list[tuple[Any, ...]], options: dict[str, Any]
) -> None:
    async def scenario() -> None:
        step = timedelta(seconds=options.pop("clock_step"))
        reference = World(clock=Clock(step), **options)
        crashed = World(clock=Clock(step), **options)
        for operation in [*operations, ("sync", None, False)]:
            for world in (reference, crashed):
                if operation[0] == "sync":
                    await _run(world, operation, crash=world is crashed)
                else:
                    _apply(world, operation)
        # A run killed at any point and run again ends where an uninterrupted run ends.
        assert _normalized(crashed) == _normalized(reference)

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None)
@given(
    source=st.fixed_dictionaries({name: VALUES for name in FIELDS}),
    destination=st.fixed_dictionaries({name: VALUES for name in FIELDS}),
    system=st.sampled_from(["source", "destination"]),
)
def test_first_sync_the_system_of_record_wins_except_where_blank(
    source: dict[str, str], destination: dict[str, str], system: str
) -> None:
    async def scenario() -> None:
        world = World(systemOfRecord=system)
        a_id = world.a.add(email=EMAILS[0], **source)
        b_id = world.b.add(Email=EMAILS[0], **{FIELDS[k]: v for k, v in destination.items()})
        await world.sync()
        winner, loser = (source, destination) if system == "source" else (destination, source)
        for name, b_name in FIELDS.items():
            expected = winner[name] or loser[name]
            assert canonical(world.a.get(a_id).get(name), "string") == expected
            assert canonical(world.b.get(b_id).get(b_name), "string") == expected

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=operations, batch=st.integers(1, 4), field_timestamps=st.booleans())
def test_one_way_source_changes_land_and_nothing_flows_back(
    operations: list[tuple[Any, ...]], batch: int, field_timestamps: bool
) -> None:
    async def scenario() -> None:
        world = World(
            direction="OneWay",
            max_batch_size=batch,
            page_size=batch + 1,
            field_timestamps=field_timestamps,
        )
        synced: dict[str, dict[str, str]] = {}  # a's values as of the last run
        for operation in [*operations, ("sync", None, False)]:
            if operation[0] != "sync":
                _apply(world, operation)
                continue
            await _run(world, operation, crash=True, two_way=False)
            assert world.a.write_calls == 0, "a OneWay connection wrote to its source"
            a, b = _normalized(world)
            assert set(a) <= set(b)
            for email, values in a.items():
                for name, value in values.items():
                    # A value changed in a since the last run (not a blank) lands in b.
                    if value and value != synced.get(email, {}).get(name):
                        assert b[email][name] == value, (email, name)
            synced = a

    asyncio.run(scenario())


person = st.fixed_dictionaries(
    {
        "in_a": st.booleans(),
        "in_b": st.booleans(),
        "listed": st.booleans(),
        "a_optout": st.sampled_from([None, False, True]),
        "b_optout": st.sampled_from([None, False, True]),
    }
)
scope_edit = st.tuples(
    st.sampled_from(["list", "unlist", "optout_a", "optout_b", "name_a", "name_b"]),
    st.integers(0, len(EMAILS) - 1),
    st.booleans(),
)


def _optout_filter(app: str, field: str) -> dict[str, Any]:
    return {
        "app": app,
        "field": field,
        "operator": "NotEquals",
        "values": ["true"],
        "reason": "OptedOut",
    }


def _out_of_scope(world: World, filtered: set[str]) -> set[tuple[str, str]]:
    """Records that may not leave their app: a's outside the list, opted-out ones."""
    members = world.a.lists["newsletter"]
    out = set()
    for record_id, stored in world.a.records.items():
        opted = "source" in filtered and stored.fields.get("optout") is True
        if record_id not in members or opted:
            out.add(("a", record_id))
    for record_id, stored in world.b.records.items():
        if "destination" in filtered and stored.fields.get("OptOut") is True:
            out.add(("b", record_id))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    people=st.lists(person, min_size=len(EMAILS), max_size=len(EMAILS)),
    filtered=st.sets(st.sampled_from(["source", "destination"])),
    edits=st.lists(st.lists(scope_edit, max_size=4), max_size=3),
    system=st.sampled_from(["source", "destination"]),
    batch=st.integers(1, 4),
)
def test_each_skipped_record_is_counted_once_and_no_opt_out_is_cleared(
    people: list[dict[str, Any]],
    filtered: set[str],
    edits: list[list[tuple[str, int, bool]]],
    system: str,
    batch: int,
) -> None:
    async def scenario() -> None:
        filters = [
            _optout_filter(app, "optout" if app == "source" else "OptOut")
            for app in sorted(filtered)
        ]
        world = World(
            inclusionList={"app": "source", "list": "newsletter"},
            filters=filters,
            systemOfRecord=system,
            max_batch_size=batch,
            page_size=batch + 1,
        )
        world.a.lists["newsletter"] = set()
        for email, who in zip(EMAILS, people, strict=True):
            if who["in_a"]:
                record_id = world.a.add(email=email, lastname="A", optout=who["a_optout"])
                if who["listed"]:
                    world.a.lists["newsletter"].add(record_id)
            if who["in_b"]:
                world.b.add(Email=email, LastName="B", OptOut=who["b_optout"])

        # First sync: every record is read. An out-of-scope record with no counterpart is
        # skipped exactly once; one matched to an agreeing counterpart may count as
        # unchanged instead (lists and filters hold back changes, not agreement).
        before = _out_of_scope(world, filtered)
        unmatched = _without_counterpart(world, before)
        opted = _opted_out(world)
        summary = await world.sync()
        assert len(unmatched) <= sum(summary.skipped.values()) <= len(before)
        _check_consistent(summary)
        assert opted <= _opted_out(world), "the sync cleared an opt-out"
        await _check_quiet_run(world, summary)

        for round_of_edits in edits:
            for kind, index, flag in round_of_edits:
                _edit_scope(world, kind, EMAILS[index], flag)
            before = _out_of_scope(world, filtered)
            opted = _opted_out(world)
            summary = await world.sync()
            # Only out-of-scope records are skipped here, each at most once.
            assert sum(summary.skipped.values()) <= len(before | _out_of_scope(world, filtered))
            _check_consistent(summary)
            assert opted <= _opted_out(world), "the sync cleared an opt-out"
            await _check_quiet_run(world, summary)

    asyncio.run(scenario())


def _without_counterpart(world: World, records: set[tuple[str, str]]) -> set[tuple[str, str]]:
    emails = {"a": set(world.b.by_identity()), "b": set(world.a.by_identity())}
    found = set()
    for side, record_id in records:
        store = world.a if side == "a" else world.b
        field = "email" if side == "a" else "Email"
        email = str(store.records[record_id].fields.get(field) or "").strip().lower()
        if email not in emails[side]:
            found.add((side, record_id))
    return found


def _opted_out(world: World) -> set[tuple[str, str]]:
    return {("a", i) for i, r in world.a.records.items() if r.fields.get("optout") is True} | {
        ("b", i) for i, r in world.b.records.items() if r.fields.get("OptOut") is True
    }


async def _check_quiet_run(world: World, previous: Any) -> None:
    """A run with no edits (the engine's own writes read back included) writes nothing
    and leaves health as it was: lists and filters hold back changes, not agreement."""
    writes = world.writes()
    quiet = await world.sync()
    assert world.writes() == writes, "a run with no edits wrote something"
    assert quiet.health == previous.health, "a run with no edits changed health"


def _check_consistent(summary: Any) -> None:
    records = summary.records
    assert sum(summary.skipped.values()) == records.toDestination.skipped + records.toSource.skipped
    assert summary.failures.total == 0


def _edit_scope(world: World, kind: str, email: str, flag: bool) -> None:
    app = world.a if kind in ("list", "unlist", "optout_a", "name_a") else world.b
    found = app.find(email)
    if not found:
        return
    record_id = found[0]
    if kind == "list":
        world.a.lists["newsletter"].add(record_id)
    elif kind == "unlist":
        world.a.lists["newsletter"].discard(record_id)
    elif kind == "optout_a":
        app.edit(record_id, optout=flag)
    elif kind == "optout_b":
        app.edit(record_id, OptOut=flag)
    else:
        app.edit(record_id, **{"lastname" if app is world.a else "LastName": f"N{flag}"})
