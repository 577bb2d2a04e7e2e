"""An in-memory app behind the full Connector interface, for engine tests.

`MemoryApp` holds the records (it outlives connector instances, like a real app), a
logical clock shared by both apps of a test (so "more recent" is well defined), optional
per-field timestamps, a schema (required, options, max length, read-only), lists, failure
injection and a kill switch that simulates a crash at the N-th write call.
Test code edits the app directly (`add`, `edit`, `delete`); those are not API calls.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from datasync.api.models import AuthType
from datasync.connector import (
    AuthSpec,
    Connector,
    FieldSchema,
    FieldType,
    ListChanges,
    ObjectSchema,
    ReadPage,
    Record,
    RecordError,
    RetriableError,
    SecretKey,
    WriteResult,
)


class Killed(BaseException):
    """The process "died" during a write call."""


class Clock:
    def __init__(self, step: timedelta = timedelta(minutes=1)) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.step = step

    def tick(self) -> datetime:
        self.now += self.step
        return self.now


@dataclass
class KillSwitch:
    """Raise `Killed` at the `at`-th write call (shared by both apps of a test)."""

    at: int | None = None
    before_apply: bool = False
    calls: int = 0

    def hit(self) -> bool:
        """Count a write call; True when this call is the fatal one."""
        self.calls += 1
        return self.at is not None and self.calls == self.at


@dataclass
class Stored:
    id: str
    fields: dict[str, Any]
    modified_at: datetime
    field_modified_at: dict[str, datetime]


class Members(set[str]):
    """A list's members that remember when each joined (the app's join-order feed).
    Joining again after leaving is a new joining time, as in HubSpot."""

    def __init__(self, clock: Clock, ids: Iterable[str] = ()) -> None:
        super().__init__()
        self.clock = clock
        self.joined_at: dict[str, datetime] = {}
        for record_id in ids:
            self.add(record_id)

    def add(self, record_id: str) -> None:
        if record_id not in self:
            self.joined_at[record_id] = self.clock.now
        super().add(record_id)

    def discard(self, record_id: str) -> None:
        self.joined_at.pop(record_id, None)
        super().discard(record_id)

    def remove(self, record_id: str) -> None:
        self.joined_at.pop(record_id)
        super().remove(record_id)


class Lists(dict[str, set[str]]):
    """List name -> members; a plain set assigned by a test joins its ids now."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def __setitem__(self, name: str, members: set[str]) -> None:
        if not isinstance(members, Members):
            members = Members(self.clock, members)
        super().__setitem__(name, members)


class _Settings(BaseModel):
    pass


def contact_fields(style: str) -> dict[str, FieldSchema]:
    """Contact schemas in two naming styles: "lower" (HubSpot-like), "title" (SF-like)."""
    if style == "lower":
        specs = [
            FieldSchema("email", FieldType.EMAIL, max_length=254),
            FieldSchema("firstname", FieldType.STRING, max_length=40),
            FieldSchema("lastname", FieldType.STRING, max_length=80),
            FieldSchema("phone", FieldType.PHONE),
            FieldSchema("company", FieldType.STRING, max_length=80),
            FieldSchema("optout", FieldType.BOOLEAN),
            FieldSchema("score", FieldType.NUMBER),
            FieldSchema("birthday", FieldType.DATE),
            FieldSchema("stage", FieldType.ENUMERATION, options=("lead", "customer")),
            FieldSchema("createdate", FieldType.DATETIME, read_only=True),
        ]
    else:
        specs = [
            FieldSchema("Email", FieldType.EMAIL, max_length=80),
            FieldSchema("FirstName", FieldType.STRING, max_length=40),
            FieldSchema("LastName", FieldType.STRING, required=True, max_length=80),
            FieldSchema("Phone", FieldType.PHONE),
            FieldSchema("Company", FieldType.STRING, max_length=20),
            FieldSchema("OptOut", FieldType.BOOLEAN),
            FieldSchema("Score", FieldType.NUMBER),
            FieldSchema("Birthdate", FieldType.DATE),
            FieldSchema("Status", FieldType.ENUMERATION, options=("Open", "Closed Won")),
            FieldSchema("CreatedDate", FieldType.DATETIME, read_only=True),
        ]
    return {spec.name: spec for spec in specs}


STANDARD = {
    "lower": {
        "email": "email",
        "firstName": "firstname",
        "lastName": "lastname",
        "phone": "phone",
        "company": "company",
        "emailOptOut": "optout",
    },
    "title": {
        "email": "Email",
        "firstName": "FirstName",
        "lastName": "LastName",
        "phone": "Phone",
        "company": "Company",
        "emailOptOut": "OptOut",
    },
}


class MemoryApp:
    _ids = itertools.count(1)

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        style: str = "lower",
        field_timestamps: bool = True,
        max_batch_size: int = 10,
        page_size: int = 7,
        kill: KillSwitch | None = None,
        join_order: bool = True,
    ) -> None:
        self.name = name
        self.clock = clock
        self.style = style
        self.schema = contact_fields(style)
        self.standard_fields = {"contacts": dict(STANDARD[style])}
        self.field_timestamps = field_timestamps
        self.max_batch_size = max_batch_size
        self.page_size = page_size
        self.kill = kill or KillSwitch()
        self.records: dict[str, Stored] = {}
        self.lists: dict[str, set[str]] = Lists(clock)
        self.join_order = join_order  # the connector offers list_changes
        self.calls: dict[str, int] = {}
        self.read_ids: list[str] = []  # every id asked for by id (read), in order
        self.call_log: list[str] = []
        self.naive_times = False  # report times without a timezone (as some drivers do)
        self.write_calls = 0
        self.blank_erasures = 0
        # Failure injection
        self.fail_operations: dict[str, str] = {}  # operation -> RetriableError reason
        self.fatal: Exception | None = None  # raised by every call
        self.reject_values: dict[str, set[str]] = {}  # field -> values the app refuses
        self.refuse_fields: dict[str, str] = {}  # field -> code: dropped, record still saved

    # ------------------------------------------------------------ test-side edits
    @property
    def identity_field(self) -> str:
        return self.standard_fields["contacts"]["email"]

    def _new_id(self) -> str:
        return f"{self.name}-{next(self._ids)}"

    def add(self, **fields: Any) -> str:
        record_id = self._new_id()
        now = self.clock.tick()
        self.records[record_id] = Stored(
            record_id, dict(fields), now, {name: now for name in fields}
        )
        return record_id

    def edit(self, record_id: str, **fields: Any) -> None:
        now = self.clock.tick()
        stored = self.records[record_id]
        stored.fields.update(fields)
        stored.modified_at = now
        for name in fields:
            stored.field_modified_at[name] = now

    def delete(self, record_id: str) -> None:
        del self.records[record_id]
        for members in self.lists.values():
            members.discard(record_id)

    def get(self, record_id: str) -> dict[str, Any]:
        return dict(self.records[record_id].fields)

    def find(self, email: str) -> list[str]:
        wanted = email.strip().lower()
        return [
            r.id
            for r in self.records.values()
            if str(r.fields.get(self.identity_field) or "").strip().lower() == wanted
        ]

    def by_identity(self) -> dict[str, dict[str, Any]]:
        """Records keyed by lower-cased identity (asserts there is no duplicate)."""
        result: dict[str, dict[str, Any]] = {}
        for stored in self.records.values():
            key = str(stored.fields.get(self.identity_field) or "").strip().lower()
            if not key:
                continue
            assert key not in result, f"duplicate identity in {self.name}"
            result[key] = dict(stored.fields)
        return result

    def connector(self) -> MemoryConnector:
        return MemoryConnector(self)

    # ------------------------------------------------------------ API side
    def _call(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        self.call_log.append(operation)
        if self.fatal is not None:
            raise self.fatal
        reason = self.fail_operations.get(operation)
        if reason is not None:
            raise RetriableError(f"{self.name} {operation} failed after retries", reason)

    def _time(self, value: datetime) -> datetime:
        return value.replace(tzinfo=None) if self.naive_times else value

    def _record(self, stored: Stored, fields: Sequence[str]) -> Record:
        return Record(
            id=stored.id,
            fields={name: copy.deepcopy(stored.fields.get(name)) for name in fields},
            modified_at=self._time(stored.modified_at),
            field_modified_at=(
                {
                    name: self._time(at)
                    for name, at in stored.field_modified_at.items()
                    if name in fields
                }
                if self.field_timestamps
                else None
            ),
        )

    def _write_call(self) -> bool:
        """Count a write call; raise Killed now or return True to raise after applying."""
        self.write_calls += 1
        if self.kill.hit():
            if self.kill.before_apply:
                raise Killed
            return True
        return False

    def _check_values(
        self, fields: Mapping[str, Any]
    ) -> tuple[RecordError | None, dict[str, Any], list[RecordError]]:
        kept: dict[str, Any] = {}
        dropped: list[RecordError] = []
        for name, value in fields.items():
            if name not in self.schema:
                return RecordError("UnknownField", f"no field {name}", name, "UNKNOWN"), {}, []
            if self.schema[name].read_only:
                return (
                    RecordError("ReadOnlyField", f"{name} is read-only", name, "READ_ONLY"),
                    {},
                    [],
                )
            if value is not None and str(value) in self.reject_values.get(name, set()):
                # Apps quote the offending value; the engine must scrub it.
                return (
                    RecordError(
                        "AppRejected", f"value {value} rejected for {name}", name, "INVALID"
                    ),
                    {},
                    [],
                )
            if name in self.refuse_fields:
                dropped.append(
                    RecordError(
                        "AppRejected", f"{name} refused: {value}", name, self.refuse_fields[name]
                    )
                )
                continue
            kept[name] = value
        return None, kept, dropped


class MemoryConnector(Connector):
    name = "memory"
    title = "In-memory app"
    auth = (
        AuthSpec(
            AuthType.APP_PARAMETERS, "A token", (SecretKey("token", "Any value", optional=True),)
        ),
    )
    settings_model = _Settings
    standard_fields: Mapping[str, Mapping[str, str]] = {}
    max_batch_size = 10

    def __init__(self, app: MemoryApp) -> None:
        super().__init__({}, {}, AuthType.APP_PARAMETERS)
        self.app = app
        self.standard_fields = app.standard_fields  # type: ignore[misc]
        self.max_batch_size = app.max_batch_size  # type: ignore[misc]
        self._calls = 0

    def identity_field(self, object_type: str) -> str:  # type: ignore[override]
        return self.standard_fields[object_type]["email"]

    @property
    def api_calls(self) -> int:
        return self._calls

    def _call(self, operation: str) -> None:
        self._calls += 1
        self.app._call(operation)

    async def check(self) -> None:
        self._call("check")

    async def describe(self, object_type: str) -> ObjectSchema:
        self._call("describe")
        return ObjectSchema(object_type, dict(self.app.schema))

    async def read_changed(
        self, object_type: str, since: datetime | None, fields: Sequence[str]
    ) -> AsyncIterator[ReadPage]:
        last: tuple[datetime, str] | None = None
        while True:
            self._call("read_changed")
            keys = sorted(
                (r.modified_at, r.id)
                for r in self.app.records.values()
                if (since is None or r.modified_at >= since)
                and (last is None or (r.modified_at, r.id) > last)
            )[: self.app.page_size]
            if not keys:
                return
            last = keys[-1]
            records = [self._read_one(record_id, fields) for _, record_id in keys]
            yield ReadPage(records, watermark=self.app._time(keys[-1][0]))

    def _read_one(self, record_id: str, fields: Sequence[str]) -> Record:
        return self.app._record(self.app.records[record_id], fields)

    async def read(
        self, object_type: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        assert len(ids) <= self.max_batch_size, "read batch larger than max_batch_size"
        self._call("read")
        self.app.read_ids.extend(ids)
        return [self._read_one(i, fields) for i in ids if i in self.app.records]

    async def lookup(
        self, object_type: str, field: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        assert len(values) <= self.max_batch_size, "lookup batch larger than max_batch_size"
        self._call("lookup")
        wanted = {str(v).strip().lower() for v in values}
        return [
            self.app._record(r, fields)
            for r in self.app.records.values()
            if str(r.fields.get(field) or "").strip().lower() in wanted
        ]

    async def list_members(self, list_ref: str, ids: Sequence[str]) -> set[str]:
        self._call("list_members")
        return set(ids) & self.app.lists.get(list_ref, set())

    async def iter_list_members(self, list_ref: str) -> AsyncIterator[list[str]]:
        members = sorted(self.app.lists.get(list_ref, set()))
        for start in range(0, len(members), self.app.page_size):
            self._call("iter_list_members")
            yield members[start : start + self.app.page_size]

    async def list_changes(self, list_ref: str, since: datetime | None) -> ListChanges | None:
        if not self.app.join_order:
            return None
        self._call("list_changes")
        members = self.app.lists.get(list_ref) or Members(self.app.clock)
        assert isinstance(members, Members)
        order = sorted((at, record_id) for record_id, at in members.joined_at.items())
        joined = [record_id for at, record_id in order if since is not None and at >= since]
        latest = self.app._time(order[-1][0]) if order else None
        now = self.app._time(self.app.clock.now)
        return ListChanges(size=len(members), joined=joined, latest=latest, as_of=now)

    async def create(
        self, object_type: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        assert len(records) <= self.max_batch_size, "create batch larger than max_batch_size"
        self._call("create")
        die_after = self.app._write_call()
        results: list[WriteResult] = []
        for fields in records:
            error, kept, dropped = self.app._check_values(fields)
            if error is None:
                for name, spec in self.app.schema.items():
                    if spec.required and kept.get(name) in (None, ""):
                        error = RecordError(
                            "RequiredFieldMissing", f"{name} is required", name, "REQUIRED"
                        )
            if error is not None:
                results.append(WriteResult(None, error))
                continue
            record_id = self.app._new_id()
            now = self.app.clock.tick()
            self.app.records[record_id] = Stored(
                record_id, dict(kept), now, {name: now for name in kept}
            )
            results.append(WriteResult(record_id, field_errors=tuple(dropped)))
        if die_after:
            raise Killed
        return results

    async def update(
        self, object_type: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[WriteResult]:
        assert len(updates) <= self.max_batch_size, "update batch larger than max_batch_size"
        self._call("update")
        die_after = self.app._write_call()
        results: list[WriteResult] = []
        for record_id, fields in updates:
            stored = self.app.records.get(record_id)
            if stored is None:
                results.append(
                    WriteResult(
                        record_id, RecordError("NotFound", "no such record", code="NOT_FOUND")
                    )
                )
                continue
            error, kept, dropped = self.app._check_values(fields)
            if error is not None:
                results.append(WriteResult(record_id, error))
                continue
            changed = {k: v for k, v in kept.items() if stored.fields.get(k) != v}
            if changed:
                now = self.app.clock.tick()
                for name, value in changed.items():
                    old = stored.fields.get(name)
                    if value in (None, "") and old not in (None, ""):
                        self.app.blank_erasures += 1
                    stored.fields[name] = value
                    stored.field_modified_at[name] = now
                stored.modified_at = now
            results.append(WriteResult(record_id, field_errors=tuple(dropped)))
        if die_after:
            raise Killed
        return results
