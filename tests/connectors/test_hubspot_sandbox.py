"""The HubSpot sandbox is product code: exercise its HTTP API directly with httpx."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from datasync_connectors.hubspot.sandbox import HubSpotSandbox, iso_ms, parse_time_ms
from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.api.models import AuthType
from datasync.sandbox import Fault, RateLimit

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SEARCH = "/crm/v3/objects/contacts/search"
BATCH = "/crm/v3/objects/contacts/batch"


@pytest.fixture
async def client(hubspot_sandbox: HubSpotSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        http.headers["Authorization"] = f"Bearer {hubspot_sandbox.private_app_token}"
        yield http


def _people(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"email": f"p{i}@example.com", "firstname": f"F{i}", "lastname": f"L{i}"}
        for i in range(start, start + count)
    ]


def _filter(name: str, operator: str, value: str) -> dict[str, str]:
    return {"propertyName": name, "operator": operator, "value": value}


async def _search(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post(SEARCH, json=body)


# ---------------------------------------------------------------- OAuth and auth


async def _refresh(
    http: httpx.AsyncClient,
    sandbox: HubSpotSandbox,
    path: str = "/oauth/v1/token",
    **overrides: str,
) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token,
        **overrides,
    }
    return await http.post(path, data=form)


async def test_token_endpoints_issue_short_lived_tokens(hubspot_sandbox: HubSpotSandbox) -> None:
    hubspot_sandbox.token_ttl = 60
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        for path in ("/oauth/v1/token", "/oauth/2026-03/token"):
            response = await _refresh(http, hubspot_sandbox, path=path)
            assert response.status_code == 200
            body = response.json()
            assert body["expires_in"] == 60
            assert body["refresh_token"] == hubspot_sandbox.refresh_token
            token = body["access_token"]
            listed = await http.get(
                "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"}
            )
            assert listed.status_code == 200
    assert hubspot_sandbox.tokens_issued == 2


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("refresh_token", "BAD_REFRESH_TOKEN"),
        ("client_id", "BAD_CLIENT_ID"),
        ("client_secret", "BAD_CLIENT_SECRET"),
        ("grant_type", "BAD_GRANT_TYPE"),
    ],
)
async def test_token_endpoint_errors(
    hubspot_sandbox: HubSpotSandbox, field: str, status: str
) -> None:
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        response = await _refresh(http, hubspot_sandbox, **{field: "wrong"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == status
    assert body["message"] and body["error"] and body["error_description"]
    assert hubspot_sandbox.tokens_issued == 0


async def test_requests_need_a_valid_bearer_token(hubspot_sandbox: HubSpotSandbox) -> None:
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        missing = await http.get("/crm/v3/objects/contacts")
        wrong = await http.get("/crm/v3/objects/contacts", headers={"Authorization": "Bearer nope"})
        token = (await _refresh(http, hubspot_sandbox)).json()["access_token"]
        hubspot_sandbox.expire_access_tokens()
        expired = await http.get(
            "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"}
        )
    assert [missing.status_code, wrong.status_code, expired.status_code] == [401, 401, 401]
    assert missing.json()["category"] == "INVALID_AUTHENTICATION"
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
    assert {"status", "message", "correlationId", "category"} <= set(missing.json())


async def test_revoked_refresh_token(hubspot_sandbox: HubSpotSandbox) -> None:
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        token = (await _refresh(http, hubspot_sandbox)).json()["access_token"]
        hubspot_sandbox.inject(Fault(kind="revoke_refresh_token"))
        refused = await _refresh(http, hubspot_sandbox)
        call = await http.get(
            "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"}
        )
    assert refused.json()["status"] == "BAD_REFRESH_TOKEN"
    assert call.status_code == 401


def test_credentials_and_settings(hubspot_sandbox: HubSpotSandbox) -> None:
    assert set(hubspot_sandbox.credentials(AuthType.OAUTH)) == {
        "clientId",
        "clientSecret",
        "refreshToken",
    }
    assert hubspot_sandbox.credentials(AuthType.APP_PARAMETERS) == {
        "accessToken": hubspot_sandbox.private_app_token
    }
    assert hubspot_sandbox.connector_settings() == {"baseUrl": hubspot_sandbox.base_url}
    other = HubSpotSandbox()
    assert other.credentials(AuthType.OAUTH) != hubspot_sandbox.credentials(AuthType.OAUTH)


# ---------------------------------------------------------------- search


async def test_search_filters_sorts_and_pages(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    hubspot_sandbox.load(_people(25))
    hubspot_sandbox.load([{"email": "nameless@example.com"}])
    everyone = await _search(client, limit=200)
    assert everyone.json()["total"] == 26
    assert set(everyone.json()["results"][0]["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    eq = await _search(
        client,
        filterGroups=[
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "P3@Example.com"}]}
        ],
        properties=["email"],
    )
    assert [item["properties"]["email"] for item in eq.json()["results"]] == ["p3@example.com"]
    either = await _search(
        client,
        filterGroups=[
            {"filters": [{"propertyName": "firstname", "operator": "IN", "values": ["F1", "F2"]}]},
            {"filters": [{"propertyName": "firstname", "operator": "NOT_HAS_PROPERTY"}]},
        ],
        sorts=[{"propertyName": "email", "direction": "DESCENDING"}],
        properties=["email"],
    )
    assert [item["properties"]["email"] for item in either.json()["results"]] == [
        "p2@example.com",
        "p1@example.com",
        "nameless@example.com",
    ]
    has = await _search(
        client,
        filterGroups=[{"filters": [{"propertyName": "firstname", "operator": "HAS_PROPERTY"}]}],
    )
    assert has.json()["total"] == 25
    first = await _search(client, limit=10, sorts=[{"propertyName": "hs_object_id"}])
    assert first.json()["paging"]["next"]["after"] == "10"
    last = await _search(client, limit=10, after="20", sorts=[{"propertyName": "hs_object_id"}])
    assert len(last.json()["results"]) == 6 and "paging" not in last.json()
    too_big = await _search(client, limit=201)
    assert too_big.status_code == 400
    assert too_big.json()["category"] == "VALIDATION_ERROR"


async def test_search_by_modified_date(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    hubspot_sandbox.load(_people(5))
    ids = list(hubspot_sandbox.contacts)
    middle = hubspot_sandbox.contacts[ids[2]].modified_ms
    for operator, expected in (("GTE", ids[2:]), ("GT", ids[3:]), ("LT", ids[:2])):
        for value in (str(middle), iso_ms(middle)):
            response = await _search(
                client,
                filterGroups=[
                    {
                        "filters": [
                            {
                                "propertyName": "lastmodifieddate",
                                "operator": operator,
                                "value": value,
                            }
                        ]
                    }
                ],
                sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            )
            assert [item["id"] for item in response.json()["results"]] == expected


async def test_search_window(hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    hubspot_sandbox.search_window = 30
    hubspot_sandbox.load(_people(40))
    inside = await _search(client, limit=10, after="20")
    assert inside.status_code == 200
    assert inside.json()["total"] == 40
    beyond = await _search(client, limit=10, after="30")
    assert beyond.status_code == 400
    assert beyond.json()["category"] == "VALIDATION_ERROR"


# ---------------------------------------------------------------- batch APIs


async def test_batch_read_by_id_and_email(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    hubspot_sandbox.load(_people(3))
    ids = list(hubspot_sandbox.contacts)
    by_id = await client.post(
        f"{BATCH}/read", json={"properties": ["email"], "inputs": [{"id": ids[0]}]}
    )
    assert by_id.status_code == 200
    assert by_id.json()["results"][0]["properties"]["email"] == "p0@example.com"
    by_email = await client.post(
        f"{BATCH}/read",
        json={
            "idProperty": "email",
            "properties": ["email"],
            "inputs": [{"id": "P1@EXAMPLE.COM"}, {"id": "ghost@example.com"}],
        },
    )
    assert by_email.status_code == 207
    body = by_email.json()
    assert [item["id"] for item in body["results"]] == [ids[1]]
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"]["ids"] == ["ghost@example.com"]


async def test_batch_limit_is_100(client: httpx.AsyncClient) -> None:
    inputs = [{"properties": person} for person in _people(101)]
    response = await client.post(f"{BATCH}/create", json={"inputs": inputs})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


async def test_batch_create_multi_status(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    hubspot_sandbox.load([{"email": "taken@example.com"}])
    (taken,) = list(hubspot_sandbox.contacts)
    inputs = [
        {"properties": {"email": "new@example.com"}, "objectWriteTraceId": "a"},
        {"properties": {"email": "nope"}, "objectWriteTraceId": "b"},
        {"properties": {"email": "Taken@example.com"}, "objectWriteTraceId": "c"},
        {"properties": {"lifecyclestage": "vip"}, "objectWriteTraceId": "d"},
        {"properties": {"lastmodifieddate": "1"}, "objectWriteTraceId": "e"},
    ]
    response = await client.post(f"{BATCH}/create", json={"inputs": inputs})
    assert response.status_code == 207
    body = response.json()
    assert [item["objectWriteTraceId"] for item in body["results"]] == ["a"]
    errors = {error["context"]["objectWriteTraceId"][0]: error for error in body["errors"]}
    assert errors["b"]["errors"][0]["code"] == "INVALID_EMAIL"
    assert errors["b"]["errors"][0]["context"]["propertyName"] == ["email"]
    assert '"error":"INVALID_EMAIL"' in errors["b"]["message"]
    assert errors["c"]["category"] == "CONFLICT"
    assert errors["c"]["context"]["existingId"] == [taken]
    assert errors["d"]["errors"][0]["code"] == "INVALID_OPTION"
    assert errors["e"]["errors"][0]["code"] == "READ_ONLY_VALUE"
    assert len(hubspot_sandbox.contacts) == 2


async def test_batch_create_without_trace_ids_is_all_or_nothing(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    inputs = [{"properties": {"email": "ok@example.com"}}, {"properties": {"email": "bad"}}]
    response = await client.post(f"{BATCH}/create", json={"inputs": inputs})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert hubspot_sandbox.contacts == {}
    fine = await client.post(f"{BATCH}/create", json={"inputs": inputs[:1]})
    assert fine.status_code == 201
    assert fine.json()["status"] == "COMPLETE"


async def test_batch_update(hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    hubspot_sandbox.load(_people(2))
    first, second = list(hubspot_sandbox.contacts)
    before = hubspot_sandbox.contacts[first].modified_ms
    response = await client.post(
        f"{BATCH}/update",
        json={
            "inputs": [
                {"id": first, "properties": {"firstname": "New", "hs_email_optout": True}},
                {"id": second, "properties": {"email": "p0@example.com"}},
                {"id": "777", "properties": {"firstname": "Ghost"}},
            ]
        },
    )
    assert response.status_code == 207
    body = response.json()
    assert [item["id"] for item in body["results"]] == [first]
    assert body["results"][0]["properties"]["hs_email_optout"] == "true"
    categories = sorted(error["category"] for error in body["errors"])
    assert categories == ["CONFLICT", "OBJECT_NOT_FOUND"]
    assert hubspot_sandbox.contacts[first].modified_ms > before
    duplicate = await client.post(
        f"{BATCH}/update",
        json={"inputs": [{"id": first, "properties": {}}, {"id": first, "properties": {}}]},
    )
    assert duplicate.status_code == 400


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["create", "edit"]), min_size=1, max_size=30))
def test_every_write_moves_lastmodifieddate_forward(steps: list[str]) -> None:
    sandbox = HubSpotSandbox()
    sandbox.load([{"email": "seed@example.com"}])
    (seed,) = list(sandbox.contacts)
    stamps = [sandbox.contacts[seed].modified_ms]
    for index, step in enumerate(steps):
        if step == "create":
            sandbox.load([{"email": f"c{index}@example.com"}])
            stamps.append(sandbox.contacts[list(sandbox.contacts)[-1]].modified_ms)
        else:
            sandbox.set_properties(seed, {"firstname": f"v{index}"})
            stamps.append(sandbox.contacts[seed].modified_ms)
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))
    record = sandbox.get(seed)
    assert record is not None
    stamp = record["properties"]["lastmodifieddate"]
    assert STAMP.match(stamp)
    assert parse_time_ms(stamp) == sandbox.contacts[seed].modified_ms


# ---------------------------------------------------------------- properties and lists


async def test_properties_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/crm/v3/properties/contacts")
    properties = {item["name"]: item for item in response.json()["results"]}
    stage = properties["lifecyclestage"]
    assert stage["type"] == "enumeration"
    assert "customer" in [option["value"] for option in stage["options"]]
    assert properties["hs_email_optout"]["type"] == "bool"
    assert properties["phone"]["fieldType"] == "phonenumber"
    for read_only in ("hs_object_id", "createdate", "lastmodifieddate"):
        assert properties[read_only]["modificationMetadata"]["readOnlyValue"] is True
    assert properties["email"]["modificationMetadata"]["readOnlyValue"] is False
    assert (await client.get("/crm/v3/properties/companies")).status_code == 400


async def test_lists(hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    hubspot_sandbox.load([{**person, "lists": ["Loaded"]} for person in _people(5)])
    ids = list(hubspot_sandbox.contacts)
    created = await client.post("/crm/v3/lists", json={"name": "Made", "objectTypeId": "0-1"})
    list_id = created.json()["list"]["listId"]
    added = await client.put(f"/crm/v3/lists/{list_id}/memberships/add", json=ids[:3])
    assert added.json()["recordIdsAdded"] == ids[:3]
    removed = await client.put(f"/crm/v3/lists/{list_id}/memberships/remove", json=ids[:1])
    assert removed.json()["recordIdsRemoved"] == ids[:1]
    by_name = await client.get("/crm/v3/lists/object-type-id/0-1/name/loaded")
    loaded_id = by_name.json()["list"]["listId"]
    page = await client.get(f"/crm/v3/lists/{loaded_id}/memberships", params={"limit": 2})
    assert [item["recordId"] for item in page.json()["results"]] == ids[:2]
    after = page.json()["paging"]["next"]["after"]
    rest = await client.get(
        f"/crm/v3/lists/{loaded_id}/memberships", params={"limit": 250, "after": after}
    )
    assert [item["recordId"] for item in rest.json()["results"]] == ids[2:]
    assert "paging" not in rest.json()
    missing = await client.get("/crm/v3/lists/object-type-id/0-1/name/absent")
    assert missing.status_code == 404
    batch = await client.post(
        "/crm/v3/lists/records/memberships/batch/read",
        json={"inputs": [{"objectTypeId": "0-1", "recordId": ids[1]}]},
    )
    listed = {item["listId"] for item in batch.json()["results"][0]["recordListMemberships"]}
    assert listed == {loaded_id, list_id}


# ---------------------------------------------------------------- rate limits and faults


async def test_rate_limit_headers_and_429(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    hubspot_sandbox.rate_limit = RateLimit(requests=2, per_seconds=60)
    first = await client.get("/crm/v3/objects/contacts")
    second = await client.get("/crm/v3/objects/contacts")
    third = await client.get("/crm/v3/objects/contacts")
    assert first.headers["X-HubSpot-RateLimit-Max"] == "2"
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == "1"
    assert second.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert first.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "60000"
    assert "X-HubSpot-RateLimit-Daily-Remaining" in first.headers  # private-app token
    assert third.status_code == 429
    body = third.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"]
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        token = (await _refresh(http, hubspot_sandbox)).json()["access_token"]  # not limited
        oauth = await http.get(
            "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"}
        )
    assert oauth.status_code == 429
    assert "X-HubSpot-RateLimit-Daily" not in oauth.headers


async def test_faults(hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    path = "/crm/v3/objects/contacts"
    hubspot_sandbox.inject(Fault(kind="status", status=429, retry_after=2))
    limited = await client.get(path)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    hubspot_sandbox.inject(Fault(kind="status", status=503, count=2, path_prefix="/crm/v3/lists"))
    assert (await client.get(path)).status_code == 200  # the prefix does not match
    hubspot_sandbox.inject(Fault(kind="malformed"))
    malformed = await client.get(path)
    with pytest.raises(ValueError):
        malformed.json()
    hubspot_sandbox.inject(Fault(kind="reset"))
    with pytest.raises(httpx.TransportError):
        await client.get(path)
    hubspot_sandbox.inject(Fault(kind="slow", delay=0.05))
    assert (await client.get(path)).status_code == 200
    assert (await client.get("/crm/v3/lists/1")).status_code == 503
    assert hubspot_sandbox.faults[0].count == 1


# ---------------------------------------------------------------- the CLI


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from datasync.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_cli_serves_and_prints_what_to_apply(tmp_path: Path) -> None:
    data = tmp_path / "people.jsonl"
    data.write_text(
        '{"email": "cli@example.com", "lists": ["CLI"]}\n\n{"email": "b@example.com"}\n'
    )
    process = _cli("sandbox", "hubspot", "--port", "0", "--data", str(data))
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "Press Ctrl-C to stop.":
            line = await asyncio.to_thread(process.stdout.readline)
            assert line, (
                f"the sandbox exited early: {process.stderr.read() if process.stderr else ''}"
            )
            lines.append(line.rstrip("\n"))
        output = "\n".join(lines)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output)
        assert url is not None and "(2 records loaded)" in output
        manifests = re.findall(r"<<'EOF'\n(.*?)\nEOF", output, flags=re.S)
        secrets = [yaml.safe_load(text) for text in manifests]
        assert [secret["kind"] for secret in secrets] == ["Secret", "Secret"]
        access_token = secrets[1]["stringData"]["accessToken"]
        async with httpx.AsyncClient(base_url=url.group(1)) as http:
            response = await http.post(
                SEARCH, json={}, headers={"Authorization": f"Bearer {access_token}"}
            )
            token = await http.post(
                "/oauth/v1/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": secrets[0]["stringData"]["clientId"],
                    "client_secret": secrets[0]["stringData"]["clientSecret"],
                    "refresh_token": secrets[0]["stringData"]["refreshToken"],
                },
            )
        assert response.json()["total"] == 2
        assert token.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_unknown_sandbox_lists_the_available_ones() -> None:
    process = _cli("sandbox", "nosuchapp")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "unknown sandbox 'nosuchapp'" in stderr and "hubspot" in stderr
    assert "Traceback" not in stderr


def test_cli_bad_data_file_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"email": "ok@example.com"}\nnot json\n')
    process = _cli("sandbox", "hubspot", "--data", str(data))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"{data}:2" in stderr and "Traceback" not in stderr
