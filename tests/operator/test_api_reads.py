"""What the operator asks the API server, counted by the real API server itself
(`apiserver_request_total`), and how it reads Secrets: with the strict parser of
`datasync sync`."""

from __future__ import annotations

import base64
import time
from collections import Counter

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.operator.conftest import Apps
from tests.operator.support import (
    Cluster,
    OperatorProcess,
    connection,
    request_counts,
    secret,
    wait_for,
)

pytestmark = pytest.mark.integration

OWNED = ("serviceaccounts", "configmaps", "persistentvolumeclaims", "cronjobs")
WATCHED = ("secrets", "datasyncconnections/status", "events", *OWNED)


def _operator_requests(plane: ControlPlane) -> Counter[tuple[str, str]]:
    """Single-object reads and writes of the Secrets, the owned kinds and the status: what
    a reconcile does. Lists and watches (controllers' informers) and the test's own reads
    of the connection are left out."""
    return Counter(
        {
            (verb, resource): count
            for (verb, resource), count in request_counts(plane).items()
            if resource in WATCHED and verb in ("GET", "POST", "PUT", "PATCH")
        }
    )


def _settled(plane: ControlPlane, quiet: float = 3.0) -> Counter[tuple[str, str]]:
    """The counts once they have not moved for `quiet` seconds."""
    last = _operator_requests(plane)
    since = time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _operator_requests(plane)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"the operator's requests never settled: {last}")


def _delta(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> dict[str, int]:
    return {
        f"{verb} {resource}": after[key] - before[key]
        for key in after
        for verb, resource in [key]
        if after[key] > before[key]
    }


def test_each_secret_is_read_once_per_reconcile_and_owned_objects_at_most_once(
    cluster: Cluster, apps: Apps, operator: OperatorProcess, control_plane: ControlPlane
) -> None:
    hubspot, salesforce = apps.hubspot_secret(), apps.salesforce_secret()
    assert not set(hubspot) & set(salesforce)
    # One Secret referenced three times: source auth, destination auth, state store.
    cluster.create_secret("shared", {**hubspot, **salesforce, "dsn": "postgresql://db/state"})
    body = connection(
        "crm",
        apps.source("shared"),
        apps.destination("shared"),
        suspend=True,
        state={"type": "PostgreSQL", "secretRef": {"name": "shared"}},
    )
    before = _settled(control_plane)
    cluster.create(body)
    cluster.wait_condition("crm", "Ready", "True")
    cluster.wait_condition("crm", "CredentialsValid", "True")
    created = _delta(_settled(control_plane), before)
    # A new connection: one reconcile, one read of the Secret, its objects created
    # without being read first.
    assert created.get("GET secrets") == 1, created
    for kind in ("serviceaccounts", "configmaps", "cronjobs"):
        assert created.get(f"POST {kind}") == 1, created
        assert f"GET {kind}" not in created, created
    assert "PUT cronjobs" not in created, created
    assert created.get("POST events") == 1, created  # one `Created` Event lists them all
    (event,) = [e for e in cluster.events("crm") if e.reason == "Created"]
    for made in ("ServiceAccount crm-sync", "ConfigMap crm-connection", "CronJob crm-sync"):
        assert made in event.message, event.message

    # A spec change: one reconcile that reads each owned object once and the Secret once.
    before = _settled(control_plane)
    generation = cluster.patch("crm", {"spec": {"schedule": "7 * * * *"}})["metadata"]["generation"]
    wait_for(
        lambda: cluster.get("crm")["status"].get("observedGeneration") == generation,
        30,
        "the spec change to be reconciled",
    )
    changed = _delta(_settled(control_plane), before)
    assert changed.get("GET secrets") == 1, changed
    for kind in ("serviceaccounts", "configmaps", "cronjobs"):
        assert changed.get(f"GET {kind}") == 1, changed
    assert changed.get("PUT cronjobs") == 1 and changed.get("PUT configmaps") == 1, changed
    assert "PUT serviceaccounts" not in changed, changed  # its hash did not change
    assert changed.get("POST events") == 1, changed  # one `Updated` Event
    assert cluster.cron_job("crm-sync").spec.schedule == "7 * * * *"

    # A change of the Secret's metadata only: its data was read already, nothing happens.
    before = _settled(control_plane)
    cluster.core.patch_namespaced_secret(
        "shared", cluster.namespace, {"metadata": {"labels": {"team": "sales"}}}
    )
    time.sleep(2)
    untouched = _delta(_settled(control_plane), before)
    assert untouched == {"PATCH secrets": 1}, untouched  # the test's own patch


def test_a_secret_value_that_is_not_text_is_named_without_its_value(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    # Kubernetes stores bytes; these are not UTF-8 text, so `datasync sync` could not use
    # them either. The operator says which key of which Secret, as `datasync sync` would.
    garbage = b"\xff\xfe pat-na1-\x80\x81"
    manifest = secret("hubspot-auth", {})
    manifest["data"] = {"accessToken": base64.b64encode(garbage).decode()}
    cluster.core.create_namespaced_secret(cluster.namespace, manifest)
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination()))

    ready = cluster.wait_condition("crm", "Ready", "False", "SecretKeyInvalid")
    message = ready["message"]
    assert "hubspot-auth" in message and "accessToken" in message, message
    assert "spec.source.auth.secretRef" in message, message
    assert "pat-na1" not in str(cluster.get("crm"))
    invalid = cluster.wait_condition("crm", "CredentialsValid", "False", "SecretKeyInvalid")
    assert "accessToken" in invalid["message"]
    assert apps.hubspot.requests_served == 0  # nothing to log in with: no app is called
    assert not cluster.batch.list_namespaced_cron_job(cluster.namespace).items

    cluster.replace_secret("hubspot-auth", apps.hubspot_secret())
    cluster.wait_condition("crm", "Ready", "True")
    cluster.wait_condition("crm", "CredentialsValid", "True")
    assert "pat-na1" not in operator.log_text()


def test_an_empty_required_value_is_missing_as_for_datasync_sync(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    cluster.create_secret("hubspot-auth", {"accessToken": ""})
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination()))
    missing = cluster.wait_condition("crm", "Ready", "False", "SecretKeyMissing")
    assert "'accessToken'" in missing["message"] and "hubspot-auth" in missing["message"]
    assert apps.hubspot.requests_served == 0
