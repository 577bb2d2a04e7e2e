"""What the sync engine remembers between runs, behind one interface.

A store is bound to one connection key (e.g. "namespace/name"), so several connections can
share one PostgreSQL database. It keeps, per connection:
- per-side watermarks (how far each app's changes have been synced);
- matched pairs: the ids on both sides and a fingerprint (hashes, never values) of the
  mapped values last synced;
- the standing health of records that are not simply in sync (excluded or failing);
- the last known members of an inclusion list, to notice records entering or leaving it.

Every mutating call commits on its own, unless made inside `with store.batch():`, which
commits once at the end (or rolls back if the block raises).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from datasync.api.models import Health, Side


class StateStoreError(RuntimeError):
    """The state store cannot be opened or used; the message says what to fix."""


class HealthState(StrEnum):
    EXCLUDED = "excluded"
    FAILING = "failing"


@dataclass
class Pair:
    """A matched record pair and the fingerprint of what was last synced between them."""

    source_id: str
    destination_id: str
    # mapping key -> hash of the canonical value last synced for it
    fingerprint: dict[str, str] = field(default_factory=dict)
    synced_at: datetime | None = None

    def id(self, side: Side | str) -> str:
        return self.source_id if Side(side) == Side.SOURCE else self.destination_id


@dataclass(frozen=True)
class ListCursor:
    """How far an inclusion list's mirror is known to be exact (see list_changes)."""

    list_ref: str  # the list the mirror is of (another list needs a full read)
    joined_at: datetime  # the mirror holds everyone who joined by then (the app's time)
    full_read_at: datetime  # when the whole list was last read


@dataclass(frozen=True)
class ChecksMark:
    """The local checks (the spec and both apps' schemas, as a fingerprint) that failures
    are decided under now, and since when."""

    fingerprint: str
    since: datetime  # the start of the first run that decided failures under them


@dataclass(frozen=True)
class RecordHealth:
    side: Side
    record_id: str
    state: HealthState
    reason: str
    code: str | None = None
    attempts: int = 0
    first_failure_at: datetime | None = None
    last_failure_at: datetime | None = None


class StateStore(abc.ABC):
    """Watermarks, matched pairs and sync health of one connection."""

    connection: str

    @abc.abstractmethod
    def batch(self) -> AbstractContextManager[None]:
        """Group the calls inside into one transaction, committed at the end."""

    def grouped_commits(self, seconds: float) -> AbstractContextManager[None]:
        """Inside: a batch may leave its transaction open for the next batches, committed
        once it is `seconds` old (checked as each batch ends) and when the block ends.
        A failed batch rolls back the whole open group. Stores that cannot group commit
        every batch, as outside."""
        return nullcontext()

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- watermarks
    @abc.abstractmethod
    def get_watermark(self, side: Side) -> datetime | None: ...

    @abc.abstractmethod
    def set_watermark(self, side: Side, value: datetime) -> None: ...

    # -- pairs
    @abc.abstractmethod
    def pairs_for(self, side: Side, ids: Iterable[str]) -> dict[str, Pair]:
        """Known pairs of the given ids of `side`, keyed by that side's id."""

    @abc.abstractmethod
    def save_pairs(self, pairs: Iterable[Pair]) -> None:
        """Insert or replace pairs (a pair replaces any other pair holding either id)."""

    @abc.abstractmethod
    def delete_pairs(self, source_ids: Iterable[str]) -> None: ...

    @abc.abstractmethod
    def count_pairs(self) -> int: ...

    # -- health
    @abc.abstractmethod
    def health_for(self, side: Side, ids: Iterable[str]) -> dict[str, RecordHealth]: ...

    @abc.abstractmethod
    def mark_excluded(self, side: Side, reasons: Mapping[str, str]) -> None:
        """Record ids -> exclusion reason (replaces any failing state)."""

    @abc.abstractmethod
    def mark_failing(
        self, side: Side, record_id: str, reason: str, code: str | None, at: datetime
    ) -> RecordHealth:
        """Record a failed attempt: attempts + 1, first failure kept, last failure = at."""

    @abc.abstractmethod
    def clear_health(self, side: Side, ids: Iterable[str]) -> None:
        """The records are in sync now."""

    @abc.abstractmethod
    def failing_ids(self, side: Side, after: str | None, limit: int) -> list[str]:
        """Ids of failing records of `side`, in id order, after `after` (keyset paging)."""

    @abc.abstractmethod
    def health(self) -> Health:
        """Totals of the standing state of every record the connection knows."""

    # -- inclusion list membership
    @abc.abstractmethod
    def list_known(self, side: Side, ids: Iterable[str]) -> set[str]:
        """Which of `ids` were list members at the last refresh."""

    @abc.abstractmethod
    def list_has_members(self, side: Side) -> bool: ...

    @abc.abstractmethod
    def list_mark(self, side: Side, ids: Iterable[str], generation: str) -> None: ...

    @abc.abstractmethod
    def list_sweep(self, side: Side, generation: str) -> list[str]:
        """Forget members not marked in `generation`; return their ids (they left)."""

    @abc.abstractmethod
    def list_count(self, side: Side) -> int:
        """How many members the mirror holds."""

    @abc.abstractmethod
    def get_list_cursor(self, side: Side) -> ListCursor | None: ...

    @abc.abstractmethod
    def set_list_cursor(self, side: Side, cursor: ListCursor) -> None: ...

    @abc.abstractmethod
    def get_checks_mark(self, side: Side) -> ChecksMark | None: ...

    @abc.abstractmethod
    def set_checks_mark(self, side: Side, mark: ChecksMark) -> None: ...

    def iter_failing(self, side: Side, limit: int) -> Iterator[list[str]]:
        after: str | None = None
        while True:
            ids = self.failing_ids(side, after, limit)
            if not ids:
                return
            yield ids
            after = ids[-1]

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
