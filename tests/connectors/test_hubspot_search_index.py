"""The HubSpot sandbox's search answers from a lastmodifieddate index when it can; its
answers must be exactly those of filtering and sorting every contact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

SEARCH = "/crm/v3/objects/contacts/search"
BASE_MS = 1_700_000_000_000


@pytest.fixture
async def client(hubspot_sandbox: HubSpotSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hubspot_sandbox.base_url) as http:
        http.headers["Authorization"] = f"Bearer {hubspot_sandbox.private_app_token}"
        yield http


def reference(sandbox: HubSpotSandbox, body: dict[str, Any]) -> tuple[int, list[str]]:
    """Every contact filtered and sorted: the search's meaning, without the index."""
    groups = body.get("filterGroups") or []
    matches = [
        contact
        for contact in sandbox.contacts.values()
        if not groups or any(sandbox._matches_group(contact, group) for group in groups)
    ]
    ordered = sandbox._sorted(matches, body.get("sorts") or [])
    return len(ordered), [contact.id for contact in ordered]


offset = st.integers(-3, 12)
condition = st.one_of(
    st.tuples(
        st.sampled_from(["EQ", "GT", "GTE", "LT", "LTE"]),
        st.one_of(offset.map(lambda o: str(BASE_MS + o)), st.just(BASE_MS + 4.5)),
    ).map(lambda t: {"propertyName": "lastmodifieddate", "operator": t[0], "value": t[1]}),
    st.tuples(offset, offset).map(
        lambda t: {
            "propertyName": "lastmodifieddate",
            "operator": "BETWEEN",
            "value": str(BASE_MS + t[0]),
            "highValue": str(BASE_MS + t[1]),
        }
    ),
    st.integers(1000, 1012).map(
        lambda i: {"propertyName": "hs_object_id", "operator": "GT", "value": str(i)}
    ),
    st.just({"propertyName": "lastmodifieddate", "operator": "NEQ", "value": str(BASE_MS)}),
)
sort = st.sampled_from(
    [
        [],
        [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
        [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
    ]
)


def _boundary(operator: str) -> dict[str, Any]:
    return {
        "stamps": [0, 1, 2],
        "edits": [],
        "groups": [
            [{"propertyName": "lastmodifieddate", "operator": operator, "value": str(BASE_MS + 1)}]
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "limit": 5,
        "after": 0,
    }


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stamps=st.lists(st.integers(0, 9), min_size=1, max_size=12),
    edits=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 9)), max_size=4),
    groups=st.one_of(
        st.lists(condition, max_size=3).map(lambda filters: [filters]),  # the indexed shape
        st.lists(st.lists(condition, max_size=3), max_size=2),
    ),
    sorts=st.one_of(
        st.just([{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]), sort
    ),
    limit=st.integers(1, 5),
    after=st.integers(0, 6),
)
@example(**_boundary("LT"))
@example(**_boundary("GT"))
@example(**_boundary("LTE"))
@example(**_boundary("GTE"))
@example(**_boundary("EQ"))
async def test_indexed_search_answers_as_a_full_scan(
    hubspot_sandbox: HubSpotSandbox,
    client: httpx.AsyncClient,
    stamps: list[int],
    edits: list[tuple[int, int]],
    groups: list[list[dict[str, Any]]],
    sorts: list[dict[str, str]],
    limit: int,
    after: int,
) -> None:
    sandbox = hubspot_sandbox
    start = len(sandbox.contacts)
    sandbox.load([{"email": f"s{start + i}@example.com"} for i in range(len(stamps))])
    ids = list(sandbox.contacts)[start:]
    for record_id, stamp in zip(ids, stamps, strict=True):
        sandbox.contacts[record_id].modified_ms = BASE_MS + stamp  # as tests and bench do
    for index, stamp in edits:
        if index < len(ids):
            sandbox.contacts[ids[index]].modified_ms = BASE_MS + stamp
    body: dict[str, Any] = {
        "filterGroups": [{"filters": filters} for filters in groups],
        "sorts": sorts,
        "limit": limit,
        "after": str(after),
        "properties": ["email"],
    }

    answer = (await client.post(SEARCH, json=body)).json()

    total, ordered = reference(sandbox, body)
    assert answer["total"] == total
    assert [item["id"] for item in answer["results"]] == ordered[after : after + limit]
    assert ("paging" in answer) == (after + limit < total)
    for contact in sandbox.contacts.values():  # leave no contact behind for the next example
        contact.modified_ms = 0
