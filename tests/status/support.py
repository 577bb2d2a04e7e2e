"""Fake-but-valid DataSyncConnection statuses, built from the API models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from datasync.api.models import (
    Condition,
    DataSyncConnectionStatus,
    DirectionCounts,
    Failures,
    FailureSample,
    Health,
    RecordCounts,
    SyncResult,
    SyncSummary,
)
from datasync.demo.manifests import connection_manifest

NOW = datetime(2026, 3, 1, 12, 7, 30, tzinfo=UTC)


def manifest(namespace: str, name: str, **spec_changes: Any) -> dict[str, Any]:
    document = connection_manifest(
        {"baseUrl": "https://api.hubapi.com"},
        {"organizationUrl": "https://acme.my.salesforce.com"},
    )
    document["metadata"] = {"name": name, "namespace": namespace}
    document["spec"].update(spec_changes)
    return document


def _condition(kind: str, ok: bool, reason: str, message: str = "") -> Condition:
    return Condition(
        type=kind,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        lastTransitionTime=NOW - timedelta(hours=1),
    )


def partial_status(finished: datetime = NOW) -> dict[str, Any]:
    summary = SyncSummary(
        job="contacts-29561234",
        startedAt=finished - timedelta(seconds=42),
        finishedAt=finished,
        result=SyncResult.PARTIALLY_SUCCEEDED,
        records=RecordCounts(
            toDestination=DirectionCounts(
                read=2000, created=760, updated=177, unchanged=206, skipped=928, failed=28
            ),
            toSource=DirectionCounts(read=958, created=670, updated=321, unchanged=150, failed=9),
        ),
        skipped={"MissingIdentity": 49, "NotInList": 843, "OptedOut": 57},
        failures=Failures(
            total=37,
            byReason={"InvalidEmail": 21, "RequiredFieldMissing": 16},
            samples=[
                FailureSample(app="source", recordId="1077", field="Email", reason="InvalidEmail"),
                FailureSample(
                    app="source", recordId="1113", field="LastName", reason="RequiredFieldMissing"
                ),
                FailureSample(
                    app="destination", recordId="003Dn0000000ABCIA2", reason="InvalidEmail"
                ),
                FailureSample(
                    app="destination", recordId="003Dn0000000XYZIA2", reason="MissingIdentity"
                ),
            ],
        ),
        health=Health(
            inSync=1972,
            excluded={"MissingIdentity": 49, "NotInList": 600, "OptedOut": 42},
            failing={"InvalidEmail": 21, "RequiredFieldMissing": 16},
        ),
        apiCalls={"source": 118, "destination": 66},
    )
    status = DataSyncConnectionStatus(
        observedGeneration=1,
        conditions=[
            _condition("Ready", True, "Ready", "CronJob runs on '*/15 * * * *'"),
            _condition("CredentialsValid", True, "CredentialsAccepted"),
            _condition("Synced", True, "PartiallySucceeded", "37 records failed"),
        ],
        cronJob="contacts",
        lastSync=summary,
        lastSuccessfulSyncAt=finished,
        health=summary.health,
    )
    return status.model_dump(mode="json", exclude_none=True)


def broken_status() -> dict[str, Any]:
    failed = SyncSummary(
        job="broken-1",
        startedAt=NOW - timedelta(minutes=20),
        finishedAt=NOW - timedelta(minutes=19),
        result=SyncResult.FAILED,
        error="AuthenticationFailed: HubSpot refused the refresh token; update key "
        "refreshToken of Secret hubspot-oauth",
    )
    status = DataSyncConnectionStatus(
        conditions=[
            _condition(
                "Ready", False, "SecretNotFound", "Secret 'hubspot-oauth' not found in namespace"
            ),
            _condition("CredentialsValid", False, "SecretNotFound", "no Secret to check"),
            _condition("Synced", False, "AuthenticationFailed", failed.error or ""),
        ],
        lastSync=failed,
    )
    return status.model_dump(mode="json", exclude_none=True)
