"""The state store on SQLite (a file on the connection's PersistentVolumeClaim)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datasync.state.base import StateStoreError
from datasync.state.sql import SqlStateStore, _Cursor

# What an SRE can do about each kind of SQLite failure (by its primary result code). The
# reason leads the message, so the operator's Synced condition and its run-failure metric
# carry it (StateStoreFull is worth its own alert).
_UNAVAILABLE = "StateStoreUnavailable"
_LOCKED = (
    _UNAVAILABLE,
    "another process holds it locked: is another sync of this connection running?",
)
_ADVICE = {
    "SQLITE_FULL": (
        "StateStoreFull",
        "its volume is full: raise spec.state.size (about 1 kB per synced record) or keep the "
        "state in PostgreSQL",
    ),
    "SQLITE_READONLY": (_UNAVAILABLE, "it is read-only: the sync needs to write to it"),
    "SQLITE_BUSY": _LOCKED,
    "SQLITE_LOCKED": _LOCKED,
    "SQLITE_CORRUPT": (
        _UNAVAILABLE,
        "the file is damaged: restore the volume from a backup, or delete the file to let the "
        "next run match records again by identity",
    ),
    "SQLITE_NOTADB": (
        _UNAVAILABLE,
        "the file is not a SQLite database: point the state at a new file",
    ),
    "SQLITE_IOERR": (
        _UNAVAILABLE,
        "the volume reported an I/O error: check the node's disk and the claim",
    ),
    "SQLITE_CANTOPEN": (
        _UNAVAILABLE,
        "the file cannot be opened: check the volume is mounted and writable",
    ),
}


class SqliteStateStore(SqlStateStore):
    def __init__(self, path: str, connection: str = "default") -> None:
        super().__init__(connection)
        self._path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly by `batch()`.
        # Used by one thread at a time, not always the one that opened it (the engine
        # writes a batch's state in a worker thread while the next batch goes to the app).
        with self._translated():
            self._conn = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
        if path != ":memory:":
            self._execute("PRAGMA journal_mode=WAL")
            # Checkpoint every ~40 MB of log rather than every 4 MB: a batch of pairs with
            # random ids dirties about 4 MB of index pages, so the default checkpointed (and
            # synced to disk) at nearly every commit. Commits are as durable either way.
            self._execute("PRAGMA wal_autocheckpoint=10000")
        # 16 MB of page cache (the default is 2 MB): at a million pairs, most lookups and
        # inserts into the pair indexes otherwise read their pages from the OS again.
        self._execute("PRAGMA cache_size=-16000")
        self._execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite's operational errors as StateStoreError, saying what to do about them.
        The message names the file, never a statement or its values."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            # Extended names (SQLITE_IOERR_WRITE) share their primary code's advice.
            primary = "_".join(str(getattr(exc, "sqlite_errorname", "")).split("_")[:2])
            known = _ADVICE.get(primary)
            if known is None:
                raise
            reason, advice = known
            raise StateStoreError(
                f"{reason}: the state store {self._path} cannot be used: {advice}; what was "
                "committed before is kept and the next run resumes from there"
            ) from exc

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        if sql == "BEGIN":
            sql = "BEGIN IMMEDIATE"
        with self._translated():
            return self._conn.execute(sql, tuple(params))

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._translated():
            self._conn.executemany(sql, rows)

    def close(self) -> None:
        self._conn.close()
