"""The behaviour every connector promises, tested the same way for each of them.

A connector's test module subclasses `ConnectorContract` (its name must start with Test)
and provides a `harness` fixture implementing `ConnectorHarness` against a real app: a
sandbox app over HTTP, or a real PostgreSQL. Tests never skip, and every fault test injects
its fault: a subclass whose app has other faults than HTTP's lists its own in
`transient_faults` (PostgreSQL: the server ending the session).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.api.models import is_reason
from datasync.connector import (
    AuthenticationError,
    ConfigurationError,
    Connector,
    FieldType,
    Record,
    WriteResult,
)
from datasync.sandbox import Fault


class ConnectorHarness(Protocol):
    """What a connector's test module gives the contract tests."""

    object_type: str
    identity_field: str  # the app's email field

    async def connector(self) -> Connector:
        """A connector with valid credentials (the caller closes it)."""

    async def connector_with_bad_credentials(self) -> Connector:
        """A connector whose credentials the app refuses."""

    async def seed(self, records: list[dict[str, Any]]) -> list[str]:
        """Insert records straight into the app (not through the connector); their ids."""

    async def modify(self, record_id: str, fields: dict[str, Any]) -> None:
        """Edit a record behind the connector's back; moves its modified timestamp."""

    async def fetch(self, record_id: str) -> dict[str, Any] | None:
        """A record's fields as the app stores them (app field names), or None."""

    def inject(self, fault: Fault) -> bool:
        """Make the app misbehave as `fault` says; False when it could not (a failure)."""

    def make_record(self, i: int) -> dict[str, Any]:
        """A valid record (app field names) with a unique email derived from i."""

    def make_invalid_record(self) -> dict[str, Any]:
        """A record the app rejects (for example an invalid email)."""

    async def add_to_list(self, list_name: str, record_ids: list[str]) -> str | None:
        """Put records in a list (created when missing) and return the reference the
        connector's list methods accept; None when the app has no lists."""


def _detail_field(harness: ConnectorHarness) -> str:
    """A non-identity field of make_record's records, to edit in tests."""
    fields = [name for name in harness.make_record(0) if name != harness.identity_field]
    assert fields, "make_record must return at least one field besides the identity field"
    return fields[0]


def _fields(harness: ConnectorHarness) -> list[str]:
    return list(harness.make_record(0))


async def _read_all(
    connector: Connector,
    harness: ConnectorHarness,
    since: datetime | None,
    between_pages: Any = None,
) -> tuple[list[Record], datetime | None]:
    records: list[Record] = []
    watermark: datetime | None = None
    pages = 0
    async for page in connector.read_changed(harness.object_type, since, _fields(harness)):
        assert page.records, "read_changed must not yield empty pages"
        assert page.watermark is not None
        assert all(record.modified_at <= page.watermark for record in page.records)
        records.extend(page.records)
        watermark = page.watermark if watermark is None else max(watermark, page.watermark)
        pages += 1
        if between_pages is not None:
            await between_pages(pages, records)
    return records, watermark


def _values_absent(text: str, values: Sequence[Any]) -> bool:
    return all(str(value) not in text for value in values if len(str(value)) >= 4)


HTTP_FAULTS: Mapping[str, Fault] = {
    "429-retry-after": Fault(kind="status", status=429, retry_after=0.05),
    "429-bare": Fault(kind="status", status=429),
    "503-twice": Fault(kind="status", status=503, count=2),
    "500": Fault(kind="status", status=500),
    "connection-reset": Fault(kind="reset"),
}


class ConnectorContract:
    """Shared connector tests; subclasses provide the `harness` fixture."""

    # The transient faults the connector must ride out, by test id: each is injected
    # into the app by the harness and must be served (the read takes more calls).
    transient_faults: ClassVar[Mapping[str, Fault]] = HTTP_FAULTS

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "transient_fault" in metafunc.fixturenames:
            metafunc.parametrize(
                "transient_fault",
                list(self.transient_faults.values()),
                ids=list(self.transient_faults),
            )

    # ------------------------------------------------------------ auth

    async def test_check_succeeds_with_valid_credentials(self, harness: ConnectorHarness) -> None:
        connector = await harness.connector()
        async with connector:
            await connector.check()
            assert connector.api_calls >= 1

    async def test_bad_credentials_name_the_key_without_its_value(
        self, harness: ConnectorHarness
    ) -> None:
        connector = await harness.connector_with_bad_credentials()
        async with connector:
            with pytest.raises(AuthenticationError) as raised:
                await connector.check()
        error = raised.value
        spec = connector.auth_spec(connector.auth_type)
        assert spec is not None
        key_names = {key.name for key in spec.keys}
        assert error.credential in key_names
        assert error.credential is not None and error.credential in str(error)
        assert _values_absent(str(error), list(connector.credentials.values()))

    async def test_credentials_recover_after_a_rejected_token(
        self, harness: ConnectorHarness
    ) -> None:
        """A token that stops working mid-run (expiry, rotation) is renewed transparently."""
        ids = await harness.seed([harness.make_record(i) for i in range(3)])
        connector = await harness.connector()
        async with connector:
            first = await connector.read(harness.object_type, ids, _fields(harness))
            calls_before = connector.api_calls
            await connector.read(harness.object_type, ids, _fields(harness))  # logged in
            clean_calls = connector.api_calls - calls_before
            assert harness.inject(Fault(kind="status", status=401, count=1))
            calls_before = connector.api_calls
            second = await connector.read(harness.object_type, ids, _fields(harness))
            calls = connector.api_calls - calls_before
        assert {record.id for record in first} == set(ids)
        assert {record.id for record in second} == set(ids)
        assert calls > clean_calls, "the refusal was not served: nothing was asked again"

    # ------------------------------------------------------------ describe

    async def test_describe_has_identity_and_standard_fields(
        self, harness: ConnectorHarness
    ) -> None:
        connector = await harness.connector()
        async with connector:
            schema = await connector.describe(harness.object_type)
        identity = schema.fields.get(harness.identity_field)
        assert identity is not None
        assert identity.type == FieldType.EMAIL
        assert not identity.read_only
        assert connector.identity_field(harness.object_type) == harness.identity_field
        for app_field in connector.standard_fields[harness.object_type].values():
            assert app_field in schema.fields, f"standard field {app_field} not described"
        for name, field_schema in schema.fields.items():
            assert field_schema.name == name
            assert isinstance(field_schema.type, FieldType)
            if field_schema.type == FieldType.ENUMERATION:
                assert field_schema.options, f"enumeration {name} has no options"
        for name in harness.make_record(0):
            assert name in schema.fields

    # ------------------------------------------------------------ incremental reads

    async def test_incremental_read_misses_nothing_changed_during_the_read(
        self, harness: ConnectorHarness
    ) -> None:
        ids = await harness.seed([harness.make_record(i) for i in range(450)])
        detail = _detail_field(harness)
        modified: dict[str, str] = {}
        pages_read: list[int] = []

        async def edit_between_pages(page: int, read_so_far: list[Record]) -> None:
            pages_read.append(page)
            if page > 2:
                return
            # Edit records already read (they move to the end of the order) and one not
            # yet read: offset paging would now skip records.
            already = [record.id for record in read_so_far[:3]]
            unread = [record_id for record_id in ids if record_id not in modified][-1:]
            for record_id in [*already, *unread]:
                value = f"Changed{page}x{record_id}"
                await harness.modify(record_id, {detail: value})
                modified[record_id] = value

        connector = await harness.connector()
        async with connector:
            first, watermark = await _read_all(connector, harness, None, edit_between_pages)
            # Edits after the first page (made while more were to come) are what this is
            # about: a read in one page would edit only after reading everything.
            assert len(pages_read) >= 2, "the read fit one page: make the harness's pages smaller"
            assert {record.id for record in first} >= set(ids)
            stamps = [record.modified_at for record in first]
            assert stamps == sorted(stamps), "records must come oldest first"
            second, _ = await _read_all(connector, harness, watermark)
        latest: dict[str, Any] = {}
        for record in [*first, *second]:
            latest[record.id] = record.fields.get(detail)
        for record_id, value in modified.items():
            assert latest[record_id] == value, f"the edit of {record_id} was missed"

    async def test_nothing_new_after_the_watermark(self, harness: ConnectorHarness) -> None:
        await harness.seed([harness.make_record(i) for i in range(5)])
        connector = await harness.connector()
        async with connector:
            first, watermark = await _read_all(connector, harness, None)
            assert watermark is not None
            again, _ = await _read_all(connector, harness, watermark)
            seen = {(record.id, record.modified_at) for record in first}
            assert all((record.id, record.modified_at) in seen for record in again)
            target = first[0].id
            await harness.modify(target, {_detail_field(harness): "After the watermark"})
            later, _ = await _read_all(connector, harness, watermark)
        assert target in {record.id for record in later}

    # ------------------------------------------------------------ reads by key

    async def test_read_by_ids(self, harness: ConnectorHarness) -> None:
        records = [harness.make_record(i) for i in range(4)]
        ids = await harness.seed(records)
        connector = await harness.connector()
        async with connector:
            found = await connector.read(harness.object_type, ids[:3], _fields(harness))
        assert sorted(record.id for record in found) == sorted(ids[:3])
        for record in found:
            stored = await harness.fetch(record.id)
            assert stored is not None
            identity = record.fields[harness.identity_field]
            assert str(identity).lower() == str(stored[harness.identity_field]).lower()

    async def test_lookup_by_identity_is_case_insensitive_and_batched(
        self, harness: ConnectorHarness
    ) -> None:
        connector = await harness.connector()
        count = connector.max_batch_size + 5
        records = [harness.make_record(1000 + i) for i in range(count)]
        ids = await harness.seed(records)
        emails = [str(record[harness.identity_field]).upper() for record in records]
        async with connector:
            found = await connector.lookup(
                harness.object_type,
                harness.identity_field,
                [*emails, "Nobody.Here@Example.Invalid"],
                _fields(harness),
            )
        assert sorted(record.id for record in found) == sorted(ids)

    # ------------------------------------------------------------ writes

    async def test_create_and_update_report_each_record_in_order(
        self, harness: ConnectorHarness
    ) -> None:
        invalid = harness.make_invalid_record()
        batch = [harness.make_record(2000), invalid, harness.make_record(2001)]
        connector = await harness.connector()
        async with connector:
            created = await connector.create(harness.object_type, batch)
            assert len(created) == 3
            self._assert_rejected(created[1], invalid)
            for result, record in ((created[0], batch[0]), (created[2], batch[2])):
                assert result.ok and result.record_id
                stored = await harness.fetch(result.record_id)
                assert stored is not None
                assert (
                    str(stored[harness.identity_field]).lower()
                    == str(record[harness.identity_field]).lower()
                )
            good_ids = [created[0].record_id, created[2].record_id]
            assert all(good_ids)
            detail = _detail_field(harness)
            updates = [
                (str(good_ids[0]), {detail: "Updated"}),
                (str(good_ids[1]), invalid),
            ]
            updated = await connector.update(harness.object_type, updates)
        assert len(updated) == 2
        assert updated[0].ok and updated[0].record_id == good_ids[0]
        stored = await harness.fetch(str(good_ids[0]))
        assert stored is not None and stored[detail] == "Updated"
        self._assert_rejected(updated[1], invalid)

    _unique = itertools.count(100_000)

    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(valid=st.lists(st.booleans(), min_size=1, max_size=12))
    async def test_any_mix_of_good_and_bad_records_keeps_input_order(
        self, harness: ConnectorHarness, valid: list[bool]
    ) -> None:
        batch = [
            harness.make_record(next(self._unique)) if ok else harness.make_invalid_record()
            for ok in valid
        ]
        connector = await harness.connector()
        async with connector:
            results = await connector.create(harness.object_type, batch)
        assert [result.ok for result in results] == valid
        for result, record in zip(results, batch, strict=True):
            if not result.ok:
                continue
            assert result.record_id is not None
            stored = await harness.fetch(result.record_id)
            assert stored is not None
            assert (
                str(stored[harness.identity_field]).lower()
                == str(record[harness.identity_field]).lower()
            )

    @staticmethod
    def _assert_rejected(result: WriteResult, invalid: dict[str, Any]) -> None:
        assert not result.ok and result.error is not None
        assert is_reason(result.error.reason), result.error.reason
        assert result.error.code, "the app's error code must be passed through"
        assert _values_absent(result.error.message, list(invalid.values()))

    # ------------------------------------------------------------ transient faults

    async def test_transient_faults_are_retried(
        self, harness: ConnectorHarness, transient_fault: Fault
    ) -> None:
        fault = transient_fault
        ids = await harness.seed([harness.make_record(i) for i in range(2)])
        connector = await harness.connector()
        async with connector:
            await connector.read(harness.object_type, ids, _fields(harness))  # logged in
            calls_before = connector.api_calls
            await connector.read(harness.object_type, ids, _fields(harness))
            clean_calls = connector.api_calls - calls_before
            assert harness.inject(dataclasses.replace(fault))  # a fresh copy: count is spent
            calls_before = connector.api_calls
            found = await connector.read(harness.object_type, ids, _fields(harness))
            calls = connector.api_calls - calls_before
        assert sorted(record.id for record in found) == sorted(ids)
        assert calls >= clean_calls + fault.count, "the faulty answers were not retried"

    # ------------------------------------------------------------ lists

    async def test_list_membership(self, harness: ConnectorHarness) -> None:
        ids = await harness.seed([harness.make_record(3000 + i) for i in range(5)])
        list_ref = await harness.add_to_list("Contract Members", ids[:3])
        connector = await harness.connector()
        async with connector:
            if list_ref is None:
                with pytest.raises(ConfigurationError):
                    await connector.list_members("Contract Members", ids)
                return
            pages = [page async for page in connector.iter_list_members(list_ref)]
            members = await connector.list_members(list_ref, ids)
        assert {record_id for page in pages for record_id in page} == set(ids[:3])
        assert members == set(ids[:3])

    async def test_list_changes_agree_with_the_members(self, harness: ConnectorHarness) -> None:
        """A connector with a join-order feed reports the list's size, where its feed
        stands, and who joined since a time; one without it answers None (full reads)."""
        ids = await harness.seed([harness.make_record(3100 + i) for i in range(4)])
        list_ref = await harness.add_to_list("Contract Joins", ids[:3])
        if list_ref is None:
            return
        connector = await harness.connector()
        async with connector:
            start = await connector.list_changes(list_ref, None)
            if start is None:
                return
            everyone = await connector.list_changes(list_ref, datetime(2000, 1, 1, tzinfo=UTC))
            nobody = await connector.list_changes(list_ref, datetime(2999, 1, 1, tzinfo=UTC))
        assert (start.size, start.joined) == (3, [])
        assert start.as_of is not None or start.latest is not None
        assert everyone is not None and everyone.size == 3
        assert sorted(everyone.joined) == sorted(ids[:3])
        assert nobody is not None and (nobody.size, nobody.joined) == (3, [])
        assert nobody.latest is not None
