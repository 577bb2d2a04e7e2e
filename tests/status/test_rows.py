"""datasync.status: DataSyncConnection objects -> checklist rows, without a cluster."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.status import (
    connection_status,
    failures_text,
    human_delta,
    moved_text,
    next_run,
    skip_samples_text,
    skipped_text,
)
from tests.status.support import NOW, broken_status, manifest, partial_status


def _object(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    document = manifest("crm", "contacts", **spec)
    if status is not None:
        document["status"] = status
    return document


def test_partial_run_reads_like_the_checklist() -> None:
    row = connection_status(_object(partial_status()), NOW)
    assert (row.source, row.destination, row.direction) == ("hubspot", "salesforce", "TwoWay")
    assert row.ready.status == row.credentials.status == "True"
    assert row.last_run is not None and row.last_run["result"] == "PartiallySucceeded"
    assert skipped_text(row) == (
        "not in list 843 (NotInList), filtered out 57 (OptedOut), missing email 49 "
        "(MissingIdentity)"
    )
    assert failures_text(row) == [
        "InvalidEmail 21: hubspot 1077 (Email), salesforce 003Dn0000000ABCIA2",
        "RequiredFieldMissing 16: hubspot 1113 (LastName)",
    ]
    assert skip_samples_text(row) == ["MissingIdentity e.g. salesforce 003Dn0000000XYZIA2"]
    assert moved_text(row).startswith("to salesforce: 760 created, 177 updated, 206 unchanged")
    assert row.next_run == datetime(2026, 3, 1, 12, 15, tzinfo=UTC)
    document = row.to_json()
    assert document["nextRunAt"] == "2026-03-01T12:15:00Z"
    assert document["failures"]["samples"][0] == {
        "app": "source",
        "recordId": "1077",
        "reason": "InvalidEmail",
        "field": "Email",
    }
    json.dumps(document)


def test_suspended_connection_has_no_next_run() -> None:
    row = connection_status(_object(suspend=True), NOW)
    assert row.suspended and row.next_run is None and row.last_run is None
    assert row.ready.status == "Unknown"  # no status yet: not claimed Ready
    assert not row.observed and row.to_json()["observedByOperator"] is False


def test_status_of_an_older_generation_is_flagged() -> None:
    document = _object(partial_status())
    document["metadata"]["generation"] = 3
    row = connection_status(document, NOW)
    assert row.observed and row.stale  # observedGeneration 1 < generation 3
    document["metadata"]["generation"] = 1
    assert not connection_status(document, NOW).stale


def test_failed_run_keeps_the_reason_and_next_steps() -> None:
    row = connection_status(_object(broken_status()), NOW)
    assert row.ready.reason == "SecretNotFound" and row.synced.reason == "AuthenticationFailed"
    assert row.last_run is not None and "refreshToken" in row.last_run["error"]
    assert failures_text(row) == []


def test_next_run_follows_cron_in_utc() -> None:
    assert next_run("0 3 * * *", False, NOW) == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert next_run("@hourly", False, NOW) == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert next_run("not cron", False, NOW) is None
    assert next_run("*/5 * * * *", True, NOW) is None


def test_human_delta() -> None:
    assert [human_delta(s) for s in (5, 125, 7260, 90000, -3)] == [
        "5s",
        "2m",
        "2h01m",
        "1d1h",
        "0s",
    ]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    status=st.dictionaries(
        st.sampled_from(["conditions", "lastSync", "health", "lastSuccessfulSyncAt"]), _json
    ),
    spec=st.dictionaries(
        st.sampled_from(["schedule", "suspend", "filters", "source", "direction"]), _json
    ),
    minutes=st.integers(min_value=0, max_value=10_000),
)
def test_any_object_shape_gives_a_row(
    status: dict[str, Any], spec: dict[str, Any], minutes: int
) -> None:
    """Older, partial or hand-edited objects never crash `datasync status`."""
    now = NOW + timedelta(minutes=minutes)
    row = connection_status(
        {"metadata": {"name": "x", "namespace": "y"}, "spec": spec, "status": status}, now
    )
    json.dumps(row.to_json())
    skipped_text(row), moved_text(row), failures_text(row)
    if row.next_run is not None:
        assert row.next_run > now - timedelta(seconds=1)
