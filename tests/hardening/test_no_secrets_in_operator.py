"""The operator and its sync Jobs with sentinel credentials in the Secrets and sentinel
personal data in the apps: no secret in the operator's DEBUG log, the resource's status,
the namespace's Events, /metrics or the sync pod's log; no email or field value in the
status, Events, metrics or INFO logs. A failing login is reported without the value. And
Secrets are only read from the resource's own namespace."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox
from kubernetes import client

from tests.cluster.podrunner import PodRunner
from tests.hardening.sentinels import Sentinels, leaks
from tests.operator.conftest import Apps, serving
from tests.operator.support import Cluster, connection, secret, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pod_runner")]


@pytest.fixture
def marks() -> Sentinels:
    return Sentinels()


@pytest.fixture
def sentinel_apps(marks: Sentinels) -> Iterator[Apps]:
    hubspot = HubSpotSandbox(
        private_app_token=marks.secret(),
        client_secret=marks.secret(),
        refresh_token=marks.secret(),
    )
    salesforce = SalesforceSandbox(client_secret=marks.secret(), refresh_token=marks.secret())
    with serving(hubspot, salesforce) as served:
        yield served


def _everything(cluster: Cluster, name: str, operator: Any, runner: PodRunner) -> dict[str, str]:
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    pod_logs = sorted((runner.log_root / cluster.namespace).glob("*.log"))
    return {
        "status": json.dumps(cluster.get(name).get("status") or {}),
        "events": "\n".join(f"{e.reason} {e.message}" for e in events),
        "metrics": operator.metrics(),
        "pod logs": "\n".join(path.read_text(errors="replace") for path in pod_logs),
        "operator log": operator.log_text(),
    }


def test_no_secret_or_personal_data_leaves_through_the_operator(
    cluster: Cluster,
    sentinel_apps: Apps,
    marks: Sentinels,
    operator_factory: Any,
    pod_runner: PodRunner,
    tally: Counter[str],
) -> None:
    apps = sentinel_apps
    apps.hubspot.load(
        {"email": marks.email(), "lastname": marks.value(), "jobtitle": marks.value()}
        for _ in range(8)
    )
    apps.hubspot.load([{"email": "broken-" + marks.value(), "lastname": marks.value()}])
    operator = operator_factory(extra_args=["--log-level", "debug"])
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(
        connection("crm", apps.source(), apps.destination(), direction="OneWay", suspend=True)
    )
    cluster.wait_condition("crm", "Ready", "True")
    cluster.wait_condition("crm", "CredentialsValid", "True")
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "run-1"}}})
    last = wait_for(
        lambda: (cluster.get("crm").get("status") or {}).get("lastSync"), 120, "the sync run"
    )
    assert last["result"] == "PartiallySucceeded", last  # the broken email is reported
    assert len(apps.salesforce.records()) == 8

    # A failing login: the wrong value is reported by name, never shown.
    wrong = marks.secret()
    cluster.replace_secret("salesforce-auth", {**apps.salesforce_secret(), "clientSecret": wrong})
    failed = cluster.wait_condition("crm", "CredentialsValid", "False", timeout=90)
    assert "clientSecret" in failed["message"] or "client" in failed["message"].lower()

    outputs = _everything(cluster, "crm", operator, pod_runner)
    assert "debug" in outputs["operator log"].lower(), "the operator did not log at DEBUG"
    assert outputs["pod logs"].strip(), "the sync pod's log is empty"
    # The search works: the Secrets themselves do hold the sentinels.
    stored = cluster.core.read_namespaced_secret("hubspot-auth", cluster.namespace)
    decoded = " ".join(base64.b64decode(value).decode() for value in stored.data.values())
    assert leaks([("secret", decoded)], marks.secrets) != []
    assert leaks(outputs.items(), marks.secrets) == []
    public = {k: v for k, v in outputs.items() if k != "operator log"}
    assert leaks(public.items(), marks.personal) == []
    tally["operator_outputs_searched"] += len(outputs)
    tally["secret_sentinels"] += len(marks.secrets)


def test_secrets_are_read_only_from_the_connections_namespace(
    cluster: Cluster, apps: Apps, operator_factory: Any, kube_api: client.ApiClient
) -> None:
    """The Secret exists only in another namespace: the connection does not get it, and a
    `namespace` added to its secretRef is not honoured either."""
    core = client.CoreV1Api(kube_api)
    other = cluster.namespace[:50] + "-other"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        for name, data in (
            ("hubspot-auth", apps.hubspot_secret()),
            ("salesforce-auth", apps.salesforce_secret()),
        ):
            core.create_namespaced_secret(other, secret(name, data))
        operator_factory()
        source = apps.source()
        source["auth"]["secretRef"]["namespace"] = other  # type: ignore[index]
        cluster.create(connection("crm", source, apps.destination()))
        stored = cluster.get("crm")
        assert "namespace" not in stored["spec"]["source"]["auth"]["secretRef"]
        ready = cluster.wait_condition("crm", "Ready", "False", "SecretNotFound")
        assert cluster.namespace in ready["message"] or "hubspot-auth" in ready["message"]
        requests = apps.hubspot.requests_served
        assert requests == 0, "credentials from another namespace reached the app"
    finally:
        core.delete_namespace(other)
