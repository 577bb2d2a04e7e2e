"""The state store on a shared PostgreSQL database (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from datasync.state.base import StateStoreError
from datasync.state.sql import SqlStateStore, _Cursor

# Any constant: serializes schema migrations of datasync processes sharing a database.
_MIGRATION_LOCK = 7_346_021_118
_DISK_FULL = "53100"


class PostgresStateStore(SqlStateStore):
    def __init__(self, dsn: str, connection: str = "default") -> None:
        super().__init__(connection)
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=15)
        except psycopg.OperationalError as exc:
            # The libpq message may echo parts of the DSN; keep only its first line's gist.
            raise StateStoreError(
                "cannot connect to the PostgreSQL state store; check the `dsn` key of the "
                "state Secret (host, port, database, user and password)"
            ) from exc
        self.migrate()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """A lost server, a full disk or a shutdown as StateStoreError. The message names
        the error class and SQLSTATE only: the server's text may quote values."""
        try:
            yield
        except psycopg.OperationalError as exc:
            state = f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else ""
            reason = "StateStoreFull" if exc.sqlstate == _DISK_FULL else "StateStoreUnavailable"
            raise StateStoreError(
                f"{reason}: the PostgreSQL state store cannot be used "
                f"({type(exc).__name__}{state}): "
                "check the server is up and has disk space; what was committed before is "
                "kept and the next run resumes from there"
            ) from exc

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        with self._translated():
            return self._conn.execute(sql.replace("?", "%s"), tuple(params))

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._translated(), self._conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), [tuple(row) for row in rows])

    def _lock_for_migration(self) -> None:
        self._execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def close(self) -> None:
        self._conn.close()
