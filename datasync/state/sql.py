"""The state store in SQL, shared by SQLite and PostgreSQL (psycopg 3).

Both speak the same SQL here (ON CONFLICT upserts, TEXT timestamps in ISO 8601); only the
placeholder style and connection handling differ. The schema is versioned in
`datasync_schema`; migrations run idempotently at open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from datasync.api.models import Health, Side
from datasync.state.base import (
    ChecksMark,
    HealthState,
    ListCursor,
    Pair,
    RecordHealth,
    StateStore,
)

# Each migration is a list of statements; append new versions, never edit old ones.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS datasync_watermarks (
                connection TEXT NOT NULL, side TEXT NOT NULL, value TEXT NOT NULL,
                PRIMARY KEY (connection, side))""",
            """CREATE TABLE IF NOT EXISTS datasync_pairs (
                connection TEXT NOT NULL, source_id TEXT NOT NULL,
                destination_id TEXT NOT NULL, fingerprint TEXT NOT NULL, synced_at TEXT,
                PRIMARY KEY (connection, source_id))""",
            """CREATE UNIQUE INDEX IF NOT EXISTS datasync_pairs_destination
                ON datasync_pairs (connection, destination_id)""",
            """CREATE TABLE IF NOT EXISTS datasync_health (
                connection TEXT NOT NULL, side TEXT NOT NULL, record_id TEXT NOT NULL,
                state TEXT NOT NULL, reason TEXT NOT NULL, code TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, first_failure_at TEXT,
                last_failure_at TEXT,
                PRIMARY KEY (connection, side, record_id))""",
            """CREATE INDEX IF NOT EXISTS datasync_health_state
                ON datasync_health (connection, side, state, record_id)""",
            """CREATE TABLE IF NOT EXISTS datasync_list_members (
                connection TEXT NOT NULL, side TEXT NOT NULL, record_id TEXT NOT NULL,
                generation TEXT NOT NULL,
                PRIMARY KEY (connection, side, record_id))""",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
IN_CHUNK = 500


def _fingerprint_json(fingerprint: Mapping[str, Any]) -> str:
    # orjson: one is encoded for every pair written, about seven times faster than json.
    return orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS).decode()


_MISSING: Any = object()

# A pair replaces any pair holding its source id (and, deleted first, its destination id).
_UPSERT_PAIR = (
    "INSERT INTO datasync_pairs (connection, source_id, destination_id, fingerprint, synced_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection, source_id) DO UPDATE SET "
    "destination_id = excluded.destination_id, fingerprint = excluded.fingerprint, "
    "synced_at = excluded.synced_at"
)


class _Cursor(Protocol):
    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _chunks(ids: Iterable[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in ids:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class SqlStateStore(StateStore):
    """Subclasses provide `_execute` (with `?` placeholders) and transaction statements."""

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self._depth = 0
        self._group_seconds = 0.0
        self._open_since: float | None = None  # when the open transaction began

    # ------------------------------------------------------------ driver hooks
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        raise NotImplementedError

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute one statement (`?` placeholders) once per row of parameters."""
        for row in rows:
            self._execute(sql, row)

    def _lock_for_migration(self) -> None:
        """Serialize concurrent migrations (PostgreSQL: an advisory lock)."""

    def _run(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        """Execute with `?` placeholders; `(MARKS)` expands to one per remaining param."""
        if "(MARKS)" in sql:
            count = len(params) - sql.count("?")
            sql = sql.replace("(MARKS)", "(" + ", ".join("?" * count) + ")")
        return self._execute(sql, params)

    # ------------------------------------------------------------ transactions
    @contextmanager
    def batch(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if self._open_since is None:
            self._run("BEGIN")
            self._open_since = time.monotonic()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._open_since = None
            # SQLite may have rolled back already (a full disk, say): the error that got
            # here is the one to report, not "no transaction is active".
            with suppress(Exception):
                self._run("ROLLBACK")
            raise
        self._depth = 0
        if time.monotonic() - self._open_since >= self._group_seconds:
            self._commit()

    def _commit(self) -> None:
        self._open_since = None
        self._run("COMMIT")

    @contextmanager
    def grouped_commits(self, seconds: float) -> Iterator[None]:
        self._group_seconds = seconds
        try:
            yield
        finally:
            self._group_seconds = 0.0
            # Only whole batches are in an open group (a failed one rolled it back), so
            # they are committed however the block ends.
            if self._open_since is not None and not self._depth:
                self._commit()

    def migrate(self) -> None:
        with self.batch():
            self._lock_for_migration()
            self._run(
                "CREATE TABLE IF NOT EXISTS datasync_schema ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            row = self._run("SELECT MAX(version) FROM datasync_schema").fetchone()
            current = row[0] if row and row[0] is not None else 0
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    self._run(statement)
                self._run(
                    "INSERT INTO datasync_schema (version, applied_at) VALUES (?, ?)",
                    (version, _iso(datetime.now(UTC))),
                )

    def schema_version(self) -> int:
        row = self._run("SELECT MAX(version) FROM datasync_schema").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # ------------------------------------------------------------ watermarks
    def get_watermark(self, side: Side) -> datetime | None:
        row = self._run(
            "SELECT value FROM datasync_watermarks WHERE connection = ? AND side = ?",
            (self.connection, str(side)),
        ).fetchone()
        return _dt(row[0]) if row else None

    def set_watermark(self, side: Side, value: datetime) -> None:
        self._run(
            "INSERT INTO datasync_watermarks (connection, side, value) VALUES (?, ?, ?) "
            "ON CONFLICT (connection, side) DO UPDATE SET value = excluded.value",
            (self.connection, str(side), _iso(value)),
        )

    # ------------------------------------------------------------ pairs
    def pairs_for(self, side: Side, ids: Iterable[str]) -> dict[str, Pair]:
        column = "source_id" if Side(side) == Side.SOURCE else "destination_id"
        found: dict[str, Pair] = {}
        for chunk in _chunks(ids):
            rows = self._run(
                "SELECT source_id, destination_id, fingerprint, synced_at FROM datasync_pairs "
                "WHERE connection = ? AND COLUMN IN (MARKS)".replace("COLUMN", column),
                (self.connection, *chunk),
            ).fetchall()
            for source_id, destination_id, fingerprint, synced_at in rows:
                pair = Pair(source_id, destination_id, orjson.loads(fingerprint), _dt(synced_at))
                found[pair.id(side)] = pair
        return found

    def save_pairs(self, pairs: Iterable[Pair]) -> None:
        pairs = list(pairs)
        if not pairs:
            return
        times: dict[datetime | None, str | None] = {}  # a batch shares one synced_at
        inserts = []
        for pair in pairs:
            synced_at = times.get(pair.synced_at, _MISSING)
            if synced_at is _MISSING:
                synced_at = times[pair.synced_at] = _iso(pair.synced_at)
            inserts.append(
                (
                    self.connection,
                    pair.source_id,
                    pair.destination_id,
                    _fingerprint_json(pair.fingerprint),
                    synced_at,
                )
            )
        with self.batch():
            destinations = [pair.destination_id for pair in pairs]
            if len({pair.source_id for pair in pairs}) == len(set(destinations)) == len(pairs):
                # No two pairs share an id: deleting every holder of the destination ids
                # first (a pair's own row too: the upsert writes all of it again), then
                # upserting them all, ends where one pair at a time ends.
                for chunk in _chunks(destinations):
                    self._run(
                        "DELETE FROM datasync_pairs WHERE connection = ? "
                        "AND destination_id IN (MARKS)",
                        (self.connection, *chunk),
                    )
                self._execute_many(_UPSERT_PAIR, inserts)
                return
            for pair, insert in zip(pairs, inserts, strict=True):
                self._run(
                    "DELETE FROM datasync_pairs WHERE connection = ? AND destination_id = ? "
                    "AND source_id <> ?",
                    (self.connection, pair.destination_id, pair.source_id),
                )
                self._run(_UPSERT_PAIR, insert)

    def delete_pairs(self, source_ids: Iterable[str]) -> None:
        with self.batch():
            for chunk in _chunks(source_ids):
                self._run(
                    "DELETE FROM datasync_pairs WHERE connection = ? AND source_id IN (MARKS)",
                    (self.connection, *chunk),
                )

    def count_pairs(self) -> int:
        row = self._run(
            "SELECT COUNT(*) FROM datasync_pairs WHERE connection = ?", (self.connection,)
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------ health
    def health_for(self, side: Side, ids: Iterable[str]) -> dict[str, RecordHealth]:
        found: dict[str, RecordHealth] = {}
        for chunk in _chunks(ids):
            rows = self._run(
                "SELECT record_id, state, reason, code, attempts, first_failure_at, "
                "last_failure_at FROM datasync_health WHERE connection = ? AND side = ? "
                "AND record_id IN (MARKS)",
                (self.connection, str(side), *chunk),
            ).fetchall()
            for record_id, state, reason, code, attempts, first, last in rows:
                found[record_id] = RecordHealth(
                    Side(side),
                    record_id,
                    HealthState(state),
                    reason,
                    code,
                    int(attempts),
                    _dt(first),
                    _dt(last),
                )
        return found

    def mark_excluded(self, side: Side, reasons: Mapping[str, str]) -> None:
        if not reasons:
            return
        with self.batch():
            self._execute_many(
                "INSERT INTO datasync_health (connection, side, record_id, state, reason, "
                "code, attempts, first_failure_at, last_failure_at) "
                "VALUES (?, ?, ?, ?, ?, NULL, 0, NULL, NULL) "
                "ON CONFLICT (connection, side, record_id) DO UPDATE SET "
                "state = excluded.state, reason = excluded.reason, code = NULL, "
                "attempts = 0, first_failure_at = NULL, last_failure_at = NULL",
                [
                    (self.connection, str(side), record_id, HealthState.EXCLUDED.value, reason)
                    for record_id, reason in reasons.items()
                ],
            )

    def mark_failing(
        self, side: Side, record_id: str, reason: str, code: str | None, at: datetime
    ) -> RecordHealth:
        with self.batch():
            previous = self.health_for(side, [record_id]).get(record_id)
            attempts = 1
            first = at
            if previous is not None and previous.state == HealthState.FAILING:
                attempts = previous.attempts + 1
                first = previous.first_failure_at or at
            self._run(
                "INSERT INTO datasync_health (connection, side, record_id, state, reason, "
                "code, attempts, first_failure_at, last_failure_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (connection, side, record_id) DO UPDATE SET "
                "state = excluded.state, reason = excluded.reason, code = excluded.code, "
                "attempts = excluded.attempts, first_failure_at = excluded.first_failure_at, "
                "last_failure_at = excluded.last_failure_at",
                (
                    self.connection,
                    str(side),
                    record_id,
                    HealthState.FAILING.value,
                    reason,
                    code,
                    attempts,
                    _iso(first),
                    _iso(at),
                ),
            )
        return RecordHealth(
            Side(side), record_id, HealthState.FAILING, reason, code, attempts, first, at
        )

    def clear_health(self, side: Side, ids: Iterable[str]) -> None:
        with self.batch():
            for chunk in _chunks(ids):
                self._run(
                    "DELETE FROM datasync_health WHERE connection = ? AND side = ? "
                    "AND record_id IN (MARKS)",
                    (self.connection, str(side), *chunk),
                )

    def failing_ids(self, side: Side, after: str | None, limit: int) -> list[str]:
        rows = self._run(
            "SELECT record_id FROM datasync_health WHERE connection = ? AND side = ? "
            "AND state = ? AND record_id > ? ORDER BY record_id LIMIT ?",
            (self.connection, str(side), HealthState.FAILING.value, after or "", limit),
        ).fetchall()
        return [row[0] for row in rows]

    def health(self) -> Health:
        health = Health()
        rows = self._run(
            "SELECT state, reason, COUNT(*) FROM datasync_health WHERE connection = ? "
            "GROUP BY state, reason ORDER BY state, reason",
            (self.connection,),
        ).fetchall()
        for state, reason, count in rows:
            target = health.excluded if state == HealthState.EXCLUDED else health.failing
            target[reason] = int(count)
        # Two NOT EXISTS, each an index lookup: one with an OR made SQLite scan the health
        # table for every pair (22 s of a 24 s incremental run at 20k contacts a side).
        row = self._run(
            "SELECT COUNT(*) FROM datasync_pairs p WHERE p.connection = ? "
            "AND NOT EXISTS (SELECT 1 FROM datasync_health h WHERE h.connection = p.connection "
            "AND h.side = 'source' AND h.record_id = p.source_id) "
            "AND NOT EXISTS (SELECT 1 FROM datasync_health h WHERE h.connection = p.connection "
            "AND h.side = 'destination' AND h.record_id = p.destination_id)",
            (self.connection,),
        ).fetchone()
        health.inSync = int(row[0])
        return health

    # ------------------------------------------------------------ list membership
    def list_known(self, side: Side, ids: Iterable[str]) -> set[str]:
        known: set[str] = set()
        for chunk in _chunks(ids):
            rows = self._run(
                "SELECT record_id FROM datasync_list_members WHERE connection = ? AND side = ? "
                "AND record_id IN (MARKS)",
                (self.connection, str(side), *chunk),
            ).fetchall()
            known.update(row[0] for row in rows)
        return known

    def list_has_members(self, side: Side) -> bool:
        row = self._run(
            "SELECT 1 FROM datasync_list_members WHERE connection = ? AND side = ? LIMIT 1",
            (self.connection, str(side)),
        ).fetchone()
        return row is not None

    def list_mark(self, side: Side, ids: Iterable[str], generation: str) -> None:
        rows = [(self.connection, str(side), record_id, generation) for record_id in ids]
        if not rows:
            return
        with self.batch():
            self._execute_many(
                "INSERT INTO datasync_list_members (connection, side, record_id, generation) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (connection, side, record_id) "
                "DO UPDATE SET generation = excluded.generation",
                rows,
            )

    def list_sweep(self, side: Side, generation: str) -> list[str]:
        with self.batch():
            rows = self._run(
                "SELECT record_id FROM datasync_list_members WHERE connection = ? AND side = ? "
                "AND generation <> ?",
                (self.connection, str(side), generation),
            ).fetchall()
            self._run(
                "DELETE FROM datasync_list_members WHERE connection = ? AND side = ? "
                "AND generation <> ?",
                (self.connection, str(side), generation),
            )
        return [row[0] for row in rows]

    def list_count(self, side: Side) -> int:
        row = self._run(
            "SELECT COUNT(*) FROM datasync_list_members WHERE connection = ? AND side = ?",
            (self.connection, str(side)),
        ).fetchone()
        return int(row[0]) if row else 0

    # Run markers (the list cursor, the checks mark) live in the watermarks table as JSON,
    # under "<side>/<name>": no schema change.
    def _marker(self, side: Side, name: str) -> dict[str, Any] | None:
        row = self._run(
            "SELECT value FROM datasync_watermarks WHERE connection = ? AND side = ?",
            (self.connection, f"{side}/{name}"),
        ).fetchone()
        return dict(json.loads(row[0])) if row else None

    def _set_marker(self, side: Side, name: str, value: Mapping[str, Any]) -> None:
        self._run(
            "INSERT INTO datasync_watermarks (connection, side, value) VALUES (?, ?, ?) "
            "ON CONFLICT (connection, side) DO UPDATE SET value = excluded.value",
            (self.connection, f"{side}/{name}", json.dumps(value)),
        )

    def get_list_cursor(self, side: Side) -> ListCursor | None:
        stored = self._marker(side, "list")
        if stored is None:
            return None
        joined_at, full_read_at = _dt(stored["joinedAt"]), _dt(stored["fullReadAt"])
        assert joined_at is not None and full_read_at is not None
        return ListCursor(str(stored["list"]), joined_at, full_read_at)

    def set_list_cursor(self, side: Side, cursor: ListCursor) -> None:
        self._set_marker(
            side,
            "list",
            {
                "list": cursor.list_ref,
                "joinedAt": _iso(cursor.joined_at),
                "fullReadAt": _iso(cursor.full_read_at),
            },
        )

    def get_checks_mark(self, side: Side) -> ChecksMark | None:
        stored = self._marker(side, "checks")
        if stored is None:
            return None
        since = _dt(stored["since"])
        assert since is not None
        return ChecksMark(str(stored["fingerprint"]), since)

    def set_checks_mark(self, side: Side, mark: ChecksMark) -> None:
        value = {"fingerprint": mark.fingerprint, "since": _iso(mark.since)}
        self._set_marker(side, "checks", value)
