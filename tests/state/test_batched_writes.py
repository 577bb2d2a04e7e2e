"""Batched state writes end where writing one pair at a time ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.api.models import Side
from datasync.state import Pair, open_store
from datasync.state.sql import _UPSERT_PAIR, SqlStateStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IDS = st.sampled_from([f"id{n}" for n in range(8)])
PAIRS = st.lists(
    st.builds(
        lambda source, destination, value, minute: Pair(
            source, destination, {"email=>email": value}, T0 + timedelta(minutes=minute)
        ),
        IDS,
        IDS,
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 3),
    ),
    max_size=6,
)


def one_pair_at_a_time(store: SqlStateStore, pairs: list[Pair]) -> None:
    """The store's rule, statement by statement: a pair replaces any other pair holding
    either of its ids."""
    with store.batch():
        for pair in pairs:
            store._run(
                "DELETE FROM datasync_pairs WHERE connection = ? AND destination_id = ? "
                "AND source_id <> ?",
                (store.connection, pair.destination_id, pair.source_id),
            )
            store._run(
                _UPSERT_PAIR,
                (
                    store.connection,
                    pair.source_id,
                    pair.destination_id,
                    json.dumps(pair.fingerprint, sort_keys=True),
                    pair.synced_at.isoformat() if pair.synced_at else None,
                ),
            )


def contents(store: SqlStateStore) -> list[tuple[str, str, Any, str]]:
    """The stored rows, each fingerprint as the JSON value it spells (not its spacing)."""
    rows = store._run(
        "SELECT source_id, destination_id, fingerprint, synced_at FROM datasync_pairs "
        "ORDER BY source_id"
    ).fetchall()
    return [
        (source, destination, json.loads(print_), at) for source, destination, print_, at in rows
    ]


@settings(max_examples=300, deadline=None)
@given(before=PAIRS, batches=st.lists(PAIRS, min_size=1, max_size=3))
def test_save_pairs_matches_one_pair_at_a_time(
    before: list[Pair], batches: list[list[Pair]]
) -> None:
    batched = open_store("sqlite:///:memory:", "ns/a")
    reference = open_store("sqlite:///:memory:", "ns/a")
    assert isinstance(batched, SqlStateStore) and isinstance(reference, SqlStateStore)
    one_pair_at_a_time(batched, before)
    one_pair_at_a_time(reference, before)
    for batch in batches:
        batched.save_pairs(batch)
        one_pair_at_a_time(reference, batch)
        assert contents(batched) == contents(reference)
    found = batched.pairs_for(Side.SOURCE, [f"id{n}" for n in range(8)])
    for source_id, pair in found.items():
        assert batched.pairs_for(Side.DESTINATION, [pair.destination_id]) == {
            pair.destination_id: pair
        }, source_id


def test_mark_excluded_and_list_mark_in_batches() -> None:
    store = open_store("sqlite:///:memory:", "ns/a")
    store.mark_failing(Side.SOURCE, "r1", "InvalidEmail", None, T0)
    store.mark_excluded(Side.SOURCE, {f"r{n}": "NotInList" for n in range(1, 1200)})
    health = store.health()
    assert health.excluded == {"NotInList": 1199} and health.failing == {}
    store.list_mark(Side.SOURCE, [f"r{n}" for n in range(1500)], "g1")
    store.list_mark(Side.SOURCE, [f"r{n}" for n in range(10)], "g2")
    left = store.list_sweep(Side.SOURCE, "g2")
    assert sorted(left) == sorted(f"r{n}" for n in range(10, 1500))
    assert store.list_known(Side.SOURCE, [f"r{n}" for n in range(1500)]) == {
        f"r{n}" for n in range(10)
    }
