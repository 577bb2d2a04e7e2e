"""The Salesforce connector against the Salesforce sandbox, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from datasync_connectors.salesforce import SalesforceConnector
from datasync_connectors.salesforce import connector as salesforce_connector
from datasync_connectors.salesforce.sandbox import SalesforceSandbox
from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.api.models import AuthType, DataSyncConnectionSpec
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    Connector,
    FieldType,
    RetriableError,
)
from datasync.engine import run_sync
from datasync.http import Action, RetryPolicy
from datasync.registry import get as get_connector
from datasync.sandbox import Fault, RateLimit
from datasync.state import open_store
from tests.connectors.contract import ConnectorContract

FIELDS = ["Email", "FirstName", "LastName", "Title", "Status__c", "Source__c"]
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@dataclass
class SalesforceHarness:
    """The connector contract's view of a Salesforce sandbox (see tests/connectors)."""

    sandbox: SalesforceSandbox
    auth_type: AuthType
    object_type: str = "contacts"
    identity_field: str = "Email"
    settings: dict[str, str] = field(default_factory=dict)
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def _build(self, credentials: Mapping[str, str]) -> SalesforceConnector:
        settings = self.sandbox.connector_settings() | self.settings
        connector = SalesforceConnector(settings, credentials, self.auth_type)
        connector.http.retry = FAST
        return connector

    async def connector(self) -> Connector:
        return self._build(self.sandbox.credentials(self.auth_type))

    async def connector_with_bad_credentials(self) -> Connector:
        credentials = self.sandbox.credentials(self.auth_type)
        credentials["clientSecret"] = "not-the-secret"
        return self._build(credentials)

    async def seed(self, records: list[dict[str, Any]]) -> list[str]:
        return [self.sandbox.insert(record) for record in records]

    async def modify(self, record_id: str, fields: dict[str, Any]) -> None:
        self.sandbox.set_fields(record_id, fields)

    async def fetch(self, record_id: str) -> dict[str, Any] | None:
        return self.sandbox.get(record_id)

    def inject(self, fault: Fault) -> bool:
        self.sandbox.inject(fault)
        return True

    def make_record(self, i: int) -> dict[str, Any]:
        return {
            "FirstName": f"First{i}",
            "LastName": f"Last{i}",
            "Email": f"person{i}.{self._run}@example.com",
            "Title": f"Title {i}",
        }

    def make_invalid_record(self) -> dict[str, Any]:
        return {"FirstName": "No Last Name", "Email": "not-an-email"}

    async def add_to_list(self, list_name: str, record_ids: list[str]) -> str | None:
        campaign = self.sandbox.campaign_id(list_name) or self.sandbox.create_campaign(list_name)
        for record_id in record_ids:
            self.sandbox.add_to_campaign(campaign, record_id)
        return list_name  # by Campaign Name: the connector looks the Id up


@pytest.fixture(autouse=True)
def _allow_sandbox_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASYNC_ALLOW_SANDBOX_URLS", "true")


@pytest.fixture
async def sandbox() -> AsyncIterator[SalesforceSandbox]:
    app = SalesforceSandbox()
    await app.start()
    yield app
    await app.stop()


@pytest.fixture(params=[AuthType.OAUTH, AuthType.APP_PARAMETERS], ids=["OAuth", "AppParameters"])
async def harness(
    request: pytest.FixtureRequest, sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> SalesforceHarness:
    # Salesforce's smallest query batch, and a page per query batch (instead of up to
    # 10,000 records), so the contract's few hundred records span pages.
    sandbox.query_batch_size = 200
    monkeypatch.setattr(salesforce_connector, "READ_PAGE_RECORDS", sandbox.query_batch_size)
    return SalesforceHarness(sandbox, request.param)


@pytest.fixture
async def connector(harness: SalesforceHarness) -> AsyncIterator[SalesforceConnector]:
    built = await harness.connector()
    assert isinstance(built, SalesforceConnector)
    async with built:
        yield built


def _oauth(sandbox: SalesforceSandbox, **settings: str) -> SalesforceConnector:
    connector = SalesforceConnector(
        sandbox.connector_settings() | settings,
        sandbox.credentials(AuthType.OAUTH),
        AuthType.OAUTH,
    )
    connector.http.retry = FAST
    return connector


async def _read_all(
    connector: Connector, since: datetime | None = None, fields: list[str] = FIELDS
) -> list[Any]:
    return [page async for page in connector.read_changed("contacts", since, fields)]


# ---------------------------------------------------------------- contract cases


class TestSalesforceContract(ConnectorContract):
    """The shared connector contract, with OAuth and with AppParameters."""


def test_registered_as_entry_point() -> None:
    assert get_connector("salesforce") is SalesforceConnector


async def test_check_passes(connector: SalesforceConnector) -> None:
    await connector.check()
    assert connector.api_usage is not None


async def test_bad_credentials_name_the_secret_key(harness: SalesforceHarness) -> None:
    connector = await harness.connector_with_bad_credentials()
    async with connector:
        with pytest.raises(AuthenticationError) as caught:
            await connector.check()
    assert caught.value.credential == "clientSecret"
    assert "invalid_client" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


async def test_create_then_read_back(
    harness: SalesforceHarness, connector: SalesforceConnector
) -> None:
    records = [harness.make_record(i) for i in range(3)]
    results = await connector.create("contacts", records)
    assert all(result.ok for result in results)
    ids = [result.record_id for result in results]
    assert all(ids) and len(set(ids)) == 3
    stored = await harness.fetch(ids[1])  # type: ignore[arg-type]
    assert stored is not None and stored["Email"] == records[1]["Email"]
    read = await connector.read("contacts", [ids[2], ids[0], "003Dn0000000zzzIAA"], FIELDS)
    assert {record.id: record.fields["Email"] for record in read} == {
        ids[0]: records[0]["Email"],
        ids[2]: records[2]["Email"],
    }


async def test_update_writes_and_moves_modstamp(
    harness: SalesforceHarness, connector: SalesforceConnector
) -> None:
    (record_id,) = await harness.seed([harness.make_record(1)])
    before = await harness.fetch(record_id)
    results = await connector.update("contacts", [(record_id, {"Title": "CTO"})])
    assert results[0].ok and results[0].record_id == record_id
    after = await harness.fetch(record_id)
    assert after is not None and before is not None
    assert after["Title"] == "CTO" and after["SystemModstamp"] > before["SystemModstamp"]


async def test_invalid_record_fails_alone(
    harness: SalesforceHarness, connector: SalesforceConnector
) -> None:
    results = await connector.create(
        "contacts", [harness.make_record(1), harness.make_invalid_record(), harness.make_record(2)]
    )
    assert [result.ok for result in results] == [True, False, True]
    error = results[1].error
    assert error is not None and results[1].record_id is None
    assert error.code == "INVALID_EMAIL_ADDRESS" and error.reason == "InvalidEmail"
    assert "(and 1 more error)" in error.message  # LastName is missing too
    assert "not-an-email" not in error.message


async def test_read_changed_pages_and_watermarks(
    harness: SalesforceHarness, connector: SalesforceConnector
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(5)])
    pages = await _read_all(connector)
    records = [record for page in pages for record in page.records]
    assert [record.id for record in records] == ids  # oldest first
    assert pages[-1].watermark == records[-1].modified_at
    await harness.modify(ids[2], {"Title": "changed"})
    later = await _read_all(connector, since=pages[-1].watermark)
    changed = [record for page in later for record in page.records]
    # `since` is inclusive: records stamped at the watermark may come again, the edited must.
    assert ids[2] in [record.id for record in changed]
    at_watermark = {record.id for record in records if record.modified_at == pages[-1].watermark}
    assert {record.id for record in changed} <= {ids[2], *at_watermark}
    assert next(r for r in changed if r.id == ids[2]).fields["Title"] == "changed"


async def test_lookup_by_email_ignores_case(
    harness: SalesforceHarness, connector: SalesforceConnector
) -> None:
    records = [harness.make_record(i) for i in range(3)]
    ids = await harness.seed(records)
    found = await connector.lookup(
        "contacts", "Email", [records[0]["Email"].upper(), "nobody@example.com"], FIELDS
    )
    assert [record.id for record in found] == [ids[0]]


async def test_describe(connector: SalesforceConnector) -> None:
    schema = await connector.describe("contacts")
    fields = schema.fields
    assert fields["LastName"].required and not fields["FirstName"].required
    assert fields["Email"].type is FieldType.EMAIL
    assert fields["Phone"].type is FieldType.PHONE
    assert fields["HasOptedOutOfEmail"].type is FieldType.BOOLEAN
    assert not fields["HasOptedOutOfEmail"].required  # defaulted on create
    assert fields["Id"].read_only and fields["SystemModstamp"].read_only
    assert fields["SystemModstamp"].type is FieldType.DATETIME
    assert fields["Status__c"].type is FieldType.ENUMERATION
    assert fields["Status__c"].options and "Customer" in fields["Status__c"].options
    assert not fields["Status__c"].required
    assert fields["Source__c"].max_length == 40


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, count=2),
        Fault(kind="status", status=503, count=1, retry_after=0.01),
        Fault(kind="reset", count=1),
        Fault(kind="malformed", count=1),
        Fault(kind="slow", delay=0.05),
    ],
    ids=["503", "503-retry-after", "reset", "malformed", "slow"],
)
async def test_read_survives_transient_faults(
    harness: SalesforceHarness, connector: SalesforceConnector, fault: Fault
) -> None:
    ids = await harness.seed([harness.make_record(i) for i in range(3)])
    await connector.check()
    assert harness.inject(fault)
    records = [record for page in await _read_all(connector) for record in page.records]
    assert [record.id for record in records] == ids


async def test_faults_that_outlive_retries_are_retriable(
    harness: SalesforceHarness, connector: SalesforceConnector
) -> None:
    await connector.check()
    harness.inject(Fault(kind="status", status=503, count=50))
    with pytest.raises(RetriableError) as caught:
        await _read_all(connector)
    assert caught.value.reason == "AppUnavailable"


# ---------------------------------------------------------------- Salesforce specifics


async def test_next_records_url_paging(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.query_batch_size = 200
    monkeypatch.setattr(salesforce_connector, "READ_PAGE_RECORDS", 400)
    ids = [sandbox.insert({"LastName": f"L{i}", "Email": f"p{i}@example.com"}) for i in range(450)]
    async with _oauth(sandbox) as connector:
        pages = await _read_all(connector)
        # Query batches of 200 are handed on in pages of (at least) READ_PAGE_RECORDS.
        assert [len(page.records) for page in pages] == [400, 50]
        assert [record.id for page in pages for record in page.records] == ids
        watermarks = [page.watermark for page in pages]
        assert watermarks == sorted(watermarks)  # type: ignore[type-var]
        assert connector.api_calls == 1 + 3  # one token, a query and two nextRecordsUrl


async def test_records_changed_while_paging_are_not_missed(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.query_batch_size = 200
    monkeypatch.setattr(salesforce_connector, "READ_PAGE_RECORDS", sandbox.query_batch_size)
    ids = [sandbox.insert({"LastName": f"L{i}"}) for i in range(450)]
    seen: list[str] = []
    last_watermark = None
    async with _oauth(sandbox) as connector:
        async for page in connector.read_changed("contacts", None, ["LastName"]):
            seen += [record.id for record in page.records]
            last_watermark = page.watermark
            if len(seen) == 200:
                sandbox.set_fields(ids[10], {"LastName": "edited early"})  # already read
                sandbox.set_fields(ids[420], {"LastName": "edited late"})  # not read yet
                sandbox.insert({"LastName": "new while paging"})
        assert sorted(seen) == sorted(ids)  # nothing skipped, nothing doubled
        next_run = await _read_all(connector, since=last_watermark, fields=["LastName"])
        again = {r.id: r.fields["LastName"] for p in next_run for r in p.records}
        assert again[ids[10]] == "edited early" and again[ids[420]] == "edited late"
        assert "new while paging" in again.values()


async def test_expired_query_locator_is_retriable(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.query_batch_size = 200
    monkeypatch.setattr(salesforce_connector, "READ_PAGE_RECORDS", sandbox.query_batch_size)
    sandbox.load({"LastName": f"L{i}"} for i in range(250))
    sandbox.cursor_timeout = 0.0
    async with _oauth(sandbox) as connector:
        pages = connector.read_changed("contacts", None, ["LastName"])
        first = await anext(pages)
        assert len(first.records) == 200
        with pytest.raises(RetriableError) as caught:
            await anext(pages)
    assert caught.value.reason == "AppUnavailable" and "watermark" in str(caught.value)


HOSTILE = [
    "O'Brien",
    "back\\slash",
    "x' OR LastName != 'y",
    "\\' OR Id != null --",
    "quote \" and \\' mixed",
    "new\nline\ttab",
    "ünïcødé ✓",
]


async def test_lookup_escapes_hostile_values(sandbox: SalesforceSandbox) -> None:
    ids = {value: sandbox.insert({"LastName": "H", "Source__c": value}) for value in HOSTILE}
    decoy = sandbox.insert({"LastName": "Decoy", "Source__c": "y"})
    async with _oauth(sandbox) as connector:
        for value in HOSTILE:
            found = await connector.lookup("contacts", "Source__c", [value], ["Source__c"])
            assert [record.id for record in found] == [ids[value]], value
            assert found[0].fields["Source__c"] == value
        everything = await connector.lookup("contacts", "Source__c", HOSTILE, ["Source__c"])
        assert {record.id for record in everything} == set(ids.values())
        assert decoy not in {record.id for record in everything}
        with pytest.raises(ConfigurationError) as caught:
            await connector.lookup("contacts", "Email) OR (Id", ["x"], ["Email"])
        assert caught.value.field == "Email) OR (Id"


TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None)
@given(st.lists(TEXT.filter(str.strip), min_size=1, max_size=6, unique_by=str.casefold))
def test_lookup_matches_exactly_any_text(values: list[str]) -> None:
    async def scenario() -> None:
        sandbox = SalesforceSandbox()
        await sandbox.start()
        try:
            ids = {sandbox.insert({"LastName": "H", "Source__c": value}): value for value in values}
            async with _oauth(sandbox) as connector:
                for value in values:
                    found = await connector.lookup("contacts", "Source__c", [value], ["Source__c"])
                    assert [ids[record.id] for record in found] == [value]
                everything = await connector.lookup("contacts", "Source__c", values, ["Source__c"])
                assert {record.id for record in everything} == set(ids)
        finally:
            await sandbox.stop()

    asyncio.run(scenario())


async def test_lookup_and_read_chunk_long_value_lists(sandbox: SalesforceSandbox) -> None:
    emails = [f"a.rather.long.address.number{i:04d}@subdomain.example.com" for i in range(450)]
    ids = [sandbox.insert({"LastName": "L", "Email": email}) for email in emails]
    async with _oauth(sandbox) as connector:
        found = await connector.lookup("contacts", "Email", emails, ["Email"])
        assert sorted(record.id for record in found) == sorted(ids)
        queries = connector.api_calls - 1
        assert queries >= 3  # 450 values never fit one query URL
        read = await connector.read("contacts", ids, ["Email"])
        assert sorted(record.id for record in read) == sorted(ids)
        assert connector.api_calls - 1 - queries == 3  # 200 ids per query


async def test_record_error_codes_pass_through(sandbox: SalesforceSandbox) -> None:
    sandbox.duplicate_rule = True
    sandbox.add_validation_rule("Title", "Intern", "Interns are not synced")
    sandbox.insert({"LastName": "Existing", "Email": "taken@example.com"})
    bad = [
        {"FirstName": "no last name"},
        {"LastName": "A", "Email": "secret-value@@example"},
        {"LastName": "B", "Status__c": "Secret Picklist Value"},
        {"LastName": "C", "Source__c": "secret-long-value-" * 5},
        {"LastName": "D", "Email": "TAKEN@example.com"},
        {"LastName": "E", "Title": "Intern"},
    ]
    async with _oauth(sandbox) as connector:
        results = await connector.create("contacts", bad)
    summary = [(r.error.reason, r.error.code, r.error.field) for r in results if r.error]
    assert summary == [
        ("RequiredFieldMissing", "REQUIRED_FIELD_MISSING", "LastName"),
        ("InvalidEmail", "INVALID_EMAIL_ADDRESS", "Email"),
        ("InvalidOption", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Status__c"),
        ("ValueTooLong", "STRING_TOO_LONG", "Source__c"),
        ("Duplicate", "DUPLICATE_VALUE", "Email"),
        ("AppRejected", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Title"),
    ]
    for result in results:
        assert result.error is not None
        assert "secret" not in result.error.message.lower()
        assert "taken@" not in result.error.message.lower()
    assert "Interns are not synced" in results[-1].error.message  # type: ignore[union-attr]


async def test_unknown_field_fails_only_the_records_carrying_it(
    sandbox: SalesforceSandbox,
) -> None:
    async with _oauth(sandbox) as connector:
        results = await connector.create(
            "contacts",
            [{"LastName": "A"}, {"LastName": "B", "Nope__c": "x"}, {"LastName": "C"}],
        )
        assert [r.error.reason if r.error else None for r in results] == [
            None,
            "UnknownField",
            None,
        ]
        assert results[1].error is not None and results[1].error.field == "Nope__c"
        assert sorted(record["LastName"] for record in sandbox.records()) == ["A", "C"]
        every = await connector.update("contacts", [(str(results[0].record_id), {"Nope__c": "y"})])
        assert every[0].record_id == results[0].record_id
        assert every[0].error is not None and every[0].error.code == "INVALID_FIELD"
        with pytest.raises(ConfigurationError) as caught:
            await _read_all(connector, fields=["Email", "Nope__c"])
        assert caught.value.field == "Nope__c"


async def test_writes_go_in_batches_of_200(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox) as connector:
        results = await connector.create(
            "contacts", [{"LastName": f"L{i}", "Email": f"b{i}@example.com"} for i in range(450)]
        )
        assert len(results) == 450 and all(result.ok for result in results)
        assert connector.api_calls == 1 + 3
        updates = [(str(result.record_id), {"Title": "Batch"}) for result in results]
        updated = await connector.update("contacts", updates)
        assert [result.record_id for result in updated] == [u[0] for u in updates]
        assert connector.api_calls == 1 + 6
    assert {record["Title"] for record in sandbox.records()} == {"Batch"}


async def test_session_expiry_mid_run_refreshes_once(sandbox: SalesforceSandbox) -> None:
    sandbox.load({"LastName": f"L{i}"} for i in range(3))
    async with _oauth(sandbox) as connector:
        await connector.check()
        tokens = sandbox.token_requests
        sandbox.expire_sessions()
        pages = await _read_all(connector, fields=["LastName"])
        assert sum(len(page.records) for page in pages) == 3
        assert sandbox.token_requests == tokens + 1


async def test_session_timeout_setting_renews_proactively(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox, sessionTimeoutMinutes="5") as connector:
        await connector.check()
        tokens = sandbox.token_requests
        session = await connector.tokens.session()
        session.obtained_at -= 5 * 60  # as if the org's five-minute timeout had passed
        await _read_all(connector, fields=["LastName"])
        assert sandbox.token_requests == tokens + 1
    with pytest.raises(ConfigurationError) as caught:
        _oauth(sandbox, sessionTimeoutMinutes="1")
    assert caught.value.field == "sessionTimeoutMinutes"


async def test_revoked_refresh_token_names_refresh_token(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox) as connector:
        await connector.check()
        sandbox.inject(Fault(kind="revoke_refresh_token"))
        with pytest.raises(AuthenticationError) as caught:
            await _read_all(connector)
    assert caught.value.credential == "refreshToken"
    assert "invalid_grant" in str(caught.value)
    assert sandbox.refresh_token not in str(caught.value)


async def test_check_names_the_failing_credential(sandbox: SalesforceSandbox) -> None:
    credentials = sandbox.credentials(AuthType.OAUTH)
    cases = [
        (AuthType.OAUTH, {"clientId": "wrong"}, "clientId", "invalid_client_id"),
        (AuthType.OAUTH, {"clientSecret": "wrong"}, "clientSecret", "invalid_client"),
        (AuthType.OAUTH, {"refreshToken": "wrong"}, "refreshToken", "invalid_grant"),
    ]
    for auth_type, change, credential, code in cases:
        async with SalesforceConnector(
            sandbox.connector_settings(), credentials | change, auth_type
        ) as connector:
            with pytest.raises(AuthenticationError) as caught:
                await connector.check()
        assert caught.value.credential == credential
        assert code in str(caught.value)
        assert "wrong" not in str(caught.value)
    sandbox.client_credentials_enabled = False
    async with SalesforceConnector(
        sandbox.connector_settings(),
        sandbox.credentials(AuthType.APP_PARAMETERS),
        AuthType.APP_PARAMETERS,
    ) as connector:
        with pytest.raises(AuthenticationError) as caught:
            await connector.check()
    assert caught.value.credential == "clientId" and "run-as user" in str(caught.value)


async def test_unreachable_org_names_the_setting(sandbox: SalesforceSandbox) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for auth_type, setting in (
        (AuthType.OAUTH, "loginUrl"),
        (AuthType.APP_PARAMETERS, "organizationUrl"),
    ):
        connector = SalesforceConnector(
            {"organizationUrl": closed, "loginUrl": closed},
            sandbox.credentials(auth_type),
            auth_type,
        )
        connector.http.retry = FAST
        async with connector:
            with pytest.raises(AppUnreachableError) as caught:
                await connector.check()
        assert setting in str(caught.value)


async def test_api_usage_header_and_reserve(sandbox: SalesforceSandbox) -> None:
    sandbox.daily_api_limit = 1000
    async with _oauth(sandbox, apiUsageReserve="100") as connector:
        await _read_all(connector)
        assert connector.api_usage == (sandbox.api_requests_used, 1000)
        sandbox.api_requests_used = 950
        await _read_all(connector)  # still sees 49 left only after this call
        assert connector.api_usage == (951, 1000)
        served = sandbox.requests_served
        with pytest.raises(RetriableError) as caught:
            await _read_all(connector)
        assert caught.value.reason == "RateLimited"
        assert "apiUsageReserve" in str(caught.value)
        assert sandbox.requests_served == served  # stopped before calling


async def test_daily_limit_exceeded_is_rate_limited(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox, apiUsageReserve="0") as connector:
        await connector.check()
        sandbox.daily_api_limit = sandbox.api_requests_used
        with pytest.raises(RetriableError) as caught:
            await connector.create("contacts", [{"LastName": "A"}])
        assert caught.value.reason == "RateLimited"
        assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value)


async def test_concurrency_limit_is_retried_then_rate_limited(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox) as connector:
        await connector.check()
        sandbox.rate_limit = RateLimit(requests=0, per_seconds=3600)
        served = sandbox.requests_served
        with pytest.raises(RetriableError) as caught:
            await _read_all(connector)
        assert caught.value.reason == "RateLimited"
        assert sandbox.requests_served - served == 4  # first try and three backed-off retries
        sandbox.rate_limit = None
        assert await _read_all(connector) is not None


async def test_sandbox_rate_limit_is_waited_out(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox) as connector:
        await connector.check()
        sandbox.rate_limit = RateLimit(requests=2, per_seconds=0.2)
        for _ in range(3):  # five query calls against two per 0.2 s
            assert await connector.lookup("contacts", "Email", ["a@example.com"], ["Email"]) == []


async def test_campaigns_are_lists(sandbox: SalesforceSandbox) -> None:
    inside = [sandbox.insert({"LastName": f"In{i}", "campaigns": ["Spring"]}) for i in range(3)]
    outside = sandbox.insert({"LastName": "Out"})
    campaign = sandbox.campaign_id("Spring")
    assert campaign is not None
    async with _oauth(sandbox) as connector:
        for ref in ("Spring", campaign, campaign[:15]):
            members = await connector.list_members(ref, [*inside, outside])
            assert members == set(inside)
        pages = [page async for page in connector.iter_list_members("Spring")]
        assert sorted(member for page in pages for member in page) == sorted(inside)
        with pytest.raises(ConfigurationError) as caught:
            await connector.list_members("No Such Campaign", inside)
        assert caught.value.field == "inclusionList.list"


async def test_leads(sandbox: SalesforceSandbox) -> None:
    async with _oauth(sandbox, sobject="Lead") as connector:
        results = await connector.create(
            "contacts",
            [{"LastName": "A", "Company": "Acme", "Email": "a@example.com"}, {"LastName": "B"}],
        )
        assert results[0].ok
        assert results[1].error is not None and results[1].error.field == "Company"
        records = [
            r for p in await _read_all(connector, fields=["Email", "Company"]) for r in p.records
        ]
        assert [record.fields["Company"] for record in records] == ["Acme"]
        assert (await connector.describe("contacts")).fields["Company"].required
        assert connector.field_map["company"] == "Company"
        assert connector.standard_fields["contacts"]["city"] == "City"
        assert SalesforceConnector.standard_fields["contacts"]["city"] == "MailingCity"
        lead_id = str(results[0].record_id)
        sandbox.add_to_campaign("Lead Nurture", lead_id)
        assert await connector.list_members("Lead Nurture", [lead_id]) == {lead_id}
        pages = [page async for page in connector.iter_list_members("Lead Nurture")]
        assert pages == [[lead_id]]
    assert sandbox.records("Lead")[0]["Status"] == "Open - Not Contacted"


@pytest.mark.parametrize(
    ("settings", "auth_type", "field_name"),
    [
        ({"colour": "blue"}, AuthType.OAUTH, "colour"),
        ({"apiVersion": "latest"}, AuthType.OAUTH, "apiVersion"),
        ({"sobject": "Account"}, AuthType.OAUTH, "sobject"),
        ({"loginUrl": "login.salesforce.com"}, AuthType.OAUTH, "loginUrl"),
        ({"loginUrl": "http://login.salesforce.com"}, AuthType.OAUTH, "loginUrl"),
        ({"loginUrl": "https://evil.example.com"}, AuthType.OAUTH, "loginUrl"),
        ({}, AuthType.APP_PARAMETERS, "organizationUrl"),
        (
            {"organizationUrl": "https://acme.my.salesforce.com/home"},
            AuthType.APP_PARAMETERS,
            "organizationUrl",
        ),
    ],
)
def test_bad_settings_name_the_setting(
    settings: dict[str, str],
    auth_type: AuthType,
    field_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATASYNC_ALLOW_SANDBOX_URLS")  # as in production
    credentials = {"clientId": "id", "clientSecret": "s", "refreshToken": "r"}
    with pytest.raises(ConfigurationError) as caught:
        SalesforceConnector(settings, credentials, auth_type)
    assert caught.value.field == field_name
    assert field_name in str(caught.value)


def test_sandbox_urls_need_the_opt_in(
    sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATASYNC_ALLOW_SANDBOX_URLS")
    with pytest.raises(ConfigurationError) as caught:
        _oauth(sandbox)
    assert caught.value.field in ("organizationUrl", "loginUrl")
    assert "DATASYNC_ALLOW_SANDBOX_URLS" in str(caught.value)


def test_missing_secret_key_is_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SalesforceConnector({}, {"clientId": "id", "clientSecret": "s"}, AuthType.OAUTH)
    assert caught.value.field == "refreshToken"


def test_defaults_and_metadata() -> None:
    connector = SalesforceConnector(
        {"organizationUrl": "https://acme.my.salesforce.com"},
        {"clientId": "id", "clientSecret": "s"},
        AuthType.APP_PARAMETERS,
    )
    assert connector.config.loginUrl == "https://login.salesforce.com"
    assert connector.config.apiVersion == "v62.0" and connector.sobject == "Contact"
    assert connector.tokens.token_url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert SalesforceConnector.identity_field("contacts") == "Email"
    assert SalesforceConnector.max_batch_size == 200
    assert "company" not in SalesforceConnector.standard_fields["contacts"]


async def test_no_secrets_or_values_in_logs(
    sandbox: SalesforceSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.insert({"LastName": "Private", "Email": "private.person@example.com"})
    async with _oauth(sandbox) as connector:
        await connector.check()
        await connector.lookup("contacts", "Email", ["private.person@example.com"], ["Email"])
        await connector.create("contacts", [{"LastName": "X", "Email": "bad@@example"}])
        sandbox.expire_sessions()
        await _read_all(connector)
    text = caplog.text
    for secret in sandbox.credentials(AuthType.OAUTH).values():
        assert secret not in text
    assert "private.person" not in text and "bad@@example" not in text
    assert "Bearer" not in text


async def test_engine_syncs_contacts_of_one_org_to_leads_of_another() -> None:
    """The sync engine end to end over two sandbox orgs: OAuth Contacts -> AppParameters Leads,
    scoped by a Campaign, with a custom picklist mapping and Lead's own field names."""
    org_a, org_b = SalesforceSandbox(), SalesforceSandbox()
    await org_a.start()
    await org_b.start()
    try:
        ids = [
            org_a.insert(
                {
                    "LastName": f"L{i}",
                    "Email": f"p{i}@example.com",
                    "MailingCity": "Oslo",
                    "Department": "Acme",
                    "Status__c": "Customer",
                    "campaigns": ["Sync"] if i % 2 == 0 else [],
                }
            )
            for i in range(30)
        ]
        spec = DataSyncConnectionSpec.model_validate(
            {
                "direction": "TwoWay",
                "schedule": "*/15 * * * *",
                "source": {
                    "app": "salesforce",
                    "auth": {"type": "OAuth", "secretRef": {"name": "a"}},
                },
                "destination": {
                    "app": "salesforce",
                    "auth": {"type": "AppParameters", "secretRef": {"name": "b"}},
                    "settings": {"sobject": "Lead"},
                },
                "mappings": {
                    "fields": [
                        {"source": "Status__c", "destination": "Status__c"},
                        {"source": "Department", "destination": "Company"},
                    ]
                },
                "inclusionList": {"app": "source", "list": "Sync"},
            }
        )
        store = open_store("sqlite:///:memory:", "sales/crm")

        async def sync() -> Any:
            source = SalesforceConnector(
                org_a.connector_settings(), org_a.credentials(AuthType.OAUTH), AuthType.OAUTH
            )
            destination = SalesforceConnector(
                org_b.connector_settings() | {"sobject": "Lead"},
                org_b.credentials(AuthType.APP_PARAMETERS),
                AuthType.APP_PARAMETERS,
            )
            async with source, destination:
                return await run_sync(spec, source, destination, store)

        first = await sync()
        assert first.result == "Succeeded", first.error
        leads = {lead["Email"]: lead for lead in org_b.records("Lead")}
        assert sorted(leads) == sorted(f"p{i}@example.com" for i in range(0, 30, 2))
        assert {(lead["City"], lead["Company"], lead["Status__c"]) for lead in leads.values()} == {
            ("Oslo", "Acme", "Customer")
        }
        org_a.set_fields(ids[0], {"Title": "Changed in A"})
        org_b.set_fields(leads["p2@example.com"]["Id"], {"Title": "Changed in B"})
        second = await sync()
        assert second.result == "Succeeded", second.error
        after = {lead["Email"]: lead for lead in org_b.records("Lead")}
        assert after["p0@example.com"]["Title"] == "Changed in A"
        assert org_a.get(ids[2])["Title"] == "Changed in B"  # type: ignore[index]
        assert len(after) == 15
    finally:
        await org_a.stop()
        await org_b.stop()


# ---------------------------------------------------------------- shared HTTP policy


async def test_daily_limit_refusal_is_classified_before_the_status_table(
    sandbox: SalesforceSandbox,
) -> None:
    """A 403 REQUEST_LIMIT_EXCEEDED (the daily allocation) is not asked again, is
    RateLimited, and its Sforce-Limit-Info is still noted, through ApiClient's classify
    hook; any other 403 goes back to the connector as a permission problem."""
    async with _oauth(sandbox) as connector:
        await connector.check()
        served = sandbox.requests_served
        sandbox.inject(Fault(kind="status", status=403))  # TotalRequests Limit exceeded.
        with pytest.raises(RetriableError) as caught:
            await connector.read("contacts", ["003Dn0000000001AAA"], ["Email"])
        assert caught.value.reason == "RateLimited"
        assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value)
        assert sandbox.requests_served - served == 1  # refused once, not asked again
        sandbox.daily_api_limit = sandbox.api_requests_used + 7  # the org's real refusal
        sandbox.api_requests_used += 7
        with pytest.raises(RetriableError):
            await connector.read("contacts", ["003Dn0000000001AAA"], ["Email"])
        assert connector.api_usage == (sandbox.api_requests_used, sandbox.daily_api_limit)
        classified = connector.http.verdict(
            httpx.Response(403, json=[{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}])
        )
        assert classified.action is Action.RETURN


async def test_concurrency_limit_clears_within_the_retries(sandbox: SalesforceSandbox) -> None:
    """The concurrent-request limit is asked again with backoff, apart from the policy's
    own attempts: three refusals in a row still end in the records."""
    ids = [sandbox.insert({"LastName": f"L{i}"}) for i in range(2)]
    async with _oauth(sandbox) as connector:
        await connector.check()
        sandbox.rate_limit = RateLimit(requests=0, per_seconds=3600)
        served = sandbox.requests_served

        async def lift_after_three_refusals() -> None:
            # The sandbox counts a request as it arrives and refuses it without yielding,
            # so checking on every loop turn lifts the limit right after the third
            # refusal, before the connector's backoff can send the fourth request.
            while sandbox.requests_served - served < 3:  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0)
            sandbox.rate_limit = None

        lifting = asyncio.create_task(lift_after_three_refusals())
        found = await connector.read("contacts", ids, ["LastName"])
        await lifting
    assert sorted(record.id for record in found) == sorted(ids)
    assert sandbox.requests_served - served == 4


@pytest.mark.parametrize("setting", ["organizationUrl", "loginUrl"])
@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("https://sync-user:Pa55w0rd-Secret@acme.my.salesforce.com", "Secret"),
        ("https://Pa55w0rd-Secret@acme.my.salesforce.com", "Secret"),
        ("https://acme.my.salesforce.com?token=Pa55w0rd-Secret", "query string"),
        ("https://acme.my.salesforce.com/#Pa55w0rd-Secret", "fragment"),
        ("https://acme.my.salesforce.com:Pa55w0rd-Secret", "https://acme.my.salesforce.com"),
    ],
)
def test_org_urls_refuse_credentials_queries_and_fragments(
    setting: str, url: str, fix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATASYNC_ALLOW_SANDBOX_URLS")
    credentials = {"clientId": "id", "clientSecret": "s", "refreshToken": "r"}
    with pytest.raises(ConfigurationError) as caught:
        SalesforceConnector({setting: url}, credentials, AuthType.OAUTH)
    message = str(caught.value)
    assert caught.value.field == setting and setting in message
    assert fix in message
    assert "Pa55w0rd" not in message and "sync-user" not in message


def test_missing_and_blank_secret_keys_are_named_with_the_fix() -> None:
    for credentials in ({"clientId": "id"}, {"clientId": "id", "clientSecret": "  "}):
        with pytest.raises(ConfigurationError) as caught:
            SalesforceConnector(
                {"organizationUrl": "https://acme.my.salesforce.com"},
                credentials,
                AuthType.APP_PARAMETERS,
            )
        assert caught.value.field == "clientSecret"
        assert "'clientSecret'" in str(caught.value) and "add it to the Secret" in str(caught.value)
