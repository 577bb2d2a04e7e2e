"""The state store: watermarks, matched pairs and sync health, in SQLite or PostgreSQL."""

from __future__ import annotations

from datasync.state.base import HealthState, Pair, RecordHealth, StateStore, StateStoreError


def open_store(url: str, connection: str = "default") -> StateStore:
    """Open (and migrate) the store at `url`, scoped to the connection key `connection`.

    `sqlite:///abs/path.sqlite3`, `sqlite:///:memory:` or `postgresql://...` (libpq URL).
    """
    if url.startswith("sqlite://"):
        from datasync.state.sqlite import SqliteStateStore

        path = url[len("sqlite://") :]
        if path == "/:memory:":
            path = ":memory:"
        elif path.startswith("//"):
            path = "/" + path.lstrip("/")
        if not path or (path != ":memory:" and not path.startswith("/")):
            raise StateStoreError(
                f"state URL {url!r} needs an absolute path: sqlite:///abs/path.sqlite3"
            )
        return SqliteStateStore(path, connection)
    if url.startswith(("postgresql://", "postgres://")):
        from datasync.state.postgres import PostgresStateStore

        return PostgresStateStore(url, connection)
    raise StateStoreError(
        "unsupported state URL: use sqlite:///abs/path.sqlite3, sqlite:///:memory: or "
        "postgresql://user:password@host/db"
    )


__all__ = ["HealthState", "Pair", "RecordHealth", "StateStore", "StateStoreError", "open_store"]
