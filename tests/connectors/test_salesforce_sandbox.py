"""The Salesforce sandbox is product code: exercise its REST API directly over HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from datasync_connectors.salesforce import soql
from datasync_connectors.salesforce.sandbox import SalesforceSandbox, id_with_suffix
from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.api.models import AuthType
from datasync.sandbox import Fault, RateLimit, sandboxes

V = "/services/data/v62.0"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


@pytest.fixture
async def sandbox() -> AsyncIterator[SalesforceSandbox]:
    app = SalesforceSandbox()
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def client(sandbox: SalesforceSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        token = await _token(http, sandbox)
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


async def _token(http: httpx.AsyncClient, sandbox: SalesforceSandbox) -> str:
    response = await http.post(
        "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "refresh_token": sandbox.refresh_token,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def _query(http: httpx.AsyncClient, text: str, **headers: str) -> httpx.Response:
    return await http.get(f"{V}/query", params={"q": text}, headers=headers)


async def _create(http: httpx.AsyncClient, *records: dict[str, Any]) -> list[dict[str, Any]]:
    response = await http.post(
        f"{V}/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [{"attributes": {"type": "Contact"}} | record for record in records],
        },
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def test_registered_as_entry_point() -> None:
    assert sandboxes()["salesforce"] is SalesforceSandbox


# ---------------------------------------------------------------- OAuth


async def test_token_grants_and_their_errors(sandbox: SalesforceSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        good = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}
        ok = await http.post(
            "/services/oauth2/token", data=good | {"grant_type": "client_credentials"}
        )
        assert ok.status_code == 200
        body = ok.json()
        assert body["instance_url"] == sandbox.base_url
        assert body["token_type"] == "Bearer"
        assert "expires_in" not in body  # Salesforce does not say when a token expires

        cases = [
            (good | {"grant_type": "password"}, "unsupported_grant_type"),
            (good | {"grant_type": "refresh_token", "client_id": "nope"}, "invalid_client_id"),
            (good | {"grant_type": "refresh_token", "client_secret": "nope"}, "invalid_client"),
            (good | {"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant"),
        ]
        for form, error in cases:
            response = await http.post("/services/oauth2/token", data=form)
            assert response.status_code == 400
            assert response.json()["error"] == error

        sandbox.client_credentials_enabled = False
        refused = await http.post(
            "/services/oauth2/token", data=good | {"grant_type": "client_credentials"}
        )
        assert refused.json() == {
            "error": "invalid_grant",
            "error_description": "no client credentials user enabled",
        }


async def test_data_api_needs_a_live_session(sandbox: SalesforceSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        versions = await http.get("/services/data/")
        assert versions.status_code == 200
        assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in (
            versions.json()
        )
        missing = await http.get(f"{V}/limits")
        assert missing.status_code == 401
        assert missing.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
        token = await _token(http, sandbox)
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get(f"{V}/limits", headers=auth)).status_code == 200
        sandbox.expire_sessions()
        assert (await http.get(f"{V}/limits", headers=auth)).status_code == 401


async def test_session_timeout_expires_tokens() -> None:
    app = SalesforceSandbox(session_timeout=0.0)
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=app.base_url) as http:
            token = await _token(http, app)
            response = await http.get(f"{V}/limits", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
            assert response.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    finally:
        await app.stop()


async def test_revoked_refresh_token_is_refused(sandbox: SalesforceSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        token = await _token(http, sandbox)
        sandbox.inject(Fault(kind="revoke_refresh_token"))
        limits = await http.get(f"{V}/limits", headers={"Authorization": f"Bearer {token}"})
        assert limits.status_code == 401  # its access tokens went with it
        response = await http.post(
            "/services/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "refresh_token": sandbox.refresh_token,
            },
        )
        assert response.json()["error"] == "invalid_grant"


def test_credentials_and_settings(sandbox: SalesforceSandbox) -> None:
    assert set(sandbox.credentials(AuthType.OAUTH)) == {"clientId", "clientSecret", "refreshToken"}
    assert set(sandbox.credentials(AuthType.APP_PARAMETERS)) == {"clientId", "clientSecret"}
    assert sandbox.connector_settings() == {
        "organizationUrl": sandbox.base_url,
        "loginUrl": sandbox.base_url,
    }


# ---------------------------------------------------------------- query


async def test_query_filters_orders_and_limits(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    ids = [
        sandbox.insert({"LastName": f"L{i}", "Email": f"p{i}@example.com", "Title": f"T{i % 2}"})
        for i in range(6)
    ]
    response = await _query(
        client,
        "select Id, email from contact where Email in ('P1@EXAMPLE.COM', 'p4@example.com', "
        "'nobody@example.com') order by Email desc",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["done"] is True and body["totalSize"] == 2
    assert [row["Id"] for row in body["records"]] == [ids[4], ids[1]]
    assert body["records"][0]["attributes"] == {
        "type": "Contact",
        "url": f"{V}/sobjects/Contact/{ids[4]}",
    }
    assert set(body["records"][0]) == {"attributes", "Id", "Email"}  # canonical names

    by_title = await _query(
        client, "SELECT Id FROM Contact WHERE Title = 't1' AND LastName != 'L1' ORDER BY Id LIMIT 1"
    )
    assert [row["Id"] for row in by_title.json()["records"]] == [ids[3]]

    # 15-character ids match their 18-character form.
    by_id = await _query(client, f"SELECT Id FROM Contact WHERE Id = '{ids[2][:15]}'")
    assert [row["Id"] for row in by_id.json()["records"]] == [ids[2]]


async def test_query_on_system_modstamp(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    first = sandbox.insert({"LastName": "A"})
    second = sandbox.insert({"LastName": "B"})
    sandbox.set_modstamp(first, datetime(2030, 1, 1, tzinfo=UTC))
    sandbox.set_modstamp(second, datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC))
    literal = soql.datetime_literal(datetime(2030, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC))
    response = await _query(
        client, f"SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp >= {literal}"
    )
    assert response.json()["records"] == [
        {
            "attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{second}"},
            "Id": second,
            "SystemModstamp": "2030-01-01T00:00:01.000+0000",
        }
    ]
    sandbox.set_fields(first, {"Title": "edited"})
    again = await _query(
        client,
        f"SELECT Id FROM Contact WHERE SystemModstamp > {literal} ORDER BY SystemModstamp DESC",
    )
    assert [row["Id"] for row in again.json()["records"]] == [first, second]


async def test_query_errors(client: httpx.AsyncClient) -> None:
    cases = [
        ("SELECT Id, Nope__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity", "INVALID_TYPE"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'bad \\q escape'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01'", "INVALID_FIELD"),
        ("DELETE FROM Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'a' OR Email = 'b'", "MALFORMED_QUERY"),
    ]
    for text, code in cases:
        response = await _query(client, text)
        assert response.status_code == 400, text
        assert response.json()[0]["errorCode"] == code, text
    too_long = "SELECT Id FROM Contact WHERE Email = '" + "x" * 100_001 + "'"
    response = await client.post(f"{V}/query", data={"q": too_long})
    assert response.status_code == 405  # queries are GETs
    huge_uri = await _query(
        client, "SELECT Id FROM Contact WHERE Email IN (" + "'a'," * 2000 + "'a')"
    )
    assert huge_uri.status_code == 414


async def test_query_paging_with_next_records_url(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    ids = {sandbox.insert({"LastName": f"L{i}"}) for i in range(450)}
    first = (
        await _query(client, "SELECT Id FROM Contact", **{"Sforce-Query-Options": "batchSize=200"})
    ).json()
    assert first["done"] is False and first["totalSize"] == 450 and len(first["records"]) == 200
    assert re.fullmatch(rf"{V}/query/01g[0-9A-F]+-200", first["nextRecordsUrl"])
    seen = [row["Id"] for row in first["records"]]
    url = first["nextRecordsUrl"]
    while url:
        page = (await client.get(url)).json()
        seen += [row["Id"] for row in page["records"]]
        url = page.get("nextRecordsUrl")
        assert page["done"] is (url is None)
    assert len(seen) == 450 and set(seen) == ids
    # Reading a locator page again gives the same records (GET retries are safe).
    again = (await client.get(first["nextRecordsUrl"])).json()
    assert [row["Id"] for row in again["records"]] == seen[200:400]
    bad = await client.get(f"{V}/query/01gNOPE-200")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


async def test_default_batch_is_2000(sandbox: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    sandbox.load({"LastName": f"L{i}"} for i in range(2001))
    body = (await _query(client, "SELECT Id FROM Contact")).json()
    assert len(body["records"]) == 2000 and body["nextRecordsUrl"].endswith("-2000")


# ---------------------------------------------------------------- writes


async def test_collections_create_and_update(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    created = await _create(
        client,
        {"LastName": "Lovelace", "Email": "ada@example.com", "Status__c": "Customer"},
        {"FirstName": "NoLast"},
    )
    assert created[0]["success"] is True and created[0]["errors"] == []
    assert created[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    record_id = created[0]["id"]
    before = sandbox.get(record_id)
    assert before is not None and before["HasOptedOutOfEmail"] is False  # defaulted on create
    response = await client.patch(
        f"{V}/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "id": record_id, "Title": "Countess"},
                {"attributes": {"type": "Contact"}, "id": "003Dn0000000zzzIAA", "Title": "x"},
            ],
        },
    )
    results = response.json()
    assert results[0] == {"id": record_id, "success": True, "errors": []}
    assert results[1]["success"] is False
    assert results[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    after = sandbox.get(record_id)
    assert after is not None and after["Title"] == "Countess"
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert STAMP.match(after["SystemModstamp"])


async def test_collections_validation_codes(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    sandbox.add_validation_rule("Title", "Forbidden", "Title may not be Forbidden")
    results = await _create(
        client,
        {"LastName": "A", "Email": "not-an-email"},
        {"LastName": "B", "Status__c": "Martian"},
        {"LastName": "C", "Source__c": "s" * 41},
        {"LastName": "D", "Title": "forbidden"},
        {"LastName": "E", "SystemModstamp": "2024-01-01T00:00:00.000+0000"},
    )
    codes = [(r["errors"][0]["statusCode"], r["errors"][0]["fields"]) for r in results]
    assert codes == [
        ("INVALID_EMAIL_ADDRESS", ["Email"]),
        ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status__c"]),
        ("STRING_TOO_LONG", ["Source__c"]),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", ["Title"]),
        ("INVALID_FIELD_FOR_INSERT_UPDATE", ["SystemModstamp"]),
    ]
    assert sandbox.records() == []


async def test_duplicate_rule_is_off_by_default(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    twice = await _create(
        client,
        {"LastName": "A", "Email": "a@example.com"},
        {"LastName": "B", "Email": "A@example.com"},
    )
    assert all(result["success"] for result in twice)
    sandbox.duplicate_rule = True
    third = await _create(client, {"LastName": "C", "Email": "a@EXAMPLE.com"})
    assert third[0]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


EMAILS = ["a@example.com", "A@Example.com", "b@example.com", "c@example.com"]
EDITS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "set", "api-update", "clear", "delete"]),
        st.integers(min_value=0, max_value=7),
        st.sampled_from(EMAILS),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None)
@given(edits=EDITS)
async def test_duplicate_rule_follows_every_way_an_email_changes(
    edits: list[tuple[str, int, str]],
) -> None:
    """The duplicate rule looks Emails up in an index: after any mix of inserts, UI edits,
    API updates, cleared Emails and deletions it refuses exactly the Emails some record
    still has (compared case-insensitively), as a scan of every record would."""
    sandbox = SalesforceSandbox(duplicate_rule=True)
    await sandbox.start()
    try:
        async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
            http.headers["Authorization"] = f"Bearer {await _token(http, sandbox)}"
            ids: list[str] = []
            for kind, pick, email in edits:
                target = ids[pick % len(ids)] if ids else None
                if kind == "insert" or target is None:
                    ids.append(sandbox.insert({"LastName": "L", "Email": email}))
                elif kind == "set":
                    sandbox.set_fields(target, {"Email": email})
                elif kind == "clear":
                    sandbox.set_fields(target, {"Email": ""})
                elif kind == "delete":
                    sandbox.delete(target)
                    ids.remove(target)
                else:
                    await http.patch(
                        f"{V}/composite/sobjects",
                        json={
                            "allOrNone": False,
                            "records": [
                                {"attributes": {"type": "Contact"}, "id": target, "Email": email}
                            ],
                        },
                    )
            taken = {str(row["Email"]).casefold() for row in sandbox.records() if row["Email"]}
            results = []
            for email in EMAILS:  # one call each: a created probe must not count for the next
                (result,) = await _create(http, {"LastName": "P", "Email": email})
                results.append(result)
                if result["success"]:
                    sandbox.delete(result["id"])
        refused = [not result["success"] for result in results]
        assert refused == [email.casefold() in taken for email in EMAILS]
        for result in results:
            if not result["success"]:
                assert result["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    finally:
        await sandbox.stop()


async def test_collections_whole_request_errors(client: httpx.AsyncClient) -> None:
    too_many = await client.post(
        f"{V}/composite/sobjects",
        json={"records": [{"attributes": {"type": "Contact"}, "LastName": "x"}] * 201},
    )
    assert too_many.status_code == 400
    assert too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    unknown = await client.post(
        f"{V}/composite/sobjects",
        json={"records": [{"attributes": {"type": "Contact"}, "LastName": "x", "Nope__c": 1}]},
    )
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALID_FIELD"
    wrong_type = await client.post(
        f"{V}/composite/sobjects",
        json={"records": [{"attributes": {"type": "Contact"}, "HasOptedOutOfEmail": "yes"}]},
    )
    assert wrong_type.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    not_json = await client.post(f"{V}/composite/sobjects", content=b"{")
    assert not_json.status_code == 400


async def test_all_or_none_rolls_back(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        f"{V}/composite/sobjects",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Contact"}, "LastName": "fine"},
                {"attributes": {"type": "Contact"}, "FirstName": "no last name"},
            ],
        },
    )
    results = response.json()
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sandbox.records() == []


async def test_one_call_is_one_transaction_stamp(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    created = await _create(client, *({"LastName": f"L{i}"} for i in range(50)))
    stamps = {sandbox.get(result["id"])["SystemModstamp"] for result in created}  # type: ignore[index]
    assert len(stamps) == 1
    # A burst does not push the clock ahead: the next write is not later than "now" + 1 ms.
    later = sandbox.insert({"LastName": "After"})
    now = datetime.now(UTC)
    assert datetime.fromisoformat(sandbox.get(later)["SystemModstamp"]) <= now  # type: ignore[index]


async def test_modstamps_strictly_increase(sandbox: SalesforceSandbox) -> None:
    record_id = sandbox.insert({"LastName": "A"})
    stamps = []
    for index in range(50):
        sandbox.set_fields(record_id, {"Title": str(index)})
        stamps.append(sandbox.get(record_id)["SystemModstamp"])  # type: ignore[index]
    assert all(STAMP.match(stamp) for stamp in stamps)
    assert stamps == sorted(set(stamps))


def test_set_modstamp_stages_ties(sandbox: SalesforceSandbox) -> None:
    first, second = sandbox.insert({"LastName": "A"}), sandbox.insert({"LastName": "B"})
    moment = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    sandbox.set_modstamp(first, moment)
    sandbox.set_modstamp(second, moment)
    assert sandbox.get(first)["SystemModstamp"] == "2031-05-06T07:08:09.123+0000"  # type: ignore[index]
    assert sandbox.get(second)["SystemModstamp"] == sandbox.get(first)["SystemModstamp"]  # type: ignore[index]
    sandbox.set_fields(first, {"Title": "later"})
    assert sandbox.get(first)["SystemModstamp"] > "2031-05-06T07:08:09.123+0000"  # type: ignore[index]


# ---------------------------------------------------------------- describe, lists


async def test_describe_contact(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{V}/sobjects/Contact/describe")
    fields = {item["name"]: item for item in response.json()["fields"]}
    assert fields["Id"]["createable"] is False and fields["Id"]["updateable"] is False
    assert fields["LastName"]["nillable"] is False
    assert fields["Email"]["type"] == "email"
    assert fields["HasOptedOutOfEmail"]["defaultedOnCreate"] is True
    assert fields["Source__c"]["length"] == 40
    assert fields["Status__c"]["restrictedPicklist"] is True
    assert "Customer" in [value["value"] for value in fields["Status__c"]["picklistValues"]]
    assert fields["SystemModstamp"]["type"] == "datetime"
    missing = await client.get(f"{V}/sobjects/Widget__c/describe")
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"


async def test_campaign_members(sandbox: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    inside = sandbox.insert({"LastName": "In", "campaigns": ["Spring Launch"]})
    outside = sandbox.insert({"LastName": "Out"})
    campaign = sandbox.campaign_id("Spring Launch")
    assert campaign is not None and campaign.startswith("701")
    found = await _query(client, "SELECT Id FROM Campaign WHERE Name = 'Spring Launch'")
    assert [row["Id"] for row in found.json()["records"]] == [campaign]
    query = (
        f"SELECT ContactId FROM CampaignMember WHERE CampaignId = '{campaign}' "
        f"AND ContactId IN ('{inside}', '{outside}')"
    )
    assert [r["ContactId"] for r in (await _query(client, query)).json()["records"]] == [inside]
    sandbox.add_to_campaign(campaign, outside)
    sandbox.remove_from_campaign("Spring Launch", inside)
    assert [r["ContactId"] for r in (await _query(client, query)).json()["records"]] == [outside]


# ---------------------------------------------------------------- limits and faults


async def test_limit_header_counts_api_requests(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    sandbox.daily_api_limit = 3
    first = await client.get(f"{V}/limits")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/3"
    await client.get("/services/data/")  # the versions resource does not count
    second = await _query(client, "SELECT Id FROM Contact")
    assert second.headers["Sforce-Limit-Info"] == "api-usage=2/3"
    await client.get(f"{V}/limits")
    refused = await client.get(f"{V}/limits")
    assert refused.status_code == 403
    assert refused.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"


async def test_rate_limit_answers_403(
    sandbox: SalesforceSandbox, client: httpx.AsyncClient
) -> None:
    sandbox.rate_limit = RateLimit(requests=2, per_seconds=3600)
    assert (await client.get(f"{V}/limits")).status_code == 200
    assert (await client.get(f"{V}/limits")).status_code == 200
    refused = await client.get(f"{V}/limits")
    assert refused.status_code == 403
    assert refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


async def test_faults(sandbox: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    sandbox.inject(Fault(kind="status", status=503, count=2, retry_after=1.5, path_prefix=V))
    for _ in range(2):
        response = await client.get(f"{V}/limits")
        assert response.status_code == 503 and response.headers["Retry-After"] == "1.5"
    assert (await client.get(f"{V}/limits")).status_code == 200

    sandbox.inject(Fault(kind="malformed"))
    with pytest.raises(ValueError):
        (await client.get(f"{V}/limits")).json()

    sandbox.inject(Fault(kind="reset"))
    with pytest.raises(httpx.TransportError):
        await client.get(f"{V}/limits")

    sandbox.inject(Fault(kind="slow", delay=0.05))
    assert (await client.get(f"{V}/limits")).status_code == 200
    sandbox.inject(Fault(kind="status", status=500, path_prefix="/services/oauth2"))
    assert (await client.get(f"{V}/limits")).status_code == 200  # other paths unaffected
    assert sandbox.faults  # still waiting for a token request


# ---------------------------------------------------------------- pure helpers


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60))
def test_quote_round_trips_through_the_tokenizer(value: str) -> None:
    tokens = soql.tokenize(f"SELECT Id FROM Contact WHERE Email = {soql.quote(value)}")
    assert [token.kind for token in tokens[-3:]] == ["ident", "op", "string"]
    assert tokens[-1].value == value


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_datetime_literal_parses_back(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    (token,) = soql.tokenize(soql.datetime_literal(aware))
    assert token.kind == "datetime"
    assert abs(token.value - aware) < timedelta(milliseconds=1)


def test_id_checksum_suffix() -> None:
    # Each suffix character encodes which of five id characters are upper case.
    assert id_with_suffix("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert id_with_suffix("001a0000006vm9r")[15:] == "AAA"
    assert id_with_suffix("001A0000006Vm9r").lower() != id_with_suffix("001a0000006vm9r")


SOQL_PIECES = st.sampled_from(
    [
        "SELECT",
        "Id",
        ",",
        "FROM",
        "Contact",
        "WHERE",
        "Email",
        "=",
        "IN",
        "(",
        ")",
        "'x'",
        "'\\'",
        "AND",
        "NOT",
        "ORDER BY",
        "DESC",
        "LIMIT",
        "5",
        "-3.5",
        "null",
        "2024-13-45T99:99:99Z",
        "2024-01-01T00:00:00Z",
        "2024-02-30",
        "<=",
        "<>",
        "!",
        "@",
        "\\u12",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(SOQL_PIECES, max_size=14).map(" ".join), st.text(max_size=40)))
def test_soql_parser_fails_only_with_soql_errors(text: str) -> None:
    try:
        query = soql.parse(text)
    except soql.SoqlError:
        return
    assert query.fields and query.sobject
