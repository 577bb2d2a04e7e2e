"""The state store, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from datasync_operator import runs

from datasync.api.models import Side, SyncResult
from datasync.state import HealthState, Pair, StateStore, StateStoreError, open_store
from datasync.state.sql import SCHEMA_VERSION
from tests.engine.world import World

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state/store.sqlite3"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    with open_store(store_url, "ns/one") as opened:
        yield opened


def test_watermarks_per_side(store: StateStore) -> None:
    assert store.get_watermark(Side.SOURCE) is None
    store.set_watermark(Side.SOURCE, T0)
    store.set_watermark(Side.DESTINATION, T0 + timedelta(seconds=5))
    store.set_watermark(Side.SOURCE, T0 + timedelta(minutes=1))
    assert store.get_watermark(Side.SOURCE) == T0 + timedelta(minutes=1)
    assert store.get_watermark(Side.DESTINATION) == T0 + timedelta(seconds=5)


def test_pairs_by_either_side_and_replacement(store: StateStore) -> None:
    store.save_pairs([Pair("s1", "d1", {"email=>Email": "abc"}, T0), Pair("s2", "d2", {}, T0)])
    assert store.pairs_for(Side.SOURCE, ["s1", "zz"])["s1"].destination_id == "d1"
    found = store.pairs_for(Side.DESTINATION, ["d1", "d2"])
    assert {p.source_id for p in found.values()} == {"s1", "s2"}
    assert found["d1"].fingerprint == {"email=>Email": "abc"}
    assert found["d1"].synced_at == T0
    # A new pair holding d1 replaces the old one; a pair is unique on both sides.
    store.save_pairs([Pair("s3", "d1", {}, T0)])
    assert store.pairs_for(Side.SOURCE, ["s1"]) == {}
    assert store.pairs_for(Side.DESTINATION, ["d1"])["d1"].source_id == "s3"
    store.delete_pairs(["s3"])
    assert store.count_pairs() == 1
    many = [f"id{i}" for i in range(1200)]  # more than one IN (...) chunk
    store.save_pairs([Pair(i, "x" + i) for i in many])
    assert len(store.pairs_for(Side.SOURCE, many)) == 1200


def test_health_states_attempts_and_totals(store: StateStore) -> None:
    store.save_pairs([Pair("s1", "d1"), Pair("s2", "d2"), Pair("s3", "d3")])
    store.mark_excluded(Side.SOURCE, {"s9": "MissingIdentity", "s2": "NotInList"})
    first = store.mark_failing(Side.DESTINATION, "d3", "InvalidEmail", None, T0)
    second = store.mark_failing(
        Side.DESTINATION, "d3", "AppRejected", "INVALID", T0 + timedelta(hours=1)
    )
    assert first.attempts == 1 and second.attempts == 2
    assert second.first_failure_at == T0 and second.last_failure_at == T0 + timedelta(hours=1)
    (row,) = store.health_for(Side.DESTINATION, ["d3"]).values()
    assert (row.state, row.reason, row.code, row.attempts) == (
        HealthState.FAILING,
        "AppRejected",
        "INVALID",
        2,
    )
    health = store.health()
    assert health.inSync == 1
    assert health.excluded == {"MissingIdentity": 1, "NotInList": 1}
    assert health.failing == {"AppRejected": 1}
    assert store.failing_ids(Side.DESTINATION, None, 10) == ["d3"]
    assert store.failing_ids(Side.DESTINATION, "d3", 10) == []
    store.clear_health(Side.DESTINATION, ["d3"])
    store.mark_excluded(Side.SOURCE, {"s2": "OptedOut"})
    health = store.health()
    assert health.inSync == 2 and health.failing == {}
    assert health.excluded == {"MissingIdentity": 1, "OptedOut": 1}
    # Failing again after an exclusion starts counting attempts afresh.
    assert store.mark_failing(Side.SOURCE, "s2", "RateLimited", None, T0).attempts == 1


def test_iter_failing_pages_in_id_order(store: StateStore) -> None:
    for i in range(7):
        store.mark_failing(Side.SOURCE, f"r{i}", "AppUnavailable", None, T0)
    pages = list(store.iter_failing(Side.SOURCE, 3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == sorted(f"r{i}" for i in range(7))


def test_list_membership_mark_and_sweep(store: StateStore) -> None:
    assert not store.list_has_members(Side.SOURCE)
    store.list_mark(Side.SOURCE, ["a", "b", "c"], "g1")
    assert store.list_known(Side.SOURCE, ["a", "z"]) == {"a"}
    store.list_mark(Side.SOURCE, ["a", "c", "d"], "g2")
    assert sorted(store.list_sweep(Side.SOURCE, "g2")) == ["b"]
    assert store.list_known(Side.SOURCE, ["a", "b", "c", "d"]) == {"a", "c", "d"}


def test_batch_commits_together_or_not_at_all(store_url: str) -> None:
    with open_store(store_url, "ns/tx") as store:
        with pytest.raises(RuntimeError), store.batch():
            store.save_pairs([Pair("s1", "d1")])
            store.set_watermark(Side.SOURCE, T0)
            raise RuntimeError("crash inside a batch")
        assert store.count_pairs() == 0 and store.get_watermark(Side.SOURCE) is None
        with store.batch():
            store.save_pairs([Pair("s1", "d1")])
    with open_store(store_url, "ns/tx") as reopened:
        assert reopened.count_pairs() == 1


def test_connections_are_isolated_and_schema_is_created_once(store_url: str) -> None:
    with open_store(store_url, "ns/one") as one, open_store(store_url, "ns/two") as two:
        one.save_pairs([Pair("s1", "d1")])
        one.set_watermark(Side.SOURCE, T0)
        two.mark_excluded(Side.SOURCE, {"x": "MissingIdentity"})
        assert two.count_pairs() == 0 and two.get_watermark(Side.SOURCE) is None
        assert one.health().excluded == {} and one.health().inSync == 1
    with open_store(store_url, "ns/one") as again:  # migrations are idempotent
        assert again.count_pairs() == 1
        assert again.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]


async def test_engine_runs_on_this_store(store_url: str) -> None:
    with open_store(store_url, "ns/engine") as store:
        world = World(store=store)
        world.a.add(email="ann@example.com", firstname="Ann", lastname="Lee")
        world.a.add(lastname="No email")
        summary = await world.sync()
        assert summary.health.inSync == 1
        assert summary.health.excluded == {"MissingIdentity": 1}
        assert store.get_watermark(Side.SOURCE) is not None
    with open_store(store_url, "ns/engine") as store:
        world.store = store
        writes = world.writes()
        await world.sync()
        assert world.writes() == writes


def test_bad_urls_say_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(StateStoreError, match=re.escape("sqlite:///abs/path.sqlite3")):
        open_store("mysql://x")
    with pytest.raises(StateStoreError, match="absolute path"):
        open_store("sqlite://relative.db")
    assert open_store(f"sqlite:///{tmp_path}/x.sqlite3").count_pairs() == 0
    assert open_store("sqlite:///:memory:").count_pairs() == 0


def test_unreachable_postgres_names_the_dsn_key_without_echoing_it() -> None:
    with pytest.raises(StateStoreError) as caught:
        open_store("postgresql://user:s3cret-pw@127.0.0.1:1/nodb?connect_timeout=2")
    assert "dsn" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_postgres_schema_is_versioned(postgres_dsn: str) -> None:
    open_store(postgres_dsn).close()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT version FROM datasync_schema ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


def _limit_pages(store: StateStore, pages: int) -> None:
    """SQLite's own size cap: past it, writes fail with SQLITE_FULL as on a full volume."""
    store._execute(f"PRAGMA max_page_count={pages}")  # type: ignore[attr-defined]


def test_a_full_sqlite_volume_says_to_raise_the_claim_and_keeps_what_was_committed(
    tmp_path: Path,
) -> None:
    with open_store(f"sqlite://{tmp_path}/state.sqlite3", "ns/one") as store:
        kept = [Pair(f"s{i}", f"d{i}", {"email": f"print{i}"}) for i in range(10)]
        store.save_pairs(kept)
        current = store._execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
        _limit_pages(store, current + 2)
        secret = "someone@example.com"
        with pytest.raises(StateStoreError) as raised:
            store.save_pairs([Pair(f"n{i}", f"m{i}", {"email": secret * 20}) for i in range(2000)])
        message = str(raised.value)
        assert message.startswith("StateStoreFull: ") and "spec.state.size" in message
        assert secret not in message and "INSERT" not in message
        # The failed batch left nothing behind; the committed pairs are intact.
        assert store.count_pairs() == 10
        assert store.pairs_for(Side.SOURCE, ["s3"])["s3"].destination_id == "d3"
        _limit_pages(store, 1_000_000)
        store.save_pairs([Pair("n0", "m0", {})])
        assert store.count_pairs() == 11


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateStoreError, match="not a SQLite database"):
        open_store(f"sqlite://{path}", "ns/one")


async def test_a_run_that_fills_the_state_volume_fails_clearly_and_the_next_run_loses_nothing(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite://{tmp_path}/state.sqlite3", "test/connection")
    world = World(store=store, max_batch_size=10, page_size=10)
    for i in range(300):
        world.a.add(email=f"p{i}@example.com", firstname=f"F{i}", lastname=f"L{i}")
    current = store._execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
    _limit_pages(store, current + 6)

    failed = await world.sync()

    assert failed.result == SyncResult.FAILED
    assert failed.error is not None
    assert "spec.state.size" in failed.error and "bug" not in failed.error
    # The reason leads the error: the operator's Synced condition and metric label carry it.
    assert runs.failure_reason(failed) == "StateStoreFull"
    assert "@example.com" not in failed.error
    assert 0 < store.count_pairs() < 300  # it stopped part way

    _limit_pages(store, 1_000_000)
    recovered = await world.sync()

    assert recovered.result == SyncResult.SUCCEEDED, recovered.failures
    assert store.count_pairs() == 300
    # Records created before the volume filled were matched by identity, not created twice.
    emails = [world.b.get(record_id)["Email"] for record_id in world.b.records]
    assert len(emails) == len(set(emails)) == 300


def test_a_lost_postgres_state_store_is_a_clear_error_without_the_dsn(postgres_dsn: str) -> None:
    with open_store(postgres_dsn, "ns/one") as store:
        pid = store._execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[attr-defined]
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StateStoreError) as raised:
            store.count_pairs()
    message = str(raised.value)
    assert message.startswith("StateStoreUnavailable: ") and "SQLSTATE" in message
    password = psycopg.conninfo.conninfo_to_dict(postgres_dsn).get("password")
    assert password and str(password) not in message and postgres_dsn not in message


def test_grouped_commits_hold_batches_until_due_or_the_end(store_url: str) -> None:
    with open_store(store_url, "ns/one") as writer, open_store(store_url, "ns/one") as reader:
        writer.save_pairs([Pair("s0", "d0", {})])
        assert reader.count_pairs() == 1  # outside a group, each batch commits
        with writer.grouped_commits(3600):
            writer.save_pairs([Pair("s1", "d1", {})])
            writer.set_watermark(Side.SOURCE, T0)
            assert writer.count_pairs() == 2  # the writer reads its own open group
            assert reader.count_pairs() == 1 and reader.get_watermark(Side.SOURCE) is None
        assert reader.count_pairs() == 2 and reader.get_watermark(Side.SOURCE) == T0
        with writer.grouped_commits(0):
            writer.save_pairs([Pair("s2", "d2", {})])
            assert reader.count_pairs() == 3  # due at once


def test_a_failed_batch_rolls_back_its_whole_group(store_url: str) -> None:
    with open_store(store_url, "ns/one") as store:
        with store.grouped_commits(3600):
            store.save_pairs([Pair("s1", "d1", {})])
            with pytest.raises(RuntimeError), store.batch():
                store.save_pairs([Pair("s2", "d2", {})])
                raise RuntimeError("the batch fails")
            store.save_pairs([Pair("s3", "d3", {})])
        # s1 went with the failed batch (the next run redoes it from the watermark that
        # was rolled back with it); s3 began a new group.
        assert set(store.pairs_for(Side.SOURCE, ["s1", "s2", "s3"])) == {"s3"}
