"""The HubSpot connector against the HubSpot sandbox, over real HTTP."""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest
from datasync_connectors.hubspot import HubSpotConnector
from datasync_connectors.hubspot import connector as hubspot_connector
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.api.models import AuthType
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    FieldType,
    RetriableError,
)
from datasync.sandbox import Fault, RateLimit
from tests.connectors.conftest import FAST_RETRY
from tests.connectors.contract import ConnectorContract

FIELDS = ["email", "firstname", "lastname"]


@dataclass
class HubSpotHarness:
    sandbox: HubSpotSandbox
    auth_type: AuthType
    object_type: str = "contacts"
    identity_field: str = "email"

    def build(self, credentials: dict[str, str], **settings: str) -> HubSpotConnector:
        return HubSpotConnector(
            {**self.sandbox.connector_settings(), **settings},
            credentials,
            self.auth_type,
            retry=FAST_RETRY,
        )

    async def connector(self) -> HubSpotConnector:
        return self.build(self.sandbox.credentials(self.auth_type))

    async def connector_with_bad_credentials(self) -> HubSpotConnector:
        credentials = self.sandbox.credentials(self.auth_type)
        if self.auth_type == AuthType.OAUTH:
            credentials["refreshToken"] = "na1-not-the-refresh-token-0000"
        else:
            credentials["accessToken"] = "pat-na1-not-the-access-token-0000"
        return self.build(credentials)

    async def seed(self, records: list[dict[str, Any]]) -> list[str]:
        before = len(self.sandbox.contacts)
        self.sandbox.load(records)
        return list(self.sandbox.contacts)[before:]

    async def modify(self, record_id: str, fields: dict[str, Any]) -> None:
        self.sandbox.set_properties(record_id, fields)

    async def fetch(self, record_id: str) -> dict[str, Any] | None:
        stored = self.sandbox.get(record_id)
        return None if stored is None else dict(stored["properties"])

    def inject(self, fault: Fault) -> bool:
        self.sandbox.inject(fault)
        return True

    def make_record(self, i: int) -> dict[str, Any]:
        return {"email": f"Person{i}@Example.com", "firstname": f"First{i}", "lastname": f"L{i}"}

    def make_invalid_record(self) -> dict[str, Any]:
        return {"email": "not-an-email-address", "firstname": "Invalid"}

    async def add_to_list(self, list_name: str, record_ids: list[str]) -> str | None:
        list_id = self.sandbox.create_list(list_name)
        self.sandbox.add_to_list(list_id, record_ids)
        return list_name  # by name: the connector resolves it through the lists API


@pytest.fixture(params=[AuthType.OAUTH, AuthType.APP_PARAMETERS], ids=["oauth", "private-app"])
def harness(
    request: pytest.FixtureRequest,
    hubspot_sandbox: HubSpotSandbox,
    allow_sandbox_urls: None,
    monkeypatch: pytest.MonkeyPatch,
) -> HubSpotHarness:
    # A page per search (200) instead of up to 10,000 records, so the contract's few hundred
    # records span pages.
    monkeypatch.setattr(hubspot_connector, "READ_PAGE_RECORDS", hubspot_connector.SEARCH_PAGE_SIZE)
    return HubSpotHarness(hubspot_sandbox, AuthType(request.param))


@pytest.fixture
def oauth(hubspot_sandbox: HubSpotSandbox, allow_sandbox_urls: None) -> HubSpotHarness:
    return HubSpotHarness(hubspot_sandbox, AuthType.OAUTH)


class TestHubSpotContract(ConnectorContract):
    pass


# ---------------------------------------------------------------- settings and auth


def test_settings_are_validated_with_the_field_named(allow_sandbox_urls: None) -> None:
    token = {"accessToken": "pat-na1-x"}
    with pytest.raises(ConfigurationError) as unknown:
        HubSpotConnector({"baseURL": "https://api.hubapi.com"}, token, AuthType.APP_PARAMETERS)
    assert unknown.value.field == "baseURL" and "baseUrl" in str(unknown.value)
    with pytest.raises(ConfigurationError) as endpoint:
        HubSpotConnector({"tokenEndpoint": "v2"}, token, AuthType.APP_PARAMETERS)
    assert endpoint.value.field == "tokenEndpoint"
    with pytest.raises(ConfigurationError) as missing:
        HubSpotConnector({}, {"clientId": "a", "clientSecret": "b"}, AuthType.OAUTH)
    assert missing.value.field == "refreshToken"


def test_sandbox_urls_need_the_operator_to_allow_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATASYNC_ALLOW_SANDBOX_URLS", raising=False)
    with pytest.raises(ConfigurationError) as refused:
        HubSpotConnector(
            {"baseUrl": "http://127.0.0.1:9"}, {"accessToken": "t"}, AuthType.APP_PARAMETERS
        )
    assert refused.value.field == "baseUrl"
    with pytest.raises(ConfigurationError):
        HubSpotConnector(
            {"baseUrl": "https://evil.example.com"}, {"accessToken": "t"}, AuthType.APP_PARAMETERS
        )
    HubSpotConnector({}, {"accessToken": "t"}, AuthType.APP_PARAMETERS)  # the default host


@pytest.mark.parametrize(
    ("auth_type", "credentials"),
    [
        (AuthType.APP_PARAMETERS, {"accessToken": "pat-na1-x"}),
        (AuthType.OAUTH, {"clientId": "a", "clientSecret": "b", "refreshToken": "c"}),
    ],
)
async def test_unreachable_app_names_the_base_url_setting(
    allow_sandbox_urls: None, auth_type: AuthType, credentials: dict[str, str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    connector = HubSpotConnector(
        {"baseUrl": f"http://127.0.0.1:{port}"}, credentials, auth_type, retry=FAST_RETRY
    )
    async with connector:
        with pytest.raises(AppUnreachableError) as raised:
            await connector.check()
    assert "baseUrl" in str(raised.value)


@pytest.mark.parametrize(
    ("key", "credential"),
    [("clientId", "clientId"), ("clientSecret", "clientSecret"), ("refreshToken", "refreshToken")],
)
async def test_token_errors_name_the_credential(
    oauth: HubSpotHarness, key: str, credential: str
) -> None:
    credentials = oauth.sandbox.credentials(AuthType.OAUTH)
    credentials[key] = "wrong-value-123456"
    async with oauth.build(credentials) as connector:
        with pytest.raises(AuthenticationError) as raised:
            await connector.check()
    assert raised.value.credential == credential
    assert credential in str(raised.value)
    for value in oauth.sandbox.credentials(AuthType.OAUTH).values():
        assert value not in str(raised.value)
    assert "wrong-value-123456" not in str(raised.value)


async def test_dated_token_endpoint(oauth: HubSpotHarness) -> None:
    connector = oauth.build(oauth.sandbox.credentials(AuthType.OAUTH), tokenEndpoint="dated")
    async with connector:
        await connector.check()
    assert oauth.sandbox.path_counts.get("/oauth/2026-03/token") == 1
    assert "/oauth/v1/token" not in oauth.sandbox.path_counts


class ConnectorClock:
    """The HubSpot connector's view of time.monotonic, moved forward by the test instead of
    slept through (the sandbox keeps the real clock; tokens expire there on demand)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


async def test_access_token_is_refreshed_before_it_expires(
    oauth: HubSpotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ConnectorClock()
    monkeypatch.setattr(hubspot_connector, "time", clock)
    # HubSpot's lifetime; the margin is a tenth of it (180 s) when that is under 300 s.
    oauth.sandbox.token_ttl = 1800
    ids = await oauth.seed([oauth.make_record(i) for i in range(2)])
    async with await oauth.connector() as connector:
        await connector.read("contacts", ids, FIELDS)
        clock.ahead = 1800 - 180 - 1  # just before the refresh margin: the token is kept
        await connector.read("contacts", ids, FIELDS)
        assert oauth.sandbox.tokens_issued == 1
        clock.ahead = 1800 - 180 + 1  # inside it, though the token has not expired yet
        # The sandbox now refuses the old token, so using it again would show as a 401.
        oauth.sandbox.expire_access_tokens()
        found = await connector.read("contacts", ids, FIELDS)
        calls = connector.api_calls
    assert len(found) == 2
    assert oauth.sandbox.tokens_issued == 2
    assert oauth.sandbox.status_counts.get(401, 0) == 0, "refresh must not wait for a 401"
    assert calls == oauth.sandbox.requests_served  # token calls are counted too


async def test_a_401_forces_exactly_one_refresh(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed([oauth.make_record(1)])
    async with await oauth.connector() as connector:
        await connector.read("contacts", ids, FIELDS)
        oauth.sandbox.expire_access_tokens()
        found = await connector.read("contacts", ids, FIELDS)
    assert [record.id for record in found] == ids
    assert oauth.sandbox.tokens_issued == 2
    assert oauth.sandbox.status_counts.get(401) == 1


async def test_revoked_refresh_token_fails_naming_it(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed([oauth.make_record(1)])
    async with await oauth.connector() as connector:
        await connector.read("contacts", ids, FIELDS)
        oauth.sandbox.inject(Fault(kind="revoke_refresh_token"))
        with pytest.raises(AuthenticationError) as raised:
            await connector.read("contacts", ids, FIELDS)
    assert raised.value.credential == "refreshToken"
    assert oauth.sandbox.refresh_token not in str(raised.value)


# ---------------------------------------------------------------- reads


async def test_describe_maps_hubspot_types(oauth: HubSpotHarness) -> None:
    async with await oauth.connector() as connector:
        schema = await connector.describe("contacts")
    fields = schema.fields
    assert fields["phone"].type == FieldType.PHONE
    assert fields["hs_email_optout"].type == FieldType.BOOLEAN
    assert fields["annualrevenue"].type == FieldType.NUMBER
    assert fields["date_of_birth"].type == FieldType.DATE
    assert fields["lastmodifieddate"].type == FieldType.DATETIME
    assert fields["lastmodifieddate"].read_only and fields["hs_object_id"].read_only
    assert fields["lifecyclestage"].options is not None
    assert "customer" in fields["lifecyclestage"].options
    assert not fields["firstname"].read_only


async def test_reading_past_the_search_window(oauth: HubSpotHarness) -> None:
    """More changed records than one search may return (10,000; 50 here) are all read."""
    oauth.sandbox.search_window = 50
    ids = await oauth.seed([oauth.make_record(i) for i in range(620)])
    async with await oauth.connector() as connector:
        seen: list[str] = []
        async for page in connector.read_changed("contacts", None, FIELDS):
            seen.extend(record.id for record in page.records)
    assert sorted(seen) == sorted(ids)
    assert oauth.sandbox.status_counts.get(400, 0) == 0


async def test_more_than_a_page_in_one_millisecond(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed([oauth.make_record(i) for i in range(430)])
    stamp = oauth.sandbox.contacts[ids[0]].modified_ms
    for record_id in ids[:410]:
        oauth.sandbox.contacts[record_id].modified_ms = stamp
    async with await oauth.connector() as connector:
        seen = [
            record.id
            async for page in connector.read_changed("contacts", None, FIELDS)
            for record in page.records
        ]
    assert sorted(seen) == sorted(ids)  # each exactly once


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    count=st.integers(min_value=1, max_value=450),
    distinct_stamps=st.integers(min_value=1, max_value=6),
    chooser=st.randoms(use_true_random=False),
    edits=st.lists(st.integers(min_value=0, max_value=449), max_size=6),
)
async def test_read_changed_returns_every_record_oldest_first(
    allow_sandbox_urls: None,
    count: int,
    distinct_stamps: int,
    chooser: random.Random,
    edits: list[int],
) -> None:
    """Any mix of shared timestamps and edits mid-read: every record is returned, the latest
    version of every edited one too, in non-decreasing modified order, without repeats of
    an unchanged version."""
    stamps = [chooser.randrange(distinct_stamps) for _ in range(count)]
    sandbox = HubSpotSandbox()
    await sandbox.start()
    try:
        harness = HubSpotHarness(sandbox, AuthType.APP_PARAMETERS)
        ids = await harness.seed([harness.make_record(i) for i in range(len(stamps))])
        base = 1_700_000_000_000
        for record_id, offset in zip(ids, stamps, strict=True):
            sandbox.contacts[record_id].modified_ms = base + offset
        pending = [ids[index % len(ids)] for index in edits]
        versions: list[tuple[str, Any, Any]] = []
        edited: list[tuple[int, str, str]] = []  # (after page, id, value)
        pages = 0
        async with await harness.connector() as connector:
            async for page in connector.read_changed("contacts", None, FIELDS):
                pages += 1
                versions.extend(
                    (record.id, record.modified_at, record.fields["firstname"])
                    for record in page.records
                )
                if pending:
                    target, value = pending.pop(), f"Edited{len(pending)}"
                    sandbox.set_properties(target, {"firstname": value})
                    edited.append((pages, target, value))
        assert {record_id for record_id, _, _ in versions} == set(ids)
        latest = {record_id: value for record_id, _, value in versions}
        last_edit: dict[str, tuple[int, str]] = {}
        for page_number, record_id, value in edited:
            last_edit[record_id] = (page_number, value)
        for record_id, (page_number, value) in last_edit.items():
            if page_number < pages:  # edited while more pages were still to come
                assert latest[record_id] == value, "an edit made during the read was missed"
        assert len(versions) == len(set(versions)), "an unchanged version came twice"
        stamps_read = [modified for _, modified, _ in versions]
        assert stamps_read == sorted(stamps_read)
    finally:
        await sandbox.stop()


async def test_lookup_by_other_property_and_read_skips_missing_ids(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed([oauth.make_record(i) for i in range(3)])
    async with await oauth.connector() as connector:
        found = await connector.lookup("contacts", "firstname", ["First1", "First2"], FIELDS)
        read = await connector.read("contacts", [ids[0], "999999"], FIELDS)
        with pytest.raises(ConfigurationError):
            await connector.lookup("contacts", "no_such_property", ["x"], FIELDS)
    assert sorted(record.id for record in found) == sorted(ids[1:])
    assert [record.id for record in read] == [ids[0]]


async def test_values_have_json_types(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed(
        [{"email": "t@example.com", "hs_email_optout": "true", "annualrevenue": "1250"}]
    )
    async with await oauth.connector() as connector:
        (record,) = await connector.read(
            "contacts", ids, ["hs_email_optout", "annualrevenue", "city"]
        )
        results = await connector.update(
            "contacts", [(ids[0], {"hs_email_optout": False, "annualrevenue": 99.5, "city": None})]
        )
    assert record.fields == {"hs_email_optout": True, "annualrevenue": 1250, "city": None}
    assert results[0].ok
    stored = oauth.sandbox.get(ids[0])
    assert stored is not None
    assert stored["properties"]["hs_email_optout"] == "false"
    assert stored["properties"]["annualrevenue"] == "99.5"


async def test_malformed_json_is_read_again(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed([oauth.make_record(1)])
    async with await oauth.connector() as connector:
        await connector.check()
        oauth.sandbox.inject(Fault(kind="malformed", path_prefix="/crm/v3/objects"))
        found = await connector.read("contacts", ids, FIELDS)
        oauth.sandbox.inject(Fault(kind="malformed", path_prefix="/crm/v3/objects"))
        with pytest.raises(RetriableError):
            await connector.create("contacts", [oauth.make_record(2)])
    assert [record.id for record in found] == ids


# ---------------------------------------------------------------- writes


async def test_multi_status_errors_map_to_reasons(oauth: HubSpotHarness) -> None:
    (existing,) = await oauth.seed([{"email": "taken@example.com"}])
    batch = [
        {"email": "fine@example.com", "lifecyclestage": "customer"},
        {"email": "broken@"},
        {"email": "other@example.com", "lifecyclestage": "platinum"},
        {"email": "TAKEN@example.com"},
        {"email": "ro@example.com", "hs_object_id": "5"},
        {"email": "new@example.com", "no_such_property": "x"},
    ]
    async with await oauth.connector() as connector:
        results = await connector.create("contacts", batch)
    assert [result.ok for result in results] == [True, False, False, False, False, False]
    errors = [result.error for result in results[1:]]
    assert [(e.reason, e.code, e.field) for e in errors if e] == [
        ("InvalidEmail", "INVALID_EMAIL", "email"),
        ("InvalidOption", "INVALID_OPTION", "lifecyclestage"),
        ("AppRejected", "CONFLICT", "email"),
        ("AppRejected", "READ_ONLY_VALUE", "hs_object_id"),
        ("AppRejected", "PROPERTY_DOESNT_EXIST", "no_such_property"),
    ]
    conflict = errors[2]
    assert conflict is not None and existing in conflict.message
    for error, record in zip(errors, batch[1:], strict=True):
        assert error is not None
        assert all(str(value) not in error.message for value in record.values())
    assert len(oauth.sandbox.contacts) == 2


async def test_writes_are_batched_by_100(oauth: HubSpotHarness) -> None:
    records = [oauth.make_record(i) for i in range(250)]
    async with await oauth.connector() as connector:
        created = await connector.create("contacts", records)
        ids = [result.record_id for result in created]
        updates = [(str(record_id), {"lastname": "Batch"}) for record_id in ids]
        updated = await connector.update("contacts", updates)
    assert all(result.ok for result in created + updated)
    assert oauth.sandbox.path_counts["/crm/v3/objects/contacts/batch/create"] == 3
    assert oauth.sandbox.path_counts["/crm/v3/objects/contacts/batch/update"] == 3
    for record_id, record in zip(ids, records, strict=True):
        stored = oauth.sandbox.get(str(record_id))
        assert stored is not None
        assert stored["properties"]["email"] == record["email"].lower()
        assert stored["properties"]["lastname"] == "Batch"


async def test_update_of_missing_record_and_repeated_ids(oauth: HubSpotHarness) -> None:
    (record_id,) = await oauth.seed([oauth.make_record(1)])
    async with await oauth.connector() as connector:
        results = await connector.update(
            "contacts",
            [
                (record_id, {"firstname": "One"}),
                ("424242", {"firstname": "Ghost"}),
                (record_id, {"lastname": "Two"}),
            ],
        )
    assert results[0].ok and results[2].ok
    assert results[1].error is not None and results[1].error.code == "OBJECT_NOT_FOUND"
    stored = oauth.sandbox.get(record_id)
    assert stored is not None
    assert (stored["properties"]["firstname"], stored["properties"]["lastname"]) == ("One", "Two")


# ---------------------------------------------------------------- lists and rate limits


async def test_lists_by_id_and_name(oauth: HubSpotHarness) -> None:
    ids = await oauth.seed([oauth.make_record(i) for i in range(600)])
    list_id = oauth.sandbox.create_list("Big List")
    oauth.sandbox.add_to_list(list_id, ids[:520])
    async with await oauth.connector() as connector:
        pages = [page async for page in connector.iter_list_members(list_id)]
        by_name = await connector.list_members("big list", ids[500:540])
        with pytest.raises(ConfigurationError) as missing:
            await connector.list_members("No Such List", ids[:1])
    assert [len(page) for page in pages] == [250, 250, 20]
    assert by_name == set(ids[500:520])
    assert missing.value.field == "inclusionList.list"


async def test_rate_limit_headers_are_honoured(oauth: HubSpotHarness) -> None:
    oauth.sandbox.rate_limit = RateLimit(requests=4, per_seconds=0.3)
    ids = await oauth.seed([oauth.make_record(i) for i in range(3)])
    async with await oauth.connector() as connector:
        for _ in range(10):
            assert len(await connector.read("contacts", ids, FIELDS)) == 3
    assert oauth.sandbox.status_counts.get(429, 0) == 0


async def test_rate_limited_by_someone_else_waits_for_the_window(oauth: HubSpotHarness) -> None:
    oauth.sandbox.rate_limit = RateLimit(requests=3, per_seconds=0.3)
    ids = await oauth.seed([oauth.make_record(1)])
    async with await oauth.connector() as connector:
        await connector.check()
        oauth.sandbox.exhaust_rate_limit()
        found = await connector.read("contacts", ids, FIELDS)
    assert [record.id for record in found] == ids
    assert oauth.sandbox.status_counts.get(429) == 1


async def test_writes_are_repeated_only_when_hubspot_cannot_have_acted(
    oauth: HubSpotHarness,
) -> None:
    create = "/crm/v3/objects/contacts/batch/create"
    async with await oauth.connector() as connector:
        await connector.check()
        oauth.sandbox.inject(Fault(kind="status", status=503, path_prefix=create))
        created = await connector.create("contacts", [oauth.make_record(1)])
        oauth.sandbox.inject(Fault(kind="status", status=500, path_prefix=create))
        with pytest.raises(RetriableError):
            await connector.create("contacts", [oauth.make_record(2)])
    assert created[0].ok
    assert oauth.sandbox.path_counts[create] == 3  # 503 + its repeat, then the 500 alone
    assert len(oauth.sandbox.contacts) == 1


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("https://owner:pat-na1-Secret@api.hubapi.com", "Secret"),
        ("https://pat-na1-Secret@api.hubapi.com", "Secret"),
        ("https://api.hubapi.com/?hapikey=pat-na1-Secret", "query string"),
        ("https://api.hubapi.com#pat-na1-Secret", "fragment"),
    ],
)
def test_base_url_refuses_credentials_queries_and_fragments(
    url: str, fix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATASYNC_ALLOW_SANDBOX_URLS", raising=False)
    with pytest.raises(ConfigurationError) as refused:
        HubSpotConnector({"baseUrl": url}, {"accessToken": "t"}, AuthType.APP_PARAMETERS)
    message = str(refused.value)
    assert refused.value.field == "baseUrl" and "baseUrl" in message and fix in message
    assert "pat-na1-Secret" not in message and "owner" not in message
    # A path stays allowed (an allowed proxy may serve the API under one).
    proxied = HubSpotConnector(
        {"baseUrl": "https://api.hubapi.com/hubspot/"},
        {"accessToken": "t"},
        AuthType.APP_PARAMETERS,
    )
    assert proxied.config.baseUrl == "https://api.hubapi.com/hubspot"


def test_blank_secret_keys_are_named_with_the_fix(allow_sandbox_urls: None) -> None:
    with pytest.raises(ConfigurationError) as blank:
        HubSpotConnector({}, {"accessToken": "   "}, AuthType.APP_PARAMETERS)
    assert blank.value.field == "accessToken"
    assert "'accessToken'" in str(blank.value) and "add it to the Secret" in str(blank.value)
