"""One sync run between two connectors. See docs/engine.md for the rules it implements.

A run reads each writing side's changes since its watermark, page by page. Each chunk of a
page is matched to counterparts (pairs from the state store, read back by id; new records
looked up by identity), every mapped field is decided (who wins, or nothing to do),
validated against the target's schema, and written in the largest batches the app takes.
Pairs, fingerprints and health are committed per batch (in groups of a few seconds when
every app written to upserts on create, see _Run.commit_interval), and a side's watermark
advances only past pages whose records are all committed, and never past a record that
failed for a transient reason. Failing records are read again by id and retried on every run,
except those that failed a local check under the same spec and schemas (retry_failing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

from datasync.api.models import (
    ConflictResolution,
    DataSyncConnectionSpec,
    Filter,
    FilterOperator,
    Health,
    Side,
    SyncResult,
    SyncSummary,
)
from datasync.connector import (
    Connector,
    ConnectorError,
    FatalError,
    ListChanges,
    ObjectSchema,
    Record,
    RecordError,
    RetriableError,
    WriteResult,
)
from datasync.engine.mappings import (
    CreateStep,
    ResolvedMapping,
    check_fields,
    create_steps,
    identity_of,
    resolve_mappings,
    value_kind,
)
from datasync.engine.progress import NoProgress, Progress
from datasync.engine.report import Report, scrub
from datasync.engine.validation import (
    FieldRule,
    Validated,
    WriteValidator,
    validate_write,
    validator_for,
)
from datasync.engine.values import (
    CoercionError,
    canonical,
    coerce,
    fingerprint,
    is_blank,
    map_value,
    normalize_identity,
)
from datasync.state.base import (
    ChecksMark,
    ListCursor,
    Pair,
    RecordHealth,
    StateStore,
    StateStoreError,
)

log = logging.getLogger(__name__)

# Re-read this much before a watermark: app clocks and search indexes lag a little.
OVERLAP = timedelta(minutes=2)
# Read the whole inclusion list at least this often, even when its join-order feed and size
# prove the mirror exact: a safety net for apps whose join times can lag more than OVERLAP
# (a dynamic list being reprocessed, say).
FULL_LIST_READ_EVERY = timedelta(hours=24)
# The list cursor of an empty list: whoever joins it later is new.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Skips that are data problems worth showing in the samples (list/filter skips are not).
SAMPLED_SKIPS = frozenset({"MissingIdentity", "DuplicateIdentity", "CounterpartDeleted"})
# Failures the engine decides from the record, the spec and the target's schema alone,
# before any write: the same record fails them the same way until one of those changes.
LOCAL_CHECK_REASONS = frozenset(
    {
        "InvalidEmail",
        "InvalidFormat",
        "InvalidOption",
        "ValueTooLong",
        "ReadOnlyField",
        "RequiredFieldMissing",
    }
)
SIDES = (Side.SOURCE, Side.DESTINATION)
# How long state writes may share a transaction when every app written to upserts on create.
GROUPED_COMMIT_SECONDS = 5.0

T = TypeVar("T")


def other(side: Side) -> Side:
    return Side.DESTINATION if side == Side.SOURCE else Side.SOURCE


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(1, size)):
        yield list(items[start : start + max(1, size)])


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _utc(value: datetime | None) -> datetime | None:
    """Connectors should give aware times; a naive one is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _aware(record: Record) -> Record:
    if record.modified_at.tzinfo is None:
        record.modified_at = record.modified_at.replace(tzinfo=UTC)
    if record.field_modified_at:
        record.field_modified_at = {
            name: at if at.tzinfo else at.replace(tzinfo=UTC)
            for name, at in record.field_modified_at.items()
        }
    return record


def _reached(changes: ListChanges) -> datetime | None:
    """How far the mirror is known exact in the app's time: to when the app described the
    list (joins after it are later), else to the newest joining it reported."""
    return _max(_utc(changes.latest), _utc(changes.as_of))


def _newer(a: Record, b: Record) -> bool:
    return a.modified_at > b.modified_at


@dataclass
class FieldPlan:
    mapping: ResolvedMapping
    target: Side | None = None  # where the value goes; None: nothing to write
    value: Any = None
    fp_written: str | None = None  # fingerprint once the write succeeded
    fp_else: str | None = None  # fingerprint when nothing is written (None: keep the old)
    held: Side | None = None  # this side changed the field but may not leave its app


@dataclass
class PairWork:
    pair: Pair
    records: dict[Side, Record]
    eligible: dict[Side, str | None]  # None: the record may leave its app; else why not
    fresh: bool
    plans: list[FieldPlan] = field(default_factory=list)
    writes: dict[Side, Validated] = field(default_factory=dict)
    succeeded: set[Side] = field(default_factory=set)
    failures: dict[Side, RecordError] = field(default_factory=dict)

    def record_id(self, side: Side) -> str:
        return self.records[side].id


@dataclass
class CreateWork:
    record: Record  # on the origin side
    target: Side
    validated: Validated
    fingerprint: dict[str, str]


RejectedWork = tuple[CreateWork, RecordError]  # a create that failed its checks, and why


@dataclass
class Endpoint:
    side: Side
    connector: Connector
    schema: ObjectSchema
    identity_field: str
    fields: list[str]
    list_ref: str | None
    filters: list[Filter]


async def run_sync(
    spec: DataSyncConnectionSpec,
    source: Connector,
    destination: Connector,
    store: StateStore,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    job: str | None = None,
    overlap: timedelta = OVERLAP,
    commit_seconds: float = GROUPED_COMMIT_SECONDS,
) -> SyncSummary:
    """Run one sync. Per-record problems are reported, never raised; a fatal error ends
    the run with result Failed and `error` saying what to fix. `commit_seconds`: how long
    state writes may wait for their commit when every app written to upserts on create
    (see _Run.commit_interval)."""
    run = _Run(
        spec,
        source,
        destination,
        store,
        dry_run,
        progress or NoProgress(),
        overlap,
        commit_seconds,
    )
    started = datetime.now(UTC)
    error: str | None = None
    try:
        await run.execute()
    except FatalError as exc:
        error = scrub(str(exc)) or type(exc).__name__
    except RetriableError as exc:
        error = scrub(f"{exc} (the app is unavailable; the next run will try again)")
    except ConnectorError as exc:
        error = scrub(str(exc)) or type(exc).__name__
    except StateStoreError as exc:
        error = scrub(str(exc))
    except Exception as exc:
        # A bug (ours or a connector's): fail the run, keep values out of the message.
        log.debug("unexpected error during the sync", exc_info=True)
        error = (
            f"unexpected {type(exc).__name__} during the sync (a bug, please report it); "
            "what was committed before it is kept"
        )
    finally:
        run.progress.finished()
    try:
        health = store.health()
    except StateStoreError as exc:
        error = error or scrub(str(exc))
        health = Health()  # unknown: the store cannot be read
    report = run.report
    if error is not None:
        result = SyncResult.FAILED
    elif report.failure_total:
        result = SyncResult.PARTIALLY_SUCCEEDED
    else:
        result = SyncResult.SUCCEEDED
    return SyncSummary(
        job=job,
        startedAt=started,
        finishedAt=datetime.now(UTC),
        result=result,
        dryRun=dry_run,
        records=report.records,
        skipped=dict(sorted(report.skipped.items())),
        failures=report.failures(),
        health=health,
        apiCalls={"source": source.api_calls, "destination": destination.api_calls},
        error=error[:1024] if error else None,
    )


class _Run:
    def __init__(
        self,
        spec: DataSyncConnectionSpec,
        source: Connector,
        destination: Connector,
        store: StateStore,
        dry_run: bool,
        progress: Progress,
        overlap: timedelta,
        commit_seconds: float,
    ) -> None:
        self.spec = spec
        self.object_type = str(spec.objectType)
        self.connectors = {Side.SOURCE: source, Side.DESTINATION: destination}
        self.store = store
        self.dry_run = dry_run
        self.progress = progress
        self.overlap = overlap
        self.report = Report()
        self.handled: dict[Side, set[str]] = {Side.SOURCE: set(), Side.DESTINATION: set()}
        self.leaving: set[Side] = set()  # sides whose records write to the other side
        self.started = datetime.now(UTC)
        self.system_of_record = Side(spec.systemOfRecord)
        self.most_recent = spec.conflictResolution == ConflictResolution.MOST_RECENT
        self.mappings: list[ResolvedMapping] = []
        self.ends: dict[Side, Endpoint] = {}
        self.kinds: dict[str, str] = {}
        self.chunk = 1
        self.list_refreshed: set[Side] = set()  # sides whose list the store mirrors now
        self.checks_print = ""  # the spec and both schemas: see retry_failing
        self.commit_seconds = commit_seconds
        # Worked out once per run, on first use (see _create, _created_blanks and _rules).
        self._create_plans: dict[Side, tuple[list[CreateStep], WriteValidator]] = {}
        self._blank_prints: dict[Side, Mapping[str, str]] = {}
        self._rules_made: dict[tuple[Side, bool], Mapping[str, FieldRule]] = {}

    # ------------------------------------------------------------------ setup
    async def execute(self) -> None:
        await self.prepare()
        with self.store.grouped_commits(self.commit_interval()):
            for side in SIDES:
                if self.leaves(side) and self.ends[side].list_ref is not None:
                    await self.refresh_list(side)
            for side in SIDES:
                if self.leaves(side):
                    await self.sync_side(side)
                else:
                    # Nothing leaves this side (OneWay), but writes into it may be failing.
                    await self.retry_failing(side)

    def commit_interval(self) -> float:
        """How long the state's writes may wait for their commit. Each batch's pairs are
        committed as soon as they are written, so a crash cannot lose the pair of a record
        the app created: the next run would look for it by identity, and an app whose
        search lags could miss it and create it twice. Apps whose creates are upserts on
        the identity cannot, so when only such apps are written to, the state commits
        every `commit_seconds` (5 by default): far fewer commits of the same index pages
        at a million records (docs/benchmarks.md). A crash then loses up to that much
        state, redone by the next run from the watermark committed with it."""
        targets = [self.ends[other(side)].connector for side in SIDES if self.leaves(side)]
        if targets and all(connector.creates_are_upserts for connector in targets):
            return self.commit_seconds
        return 0.0

    def leaves(self, side: Side) -> bool:
        """Whether records of `side` write anything to the other side."""
        return any(mapping.writes_to(other(side)) for mapping in self.mappings)

    async def prepare(self) -> None:
        source, destination = self.connectors[Side.SOURCE], self.connectors[Side.DESTINATION]
        schemas = {
            Side.SOURCE: await source.describe(self.object_type),
            Side.DESTINATION: await destination.describe(self.object_type),
        }
        self.checks_print = _checks_fingerprint(self.spec, schemas)
        identity = identity_of(self.spec, source, destination)
        self.mappings = resolve_mappings(self.spec, source, destination)
        apps = {Side.SOURCE: self.spec.source.app, Side.DESTINATION: self.spec.destination.app}
        check_fields(self.spec, self.mappings, schemas, apps, identity)
        for side in SIDES:
            filters = [f for f in self.spec.filters if Side(f.app) == side]
            names = {identity.source if side == Side.SOURCE else identity.destination}
            names.update(m.field(side) for m in self.mappings)
            names.update(f.field for f in filters)
            inclusion = self.spec.inclusionList
            self.ends[side] = Endpoint(
                side=side,
                connector=self.connectors[side],
                schema=schemas[side],
                identity_field=identity.source if side == Side.SOURCE else identity.destination,
                fields=sorted(names),
                list_ref=inclusion.list if inclusion and Side(inclusion.app) == side else None,
                filters=filters,
            )
        for mapping in self.mappings:
            self.kinds[mapping.key] = str(
                value_kind(mapping, schemas[Side.DESTINATION], Side.DESTINATION)
            )
        self.chunk = max(1, min(source.max_batch_size, destination.max_batch_size))
        self.leaving = {side for side in SIDES if self.leaves(side)}

    # ------------------------------------------------------------------ passes
    async def sync_side(self, side: Side) -> None:
        end = self.ends[side]
        watermark = self.store.get_watermark(side)
        since = watermark - self.overlap if watermark is not None else None
        latest, hold = watermark, None
        self.progress.started(side, "reading")
        try:
            async for page in end.connector.read_changed(self.object_type, since, end.fields):
                # The whole page at once (it is in memory already): the connectors split
                # each call into their largest batches, so lookups and writes fill them.
                hold = _min(hold, await self.process(side, page.records))
                latest = _max(latest, _utc(page.watermark))
                self.save_watermark(side, latest, hold)
        except RetriableError as exc:
            self.report.failure(
                side,
                "*",
                exc.reason,
                f"reading changes stopped ({exc}); the next run resumes from the last synced page",
            )
        await self.retry_failing(side)

    def save_watermark(self, side: Side, latest: datetime | None, hold: datetime | None) -> None:
        value = _min(latest, hold)
        if self.dry_run or value is None:
            return
        self.store.set_watermark(side, value)

    async def retry_failing(self, side: Side) -> None:
        """Read the failing records of `side` again and sync them. A record that failed a
        local check (LOCAL_CHECK_REASONS) under the spec and schemas of this run fails it
        again until it changes, and a change is read as usual: it is not re-read."""
        end = self.ends[side]
        settled_since = self._checks_settled_since(side)
        for ids in self.store.iter_failing(side, self.chunk):
            todo = [record_id for record_id in ids if record_id not in self.handled[side]]
            needed = todo and (not self.dry_run or settled_since is not None)
            health = self.store.health_for(side, todo) if needed else {}
            if not self.dry_run:
                todo = self._failed_before_this_run(todo, health)
            if settled_since is not None and todo:
                todo = self._not_settled(side, todo, health, settled_since)
            if not todo:
                continue
            try:
                records = await end.connector.read(self.object_type, todo, end.fields)
            except RetriableError as exc:
                for record_id in todo:
                    self.fail(side, record_id, RecordError(exc.reason, str(exc)), ())
                continue
            missing = set(todo) - {record.id for record in records}
            if missing:
                # A failing record deleted in its own app leaves the scope.
                for record_id in sorted(missing):
                    self.report.skip(side, record_id, "Deleted")
                if not self.dry_run:
                    self.store.clear_health(side, missing)
            await self.process(side, records)

    def _checks_settled_since(self, side: Side) -> datetime | None:
        """Since when the local checks have been the ones of this run, if an earlier run
        decided failures under them; else None, and this run is marked as the first."""
        mark = self.store.get_checks_mark(side)
        if mark is not None and mark.fingerprint == self.checks_print:
            return mark.since
        if not self.dry_run:
            # Marked before the retries: a run cut short after this leaves the records it
            # did not reach with an earlier last failure, so the next run retries them.
            self.store.set_checks_mark(side, ChecksMark(self.checks_print, self.started))
        return None

    def _not_settled(
        self,
        side: Side,
        ids: list[str],
        health: Mapping[str, RecordHealth],
        since: datetime,
    ) -> list[str]:
        """The ids to read again. The others failed a local check under these checks and
        have not changed since: they are reported as failing again, as a retry would,
        without reading them (their attempts and last failure stay as they were)."""
        todo: list[str] = []
        for record_id in ids:
            found = health.get(record_id)
            if (
                found is None
                or found.reason not in LOCAL_CHECK_REASONS
                or found.last_failure_at is None
                or found.last_failure_at < since
            ):
                todo.append(record_id)
                continue
            message = (
                f"{found.reason}: the record has not changed since it last failed this check "
                "(see its first failure); fix it in its app and it syncs on the next run"
            )
            self._record_failure(side, record_id, RecordError(found.reason, message), ())
            self.report.counts(other(side)).failed += 1
        return todo

    async def refresh_list(self, side: Side) -> None:
        """Mirror the inclusion list's members in the store, and sync the records that
        entered it since the last run (edited or not). A record leaving it keeps its
        health: it is excluded as NotInList only once an edit of its own is held back.

        When the connector has a join-order feed (`list_changes`), only the members who
        joined since the last refresh are read, and the list's size proves the rest (see
        `_apply_list_changes`). Otherwise, when that proof fails, on a first sync, for
        another list, or once FULL_LIST_READ_EVERY has passed, the whole list is read."""
        end = self.ends[side]
        assert end.list_ref is not None
        first_sync = self.store.get_watermark(side) is None
        cursor = self.store.get_list_cursor(side)
        incremental = (
            not first_sync
            and cursor is not None
            and cursor.list_ref == end.list_ref
            and self.started - cursor.full_read_at < FULL_LIST_READ_EVERY
        )
        try:
            if cursor is not None and incremental:
                since = cursor.joined_at - self.overlap
                changes = await end.connector.list_changes(end.list_ref, since)
                if changes is not None and await self._apply_list_changes(side, cursor, changes):
                    return
            else:
                # Where the join order stands before the full read: whoever joins during
                # or after it joins after this time (less the overlap).
                changes = await end.connector.list_changes(end.list_ref, None)
            await self._read_whole_list(side, first_sync)
        except RetriableError as exc:
            self.report.failure(
                side, "*", exc.reason, f"reading the inclusion list stopped ({exc})"
            )
            return
        if self.dry_run:
            return
        # The store now holds exactly the list's members: scope() asks it, not the app.
        self.list_refreshed.add(side)
        if changes is not None:
            joined_at = _max(
                cursor.joined_at if incremental and cursor else None, _reached(changes)
            )
            self.store.set_list_cursor(
                side, ListCursor(end.list_ref, joined_at or EPOCH, full_read_at=self.started)
            )

    async def _apply_list_changes(
        self, side: Side, cursor: ListCursor, changes: ListChanges
    ) -> bool:
        """Sync the members who joined since the cursor, if the list's size proves that
        nobody left; False when it does not (the caller reads the whole list).

        The proof: the mirror K was exact at the cursor's time. A current member missing
        from the feed joined before that time (less the overlap) and stayed, so it is in
        K: the current members A are within K + joined. If nobody in K left, A is exactly
        K + joined, and the list's size |A| equals |K| + |joined not in K|. If anyone in K
        left, |A| is smaller than that."""
        end = self.ends[side]
        assert end.list_ref is not None
        joined = list(dict.fromkeys(changes.joined))
        known = self.store.list_known(side, joined)
        entered = sorted(record_id for record_id in joined if record_id not in known)
        if self.store.list_count(side) + len(entered) != changes.size:
            return False
        # Synced before they are mirrored: a crash in between syncs them again next run.
        await self._process_entered(side, entered)
        if not self.dry_run:
            self.store.list_mark(side, entered, uuid.uuid4().hex)
            self.list_refreshed.add(side)
            joined_at = _max(cursor.joined_at, _reached(changes))
            assert joined_at is not None
            self.store.set_list_cursor(
                side, ListCursor(end.list_ref, joined_at, full_read_at=cursor.full_read_at)
            )
        return True

    async def _read_whole_list(self, side: Side, first_sync: bool) -> None:
        end = self.ends[side]
        assert end.list_ref is not None
        generation = uuid.uuid4().hex
        async for ids in end.connector.iter_list_members(end.list_ref):
            entered = [] if first_sync else sorted(set(ids) - self.store.list_known(side, ids))
            await self._process_entered(side, entered)
            if not self.dry_run:
                self.store.list_mark(side, ids, generation)
        if not self.dry_run:
            self.store.list_sweep(side, generation)

    async def _process_entered(self, side: Side, entered: list[str]) -> None:
        end = self.ends[side]
        for chunk in chunks(entered, self.chunk):
            records = await end.connector.read(self.object_type, chunk, end.fields)
            await self.process(side, records)

    # ------------------------------------------------------------------ one chunk
    async def process(self, side: Side, records: list[Record]) -> datetime | None:
        """Sync records read from `side`. Returns the earliest modification time of a
        record that failed for a transient reason (the watermark must not pass it)."""
        records = [_aware(record) for record in records if record.id not in self.handled[side]]
        if not records:
            return None
        if self.dry_run:
            # Nothing is stored in a dry run, so retry_failing cannot tell by the store
            # which records this run already met.
            self.handled[side].update(record.id for record in records)
        self.report.read(side, len(records))
        self.progress.started(side, "reading")
        self.progress.advance(len(records))
        try:
            works, creates = await self.plan(side, records)
        except RetriableError as exc:
            for record in records:
                self.fail(side, record.id, RecordError(exc.reason, str(exc)), ())
            return min(record.modified_at for record in records)
        return await self.write(side, works, creates)

    async def scope(self, side: Side, records: Sequence[Record]) -> dict[str, str | None]:
        """Why each record may not leave its app (None: it may)."""
        end = self.ends[side]
        members: set[str] | None = None
        if end.list_ref is not None and records and side in self.list_refreshed:
            members = self.store.list_known(side, [r.id for r in records])
        elif end.list_ref is not None and records:
            members = set()
            for chunk in chunks([r.id for r in records], end.connector.max_batch_size):
                members |= await end.connector.list_members(end.list_ref, chunk)
        reasons: dict[str, str | None] = {}
        for record in records:
            reason: str | None = None
            if members is not None and record.id not in members:
                reason = "NotInList"
            else:
                for condition in end.filters:
                    if not _passes(condition, record.fields.get(condition.field)):
                        reason = condition.reason
                        break
            reasons[record.id] = reason
        return reasons

    async def plan(self, side: Side, records: list[Record]) -> tuple[list[PairWork], list[Record]]:
        """What to do with `records`: the pairs to decide and write, and the records whose
        counterparts are to be created."""
        here, there = self.ends[side], self.ends[other(side)]
        pairs = self.store.pairs_for(side, [record.id for record in records])
        eligibility = await self.scope(side, records)
        excluded: dict[str, str] = {}
        paired = [record for record in records if record.id in pairs]
        candidates: dict[str, Record] = {}
        for record in records:
            if record.id in pairs:
                continue
            reason = eligibility[record.id]
            if reason is not None:
                excluded[record.id] = reason
                continue
            identity = normalize_identity(record.fields.get(here.identity_field))
            if identity is None:
                excluded[record.id] = "MissingIdentity"
                continue
            current = candidates.get(identity)
            if current is None:
                candidates[identity] = record
            elif _newer(record, current):
                candidates[identity] = record
                excluded[current.id] = "DuplicateIdentity"
            else:
                excluded[record.id] = "DuplicateIdentity"

        # New records: find counterparts by identity before anything is created.
        found: dict[str, list[Record]] = {}
        values = [str(r.fields[here.identity_field]).strip() for r in candidates.values()]
        for chunk in chunks(values, there.connector.max_batch_size):
            for match in await there.connector.lookup(
                self.object_type, there.identity_field, chunk, there.fields
            ):
                key = normalize_identity(match.fields.get(there.identity_field))
                if key in candidates:
                    found.setdefault(key, []).append(_aware(match))
        matches: dict[str, Record] = {}
        creates: list[Record] = []
        extra: list[Record] = []
        for key, record in candidates.items():
            options = sorted(found.get(key, []), key=lambda r: r.modified_at, reverse=True)
            if options:
                matches[record.id] = options[0]
                extra.extend(options[1:])
            else:
                creates.append(record)
        there_pairs = self.store.pairs_for(
            other(side), [r.id for r in matches.values()] + [r.id for r in extra]
        )
        there_excluded = {r.id: "DuplicateIdentity" for r in extra if r.id not in there_pairs}
        # A counterpart already paired with another record of this side: the most
        # recently modified of the two is the match.
        rivals = {
            record_id: there_pairs[match.id].id(side)
            for record_id, match in matches.items()
            if match.id in there_pairs and there_pairs[match.id].id(side) != record_id
        }
        replaced: set[str] = set()
        if rivals:
            latest = {
                r.id: _aware(r)
                for chunk in chunks(sorted(set(rivals.values())), here.connector.max_batch_size)
                for r in await here.connector.read(self.object_type, chunk, here.fields)
            }
            by_id = {record.id: record for record in records}
            for record_id, rival_id in rivals.items():
                rival = latest.get(rival_id)
                if rival is None or _newer(by_id[record_id], rival):
                    replaced.add(rival_id)
                    if rival is not None:
                        excluded[rival_id] = "DuplicateIdentity"
                else:
                    excluded[record_id] = "DuplicateIdentity"
                    del matches[record_id]
        if replaced and not self.dry_run:
            self.store.delete_pairs(
                replaced
                if side == Side.SOURCE
                else [p.source_id for p in self.store.pairs_for(side, replaced).values()]
            )
        paired = self._without_echoes(
            side, [record for record in paired if record.id not in replaced], pairs
        )

        # Known pairs: read the counterparts back by id.
        counterpart_ids = [pairs[record.id].id(other(side)) for record in paired]
        counterparts: dict[str, Record] = {}
        for chunk in chunks(counterpart_ids, there.connector.max_batch_size):
            for found_record in await there.connector.read(self.object_type, chunk, there.fields):
                counterparts[found_record.id] = _aware(found_record)
        works: list[PairWork] = []
        for record in paired:
            pair = pairs[record.id]
            counterpart = counterparts.get(pair.id(other(side)))
            if counterpart is None:
                excluded[record.id] = "CounterpartDeleted"
                continue
            works.append(self._work(side, record, counterpart, pair, eligibility[record.id], False))
        for record in candidates.values():
            if record.id in matches:
                match = matches[record.id]
                ids = {side: record.id, other(side): match.id}
                pair = Pair(ids[Side.SOURCE], ids[Side.DESTINATION], {})
                works.append(self._work(side, record, match, pair, None, True))
        there_scope = await self.scope(other(side), [w.records[other(side)] for w in works])
        for work in works:
            work.eligible[other(side)] = there_scope[work.record_id(other(side))]
            self.remember(other(side), work.record_id(other(side)))
            self.decide(work)

        self.exclude(side, excluded, records)
        self.exclude(other(side), there_excluded, extra)
        return works, creates

    def _without_echoes(
        self, side: Side, paired: list[Record], pairs: dict[str, Pair]
    ) -> list[Record]:
        """Paired records that may need their counterpart. An echo (every value this side
        sends is the one last synced, as when the engine's own write is read back) needs
        nothing from the other side: a change over there is synced by that side's own
        pass, or by retry_failing when it failed. It counts as unchanged and its health is
        left as it is, so only records in sync (no standing health) are taken as echoes:
        a failing or excluded record is decided with its counterpart, as before."""
        if not paired:
            return paired
        standing = self.store.health_for(side, [record.id for record in paired])
        needed: list[Record] = []
        for record in paired:
            if record.id in standing or not self._echo(side, record, pairs[record.id]):
                needed.append(record)
        self.report.counts(other(side)).unchanged += len(paired) - len(needed)
        return needed

    def _echo(self, side: Side, record: Record, pair: Pair) -> bool:
        """Whether each value `record` would send equals the pair's fingerprint (the value
        last synced, in the destination's terms: a source value through the value map)."""
        for mapping in self.mappings:
            if not mapping.writes_to(other(side)):
                continue  # never sent from here: a change of it has no effect (see decide)
            last = pair.fingerprint.get(mapping.key)
            if last is None:
                return False  # never synced (a new mapping, say): decide it in full
            raw = record.fields.get(mapping.field(side))
            value = map_value(raw, mapping.values) if side == Side.SOURCE else raw
            work_print = fingerprint(canonical(value, self.kinds[mapping.key]))
            if work_print != last:
                return False
        return True

    def _work(
        self,
        side: Side,
        record: Record,
        match: Record,
        pair: Pair,
        reason: str | None,
        fresh: bool,
    ) -> PairWork:
        return PairWork(
            pair=pair,
            records={side: record, other(side): match},
            eligible={side: reason},
            fresh=fresh,
        )

    def exclude(self, side: Side, reasons: dict[str, str], records: Iterable[Record]) -> None:
        if not reasons:
            return
        for record_id, reason in reasons.items():
            if self.report.skip(side, record_id, reason) and reason in SAMPLED_SKIPS:
                self.report.sample(side, record_id, reason, _SKIP_MESSAGES.get(reason, reason))
        if not self.dry_run:
            self.store.mark_excluded(side, reasons)

    # ------------------------------------------------------------------ decisions
    def decide(self, work: PairWork) -> None:
        work.plans = [self._decide_field(mapping, work) for mapping in self.mappings]
        for target in SIDES:
            values = {
                plan.mapping.field(target): plan.value
                for plan in work.plans
                if plan.target == target
            }
            if values:
                work.writes[target] = validate_write(
                    self.ends[target].schema, values, self._rules(target, False), create=False
                )

    def _decide_field(self, mapping: ResolvedMapping, work: PairWork) -> FieldPlan:
        source, destination = work.records[Side.SOURCE], work.records[Side.DESTINATION]
        kind = self.kinds[mapping.key]
        source_raw = source.fields.get(mapping.source)
        destination_raw = destination.fields.get(mapping.destination)
        hashes = {
            Side.SOURCE: fingerprint(canonical(map_value(source_raw, mapping.values), kind)),
            Side.DESTINATION: fingerprint(canonical(destination_raw, kind)),
        }
        if hashes[Side.SOURCE] == hashes[Side.DESTINATION]:
            return FieldPlan(mapping, fp_else=hashes[Side.SOURCE])
        blank = {Side.SOURCE: is_blank(source_raw), Side.DESTINATION: is_blank(destination_raw)}
        last = work.pair.fingerprint.get(mapping.key)
        winner: Side | None
        if last is None:
            # First sync of this field: the system of record wins, unless it has no value.
            sor = self.system_of_record
            winner = sor if not blank[sor] else other(sor)
        else:
            changed = [
                side
                for side in SIDES
                if hashes[side] != last
                and mapping.writes_to(other(side))
                and (mapping.blank_overwrites or not blank[side])
            ]
            if not changed:
                winner = None
            elif len(changed) == 1:
                winner = changed[0]
            else:
                winner = self._resolve(mapping, source, destination)
        if mapping.opt_out:
            winner = _opt_out_winner(source_raw, destination_raw, hashes, last, winner)
        one_way = None
        if not mapping.writes_to(Side.SOURCE):
            one_way = hashes[Side.SOURCE]
        elif not mapping.writes_to(Side.DESTINATION):
            one_way = hashes[Side.DESTINATION]
        if winner is None or not mapping.writes_to(other(winner)):
            return FieldPlan(mapping, fp_else=one_way)
        if work.eligible.get(winner) is not None:
            # The record may not leave its app: keep the old fingerprint, sync it later.
            return FieldPlan(mapping, held=winner)
        if winner == Side.SOURCE:
            value = map_value(source_raw, mapping.values)
        else:
            value = map_value(destination_raw, mapping.reverse_values)
        return FieldPlan(
            mapping,
            target=other(winner),
            value=None if is_blank(value) else value,
            fp_written=hashes[winner],
        )

    def _resolve(self, mapping: ResolvedMapping, source: Record, destination: Record) -> Side:
        if not self.most_recent:
            return self.system_of_record
        source_at = (source.field_modified_at or {}).get(mapping.source)
        destination_at = (destination.field_modified_at or {}).get(mapping.destination)
        if source_at is None or destination_at is None:
            source_at, destination_at = source.modified_at, destination.modified_at
        if source_at > destination_at:
            return Side.SOURCE
        if destination_at > source_at:
            return Side.DESTINATION
        return self.system_of_record

    def _rules(self, target: Side, create: bool) -> Mapping[str, FieldRule]:
        # One object per (target, create) for the whole run: validate_write compiles its
        # checks once per rules object.
        made = self._rules_made
        rules = made.get((target, create))
        if rules is None:
            schema = self.ends[target].schema
            rules = made[(target, create)] = MappingProxyType(
                {
                    mapping.field(target): FieldRule(
                        str(value_kind(mapping, schema, target)),
                        required=(mapping.required and mapping.writes_to(target))
                        or (create and mapping.identity),
                    )
                    for mapping in self.mappings
                }
            )
        return rules

    def _create(self, side: Side, record: Record) -> CreateWork | None:
        target = other(side)
        plan = self._create_plans.get(side)
        if plan is None:
            validator = validator_for(
                self.ends[target].schema, self._rules(target, True), create=True
            )
            plan = self._create_plans[side] = (
                create_steps(self.mappings, side, self.kinds, validator),
                validator,
            )
        steps, validator = plan
        fields = record.fields
        checked: dict[str, tuple[RecordError | None, Any]] = {}
        prints = dict(self._created_blanks(target))
        get = fields.get
        for step in steps:
            printed, check = step.prepare(get(step.origin_field))
            prints[step.key] = printed
            if check is not None:
                checked[step.target_field] = check
        if not checked:
            return None
        validated = validator.finish(checked)
        for error in validated.field_errors:
            for mapping in self.mappings:
                if mapping.field(target) == error.field:
                    prints.pop(mapping.key, None)
        return CreateWork(record, target, validated, prints)

    def _created_blanks(self, target: Side) -> Mapping[str, str]:
        """The fingerprints a record created on `target` starts with for the mappings that
        only flow from `target` (nothing is sent for them, so the new record holds a blank):
        what deciding the new pair would store (`fp_else` is the sending side's print), so
        reading the new record back is an echo. Worked out once per run."""
        prints = self._blank_prints.get(target)
        if prints is None:
            prints = self._blank_prints[target] = MappingProxyType(
                {
                    mapping.key: fingerprint(canonical(None, self.kinds[mapping.key]))
                    for mapping in self.mappings
                    if not mapping.writes_to(target) and mapping.writes_to(other(target))
                }
            )
        return prints

    # ------------------------------------------------------------------ writes
    async def write(
        self, side: Side, works: list[PairWork], creates: list[Record]
    ) -> datetime | None:
        hold: datetime | None = None
        target = other(side)
        hold = _min(hold, await self._write_creates(side, creates))
        for write_side in (target, side):
            hold = _min(hold, await self._write_updates(side, write_side, works))
        self._commit_pairs(side, works)
        return hold

    async def _write_creates(self, side: Side, records: list[Record]) -> datetime | None:
        """Create the counterparts of `records` in batches, three steps overlapping: while
        the app writes a batch, the next batch's payloads are worked out (between records
        the event loop lets that write go on), and the batch before's state writes run in
        a worker thread. The store is touched by nothing else meanwhile: a batch's records
        that fail their checks are recorded once the previous state writes are done. Each
        batch's pairs are committed in their own transaction as soon as that thread gets to
        them."""
        target = other(side)
        connector = self.ends[target].connector
        hold: datetime | None = None
        pending: asyncio.Future[None] | None = None
        batches = self._create_batches(side, records, connector.max_batch_size)
        try:
            batch = await anext(batches, None)
            while batch is not None:
                ready, rejected = batch
                writing = None
                if ready:
                    self.progress.started(target, "writing")
                if ready and not self.dry_run:
                    writing = asyncio.ensure_future(
                        connector.create(self.object_type, [w.validated.payload for w in ready])
                    )
                try:
                    batch = await anext(batches, None)
                finally:
                    # Also when working out the next batch failed: this one is recorded.
                    outcome = await _outcome(writing) if writing is not None else None
                    if pending is not None:
                        await pending
                        pending = None
                    ops, batch_hold = self._settle_batch(side, ready, rejected, outcome)
                    hold = _min(hold, batch_hold)
                    if ops:
                        pending = asyncio.ensure_future(asyncio.to_thread(_apply, self.store, ops))
        finally:
            await batches.aclose()
            if pending is not None:
                await pending
        return hold

    def _settle_batch(
        self,
        side: Side,
        ready: list[CreateWork],
        rejected: list[RejectedWork],
        outcome: list[WriteResult] | RetriableError | None,
    ) -> tuple[list[Callable[[], object]], datetime | None]:
        """Count and report a batch of creates (`outcome` is None when nothing was sent):
        the state writes it still needs, and the hold for the watermark."""
        counts = self.report.counts(other(side))
        for work, error in rejected:
            counts.failed += 1
            self.fail(side, work.record.id, error, _sent_values(work))
        if isinstance(outcome, RetriableError):
            for work in ready:
                counts.failed += 1
                self.fail(side, work.record.id, RecordError(outcome.reason, str(outcome)), ())
            return [], min(work.record.modified_at for work in ready)
        self.progress.advance(len(ready))
        if outcome is None:  # a dry run, or only records that failed their checks
            counts.created += len(ready)
            return [], None
        return self._created(side, ready, outcome)

    async def _create_batches(
        self, side: Side, records: list[Record], size: int
    ) -> AsyncGenerator[tuple[list[CreateWork], list[RejectedWork]]]:
        """The create works for `records`: batches of up to `size` ready to send, each with
        the works that failed their checks on the way."""
        ready: list[CreateWork] = []
        rejected: list[RejectedWork] = []
        for index, record in enumerate(records):
            if index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a write in flight sends and receives meanwhile
            work = self._create(side, record)
            if work is None:
                continue
            if work.validated.error is not None:
                rejected.append((work, work.validated.error))
                continue
            ready.append(work)
            if len(ready) == size:
                yield ready, rejected
                ready, rejected = [], []
        if ready or rejected:
            yield ready, rejected

    def _created(
        self, side: Side, batch: list[CreateWork], results: list[WriteResult]
    ) -> tuple[list[Callable[[], object]], datetime | None]:
        """Count and report a written batch of creates; return the state writes it needs,
        in order, and the hold for the watermark."""
        target = other(side)
        counts = self.report.counts(target)
        hold: datetime | None = None
        now = datetime.now(UTC)
        store = self.store
        ops: list[Callable[[], object]] = []
        new_pairs: list[Pair] = []
        in_sync: list[str] = []  # origin ids whose health is cleared, in one statement
        for work, result in zip(batch, _complete(results, len(batch)), strict=True):
            if not result.ok or result.record_id is None:
                counts.failed += 1
                error = result.error or RecordError("AppRejected", "no id returned")
                ops.append(partial(store.clear_health, side, in_sync))  # keep the order
                in_sync = []
                # As fail(), with the store write queued.
                self._record_failure(side, work.record.id, error, _sent_values(work))
                ops.append(
                    partial(store.mark_failing, side, work.record.id, error.reason, error.code, now)
                )
                if error.reason in ("RateLimited", "AppUnavailable"):
                    hold = _min(hold, work.record.modified_at)
                continue
            ids = {side: work.record.id, target: result.record_id}
            new_pairs.append(Pair(ids[Side.SOURCE], ids[Side.DESTINATION], work.fingerprint, now))
            problems = [*work.validated.field_errors, *result.field_errors]
            if problems:
                values = _sent_values(work)
                for problem in problems:
                    self._field_failure(target, result.record_id, problem, values)
                ops.append(
                    partial(
                        store.mark_failing,
                        target,
                        result.record_id,
                        problems[0].reason,
                        problems[0].code,
                        now,
                    )
                )
            else:
                in_sync.append(work.record.id)
            self.remember(target, result.record_id)
        counts.created += len(new_pairs)  # once: the counts are a validated model
        ops.append(partial(store.clear_health, side, in_sync))
        # Created ids are committed as soon as the app returns them.
        ops.append(partial(store.save_pairs, new_pairs))
        return ops, hold

    async def _write_updates(
        self, origin: Side, target: Side, works: list[PairWork]
    ) -> datetime | None:
        hold: datetime | None = None
        ready: list[PairWork] = []
        for work in works:
            validated = work.writes.get(target)
            if validated is None:
                continue
            if validated.error is not None:
                work.failures[target] = validated.error
            elif validated.payload:
                ready.append(work)
            else:
                work.succeeded.add(target)  # every field was dropped: nothing to send
        connector = self.ends[target].connector
        for batch in chunks(ready, connector.max_batch_size):
            self.progress.started(target, "writing")
            if self.dry_run:
                work_results = [WriteResult(w.record_id(target)) for w in batch]
            else:
                try:
                    work_results = _complete(
                        await connector.update(
                            self.object_type,
                            [(w.record_id(target), w.writes[target].payload) for w in batch],
                        ),
                        len(batch),
                    )
                except RetriableError as exc:
                    for work in batch:
                        work.failures[target] = RecordError(exc.reason, str(exc))
                    hold = _min(hold, min(w.records[origin].modified_at for w in batch))
                    continue
            self.progress.advance(len(batch))
            for work, result in zip(batch, work_results, strict=True):
                if result.ok:
                    work.succeeded.add(target)
                    # The write moves the record ahead of its side's read cursor: when that
                    # side is read (now or later in this run), it is not synced again.
                    self.remember(target, work.record_id(target))
                    work.writes[target].field_errors.extend(result.field_errors)
                else:
                    assert result.error is not None
                    work.failures[target] = result.error
                    if result.error.reason in ("RateLimited", "AppUnavailable"):
                        hold = _min(hold, work.records[origin].modified_at)
        return hold

    def _commit_pairs(self, origin: Side, works: list[PairWork]) -> None:
        now = datetime.now(UTC)
        to_save: list[Pair] = []
        excluded: dict[Side, dict[str, str]] = {Side.SOURCE: {}, Side.DESTINATION: {}}
        cleared: dict[Side, list[str]] = {Side.SOURCE: [], Side.DESTINATION: []}
        failing: list[tuple[Side, str, RecordError]] = []
        for work in works:
            dropped: dict[Side, set[str]] = {}
            for target, validated in work.writes.items():
                dropped[target] = {e.field for e in validated.field_errors if e.field}
            prints = dict(work.pair.fingerprint)
            for plan in work.plans:
                if plan.target is not None:
                    name = plan.mapping.field(plan.target)
                    if plan.target in work.succeeded and name not in dropped.get(
                        plan.target, set()
                    ):
                        assert plan.fp_written is not None
                        prints[plan.mapping.key] = plan.fp_written
                elif plan.fp_else is not None:
                    prints[plan.mapping.key] = plan.fp_else
            wrote = False
            for target in work.writes:
                counts = self.report.counts(target)
                values = [
                    *work.records[Side.SOURCE].fields.values(),
                    *work.records[Side.DESTINATION].fields.values(),
                    *work.writes[target].payload.values(),
                ]
                record_id = work.record_id(target)
                if target in work.failures:
                    counts.failed += 1
                    self._record_failure(target, record_id, work.failures[target], values)
                    failing.append((target, record_id, work.failures[target]))
                    continue
                if target in work.succeeded and work.writes[target].payload:
                    counts.updated += 1
                    wrote = True
                for problem in work.writes[target].field_errors:
                    self._field_failure(target, record_id, problem, values)
                if work.writes[target].field_errors:
                    failing.append((target, record_id, work.writes[target].field_errors[0]))
            if not wrote and not work.failures:
                self.report.counts(other(origin)).unchanged += 1
            failing_ids = {(side, record_id) for side, record_id, _ in failing}
            for side in SIDES:
                record_id = work.record_id(side)
                if (side, record_id) in failing_ids:
                    continue
                reason = work.eligible.get(side)
                # A list or filter only stops changes: a record that may not leave its app
                # but changed nothing that would leave it (say, the engine's own write read
                # back) is as in sync as the pair.
                if reason is not None and any(plan.held == side for plan in work.plans):
                    excluded[side][record_id] = reason
                else:
                    cleared[side].append(record_id)
            if work.fresh or prints != work.pair.fingerprint:
                to_save.append(Pair(work.pair.source_id, work.pair.destination_id, prints, now))
        for side in SIDES:
            for record_id, reason in excluded[side].items():
                self.report.skip(side, record_id, reason)
        if self.dry_run:
            return
        with self.store.batch():
            self.store.save_pairs(to_save)
            for side in SIDES:
                self.store.mark_excluded(side, excluded[side])
                self.store.clear_health(side, cleared[side])
            for side, record_id, error in failing:
                self.store.mark_failing(side, record_id, error.reason, error.code, now)

    def remember(self, side: Side, record_id: str) -> None:
        """Note a record this run wrote or matched, so its side's pass does not sync it
        again. Only those: remembering every record read would grow memory with the run
        (about 110 bytes a record). A record read once comes back only if it changed again,
        and then it is synced again; failing records this run already met are told apart by
        when they failed (_failed_before_this_run). A side nothing leaves has no pass."""
        if side in self.leaving:
            self.handled[side].add(record_id)

    def _failed_before_this_run(
        self, ids: list[str], health: Mapping[str, RecordHealth]
    ) -> list[str]:
        def earlier(record_id: str) -> bool:
            found = health.get(record_id)
            failed_at = _utc(found.last_failure_at) if found else None
            return failed_at is None or failed_at < self.started

        return [record_id for record_id in ids if earlier(record_id)]

    # ------------------------------------------------------------------ failures
    def fail(self, side: Side, record_id: str, error: RecordError, values: Iterable[Any]) -> None:
        """A record failed as a whole: report it and keep it failing (retried next run)."""
        self._record_failure(side, record_id, error, values)
        if not self.dry_run:
            self.store.mark_failing(side, record_id, error.reason, error.code, datetime.now(UTC))

    def _record_failure(
        self, side: Side, record_id: str, error: RecordError, values: Iterable[Any]
    ) -> None:
        self.report.failure(
            side,
            record_id,
            error.reason,
            error.message,
            field=error.field,
            code=error.code,
            values=values,
        )

    def _field_failure(
        self, side: Side, record_id: str, error: RecordError, values: Iterable[Any]
    ) -> None:
        self.report.failure(
            side,
            record_id,
            error.reason,
            f"{error.message} (field not written; the rest of the record synced)",
            field=error.field,
            code=error.code,
            values=values,
        )


_SKIP_MESSAGES = {
    "MissingIdentity": "the record has no value in its identity field, so it cannot be "
    "matched; add one (usually the email) in the app",
    "DuplicateIdentity": "another record on the same side has the same identity and was "
    "modified more recently; merge the duplicates in the app",
    "CounterpartDeleted": "the matched record was deleted in the other app; deletions are "
    "not mirrored",
}


# How many create payloads are worked out between two turns of the event loop: a turn lets
# a write in flight send the rest of its batch or take its answer.
_YIELD_EVERY = 50


async def _outcome(
    writing: asyncio.Future[list[WriteResult]],
) -> list[WriteResult] | RetriableError:
    try:
        return await writing
    except RetriableError as exc:
        return exc


def _apply(store: StateStore, ops: list[Callable[[], object]]) -> None:
    """Run state writes in one transaction (in a worker thread)."""
    with store.batch():
        for op in ops:
            op()


def _sent_values(work: CreateWork) -> list[Any]:
    """The values to keep out of a create's failure messages: what was read, and what was
    sent (value maps and coercion change the text)."""
    return [*work.record.fields.values(), *work.validated.payload.values()]


def _checks_fingerprint(spec: DataSyncConnectionSpec, schemas: Mapping[Side, ObjectSchema]) -> str:
    """What local checks depend on besides the record: the spec and both apps' schemas."""
    described = {
        str(side): {
            name: asdict(described_field) for name, described_field in schema.fields.items()
        }
        for side, schema in schemas.items()
    }
    text = json.dumps([spec.model_dump(mode="json"), described], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _complete(results: list[WriteResult], expected: int) -> list[WriteResult]:
    """Guard against a connector returning fewer results than records sent."""
    missing = expected - len(results)
    if missing > 0:
        results = [
            *results,
            *[WriteResult(None, RecordError("AppRejected", "the app returned no result"))]
            * missing,
        ]
    return results[:expected]


def _opted_out(value: Any) -> bool:
    try:
        return coerce(value, "boolean") is True
    except CoercionError:
        return False


def _opt_out_winner(
    source_raw: Any,
    destination_raw: Any,
    hashes: dict[Side, str],
    last: str | None,
    winner: Side | None,
) -> Side | None:
    """The consent rule: the sync never clears an opt-out. When only one side is opted
    out, that side wins if its opt-out is new (first sync, or set since the last sync),
    whatever the system of record or recency say. If it is the old value and the other
    side changed, a person opted back in there: nothing is copied either way (opting back
    in is done in each app by a person)."""
    opted = {Side.SOURCE: _opted_out(source_raw), Side.DESTINATION: _opted_out(destination_raw)}
    if opted[Side.SOURCE] == opted[Side.DESTINATION]:
        return winner
    out = Side.SOURCE if opted[Side.SOURCE] else Side.DESTINATION
    if last is None or hashes[out] != last:
        return out
    return None


def _passes(condition: Filter, value: Any) -> bool:
    operator = FilterOperator(condition.operator)
    if operator == FilterOperator.IS_SET:
        return not is_blank(value)
    if operator == FilterOperator.IS_NOT_SET:
        return is_blank(value)
    text = "" if is_blank(value) else canonical(value, "string").lower()
    allowed = {v.strip().lower() for v in condition.values}
    if operator in (FilterOperator.EQUALS, FilterOperator.IN):
        return text in allowed
    return text not in allowed
