"""Collect what a run did into a SyncSummary, keeping values out of every message."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from datasync.api.models import DirectionCounts, Failures, FailureSample, RecordCounts, Side

MAX_SAMPLES = 20
MAX_MESSAGE = 512
EMAIL = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+")
REDACTED = "<redacted>"


def scrub(message: str, values: Iterable[Any] = ()) -> str:
    """Remove record values (and anything shaped like an email) from an app's message."""
    texts = sorted(
        {str(v).strip() for v in values if v is not None and len(str(v).strip()) >= 3},
        key=len,
        reverse=True,
    )
    for text in texts:
        message = re.sub(re.escape(text), REDACTED, message, flags=re.IGNORECASE)
    message = EMAIL.sub(REDACTED, message)
    return message[:MAX_MESSAGE]


def direction_of(target: Side) -> str:
    return "toDestination" if target == Side.DESTINATION else "toSource"


class Report:
    """Counts of one run. A record (side, id) is counted at most once as skipped, and once
    as failing (plus once per distinct failure reason in `byReason`), however many passes
    or fields meet it: the two passes of a TwoWay run can both see the same record."""

    def __init__(self) -> None:
        self.records = RecordCounts()
        self.skipped: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.failure_total = 0
        self.samples: list[FailureSample] = []
        self._skipped_records: set[tuple[Side, str]] = set()
        self._failed_records: set[tuple[Side, str]] = set()
        self._failed_reasons: set[tuple[Side, str, str]] = set()

    def counts(self, target: Side) -> DirectionCounts:
        counts: DirectionCounts = getattr(self.records, direction_of(target))
        return counts

    def read(self, origin: Side, count: int) -> None:
        self.counts(_other(origin)).read += count

    def skip(self, origin: Side, record_id: str, reason: str) -> bool:
        """Count `record_id` of `origin` as skipped; False if this run already did."""
        key = (origin, record_id)
        if key in self._skipped_records:
            return False
        self._skipped_records.add(key)
        self.counts(_other(origin)).skipped += 1
        self.skipped[reason] += 1
        return True

    def sample(
        self,
        app: Side,
        record_id: str,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        values: Iterable[Any] = (),
    ) -> None:
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(
                FailureSample(
                    app=app,
                    recordId=EMAIL.sub(REDACTED, record_id)[:255],  # ids can be emails
                    field=field[:255] if field else None,
                    reason=reason[:64],
                    code=code[:128] if code else None,
                    message=scrub(message, values),
                )
            )

    def failure(
        self,
        app: Side,
        record_id: str,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        values: Iterable[Any] = (),
    ) -> None:
        key = (app, record_id)
        # "*" stands for a whole read that stopped, not a record: each one counts.
        if record_id == "*" or key not in self._failed_records:
            self.failure_total += 1
            self._failed_records.add(key)
        if record_id == "*" or (app, record_id, reason) not in self._failed_reasons:
            self.by_reason[reason] += 1
            self._failed_reasons.add((app, record_id, reason))
        self.sample(app, record_id, reason, message, field=field, code=code, values=values)

    def failures(self) -> Failures:
        return Failures(
            total=self.failure_total,
            byReason=dict(sorted(self.by_reason.items())),
            samples=list(self.samples),
        )


def _other(side: Side) -> Side:
    return Side.DESTINATION if side == Side.SOURCE else Side.SOURCE
