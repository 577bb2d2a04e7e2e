"""HubSpot inclusion lists by join order: the sandbox's documented endpoint over real HTTP,
and the connector's list_changes against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from datasync_connectors.hubspot import HubSpotConnector
from datasync_connectors.hubspot.sandbox import HubSpotSandbox, parse_time_ms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.api.models import AuthType
from datasync.connector import ConfigurationError
from datasync.sandbox import Fault
from tests.connectors.conftest import FAST_RETRY

JOIN_ORDER = "/crm/v3/lists/{}/memberships/join-order"
FUTURE = datetime(2999, 1, 1, tzinfo=UTC)  # as `since`: read where the join order stands


@pytest.fixture
async def client(hubspot_sandbox: HubSpotSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        http.headers["Authorization"] = f"Bearer {hubspot_sandbox.private_app_token}"
        yield http


def connector(sandbox: HubSpotSandbox) -> HubSpotConnector:
    return HubSpotConnector(
        sandbox.connector_settings(),
        sandbox.credentials(AuthType.APP_PARAMETERS),
        AuthType.APP_PARAMETERS,
        retry=FAST_RETRY,
    )


def people(sandbox: HubSpotSandbox, count: int) -> list[str]:
    before = len(sandbox.contacts)
    sandbox.load([{"email": f"p{i}@example.com", "lastname": f"L{i}"} for i in range(count)])
    return list(sandbox.contacts)[before:]


def ids_of(response: httpx.Response) -> list[str]:
    return [item["recordId"] for item in response.json()["results"]]


# ---------------------------------------------------------------- the sandbox's endpoint


async def test_join_order_ascends_by_default_and_with_after_and_descends_with_before(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    ids = people(hubspot_sandbox, 5)
    list_id = hubspot_sandbox.create_list("Joined")
    for record_id in [ids[3], ids[0], ids[4], ids[1]]:  # join order differs from id order
        hubspot_sandbox.add_to_list(list_id, [record_id])
    path = JOIN_ORDER.format(list_id)

    first = await client.get(path, params={"limit": 3})
    rest = await client.get(path, params={"after": first.json()["paging"]["next"]["after"]})
    newest = await client.get(path, params={"before": "4", "limit": 2})
    older = await client.get(path, params={"before": newest.json()["paging"]["prev"]["before"]})
    both = await client.get(path, params={"before": "4", "after": "0"})

    assert ids_of(first) == [ids[3], ids[0], ids[4]]
    assert first.json()["total"] == 4
    assert ids_of(rest) == [ids[1]] and "next" not in rest.json().get("paging", {})
    assert ids_of(newest) == [ids[1], ids[4]]
    assert ids_of(older) == [ids[0], ids[3]]
    assert ids_of(both) == [ids[3], ids[0], ids[4], ids[1]]  # after takes precedence
    stamps = [item["membershipTimestamp"] for item in first.json()["results"]]
    assert [parse_time_ms(stamp) for stamp in stamps] == sorted(
        parse_time_ms(stamp) or 0 for stamp in stamps
    )
    for bad in ({"before": "-1"}, {"after": "x"}, {"limit": "251"}):
        assert (await client.get(path, params=bad)).status_code == 400
    assert (await client.get(JOIN_ORDER.format("999"))).status_code == 404


async def test_joining_again_moves_the_timestamp_and_the_list_reports_size_and_update(
    hubspot_sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    ids = people(hubspot_sandbox, 3)
    list_id = hubspot_sandbox.create_list("Moving")
    hubspot_sandbox.add_to_list(list_id, ids)
    before = (await client.get(f"/crm/v3/lists/{list_id}")).json()["list"]

    await client.put(f"/crm/v3/lists/{list_id}/memberships/remove", json=[ids[0]])
    await client.put(f"/crm/v3/lists/{list_id}/memberships/add", json=[ids[0]])
    await client.put(f"/crm/v3/lists/{list_id}/memberships/add", json=[ids[1]])  # no change
    after = (await client.get(f"/crm/v3/lists/{list_id}")).json()["list"]
    order = (await client.get(JOIN_ORDER.format(list_id))).json()["results"]

    assert before["size"] == after["size"] == 3
    assert parse_time_ms(after["updatedAt"]) > parse_time_ms(before["updatedAt"])  # type: ignore[operator]
    assert [item["recordId"] for item in order] == [ids[1], ids[2], ids[0]]


# ---------------------------------------------------------------- the connector


async def test_list_changes_reads_only_the_members_who_joined_since(
    hubspot_sandbox: HubSpotSandbox, allow_sandbox_urls: None
) -> None:
    ids = people(hubspot_sandbox, 700)
    list_id = hubspot_sandbox.create_list("Big")
    hubspot_sandbox.add_to_list(list_id, ids[:400])
    async with connector(hubspot_sandbox) as hubspot:
        before = datetime.now(UTC).replace(microsecond=0)
        calls = hubspot.api_calls
        start = await hubspot.list_changes("big", None)
        assert start is not None and (start.size, start.joined, start.latest) == (400, [], None)
        # HubSpot's clock (the Date header, whole seconds) when it described the list: no
        # membership needs reading.
        assert start.as_of is not None and before <= start.as_of <= datetime.now(UTC)
        assert hubspot.api_calls - calls == 1
        newest = await hubspot.list_changes("big", FUTURE)  # one page, stopped at once
        assert newest is not None and newest.joined == [] and newest.latest is not None
        calls = hubspot.api_calls
        hubspot_sandbox.add_to_list(list_id, ids[400:700])  # 300 join: two pages back
        hubspot_sandbox.remove_from_list(list_id, ids[:10])
        changes = await hubspot.list_changes(list_id, newest.latest + timedelta(milliseconds=1))
        paths = dict(hubspot_sandbox.path_counts)
    assert changes is not None
    assert changes.size == 690
    assert sorted(changes.joined) == sorted(ids[400:700])
    assert changes.latest is not None and changes.latest > newest.latest
    assert hubspot.api_calls - calls == 3  # the list, then two join-order pages of 250
    assert not any(path.endswith("/memberships") for path in paths)


async def test_list_changes_of_an_empty_list_and_of_a_missing_one(
    hubspot_sandbox: HubSpotSandbox, allow_sandbox_urls: None
) -> None:
    hubspot_sandbox.create_list("Empty")
    async with connector(hubspot_sandbox) as hubspot:
        empty = await hubspot.list_changes("Empty", None)
        calls = hubspot.api_calls
        with pytest.raises(ConfigurationError) as missing:
            await hubspot.list_changes("No Such List", None)
    assert empty is not None and (empty.size, empty.joined, empty.latest) == (0, [], None)
    assert calls == 1  # the list (a private app needs no token call), no join-order page
    assert missing.value.field == "inclusionList.list"


async def test_a_refused_offset_or_a_list_still_processing_means_read_the_whole_list(
    hubspot_sandbox: HubSpotSandbox, allow_sandbox_urls: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = people(hubspot_sandbox, 3)
    list_id = hubspot_sandbox.create_list("Refused")
    hubspot_sandbox.add_to_list(list_id, ids)
    hubspot_sandbox.inject(Fault("status", status=400, path_prefix=JOIN_ORDER.format(list_id)))
    async with connector(hubspot_sandbox) as hubspot:
        refused = await hubspot.list_changes(list_id, FUTURE)
        served = await hubspot.list_changes(list_id, FUTURE)
        original = hubspot_sandbox.lists[list_id].to_json

        def processing() -> dict[str, Any]:
            return {**original(), "processingStatus": "PROCESSING"}

        monkeypatch.setattr(hubspot_sandbox.lists[list_id], "to_json", processing)
        still = await hubspot.list_changes(list_id, None)
    assert refused is None
    assert served is not None and served.size == 3
    assert still is None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(0, 7)), max_size=25))
async def test_list_changes_and_size_agree_with_the_list(
    hubspot_sandbox: HubSpotSandbox, allow_sandbox_urls: None, steps: list[tuple[bool, int]]
) -> None:
    """Every current member who joined after `since` is in `joined`, nobody else is, and
    the size is the list's."""
    hubspot_sandbox.lists.clear()
    ids = people(hubspot_sandbox, 8)
    list_id = hubspot_sandbox.create_list("Property")
    hubspot_sandbox.add_to_list(list_id, ids[:4])
    async with connector(hubspot_sandbox) as hubspot:
        start = await hubspot.list_changes(list_id, FUTURE)
        assert start is not None and start.latest is not None
        since = start.latest + timedelta(milliseconds=1)
        for join, index in steps:
            if join:
                hubspot_sandbox.add_to_list(list_id, [ids[index]])
            else:
                hubspot_sandbox.remove_from_list(list_id, [ids[index]])
        changes = await hubspot.list_changes(list_id, since)
    members = hubspot_sandbox.lists[list_id].members
    assert changes is not None and changes.size == len(members)
    since_ms = int(since.timestamp() * 1000)
    assert sorted(changes.joined) == sorted(i for i, at in members.items() if at >= since_ms)
