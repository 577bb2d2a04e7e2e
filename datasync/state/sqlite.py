"""The state store on SQLite (a file on the connection's PersistentVolumeClaim)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasync.state.sql import SqlStateStore, _Cursor


class SqliteStateStore(SqlStateStore):
    def __init__(self, path: str, connection: str = "default") -> None:
        super().__init__(connection)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly by `batch()`.
        # Used by one thread at a time, not always the one that opened it (the engine
        # writes a batch's state in a worker thread while the next batch goes to the app).
        self._conn = sqlite3.connect(
            path, isolation_level=None, timeout=30, check_same_thread=False
        )
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            # Checkpoint every ~40 MB of log rather than every 4 MB: a batch of pairs with
            # random ids dirties about 4 MB of index pages, so the default checkpointed (and
            # synced to disk) at nearly every commit. Commits are as durable either way.
            self._conn.execute("PRAGMA wal_autocheckpoint=10000")
        # 16 MB of page cache (the default is 2 MB): at a million pairs, most lookups and
        # inserts into the pair indexes otherwise read their pages from the OS again.
        self._conn.execute("PRAGMA cache_size=-16000")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        if sql == "BEGIN":
            sql = "BEGIN IMMEDIATE"
        return self._conn.execute(sql, tuple(params))

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def close(self) -> None:
        self._conn.close()
