"""The operator against the real control plane: objects, status, updates, resync, deletion."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.operator.conftest import Apps
from tests.operator.support import Cluster, OperatorProcess, connection, wait_for

pytestmark = pytest.mark.integration


def _create_ready(cluster: Cluster, apps: Apps, name: str = "crm", **spec: object) -> dict:
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection(name, apps.source(), apps.destination(), **spec))
    cluster.wait_condition(name, "Ready", "True")
    return cluster.get(name)


def test_create_yields_hardened_cronjob_identity_and_ready(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    body = _create_ready(
        cluster,
        apps,
        schedule="*/15 * * * *",
        job={"backoffLimit": 2, "activeDeadlineSeconds": 900},
    )
    uid = body["metadata"]["uid"]
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["cronJob"] == "crm-sync"
    credentials = cluster.wait_condition("crm", "CredentialsValid", "True")
    assert credentials["reason"] == "CredentialsAccepted"

    cron = cluster.cron_job("crm-sync")
    assert [ref.uid for ref in cron.metadata.owner_references] == [uid]
    assert cron.metadata.labels["app.kubernetes.io/managed-by"] == "datasync"
    assert cron.metadata.labels["datasync.io/connection"] == "crm"
    assert cron.spec.schedule == "*/15 * * * *"
    assert cron.spec.suspend is False
    assert cron.spec.concurrency_policy == "Forbid"
    assert cron.spec.starting_deadline_seconds > 0
    assert cron.spec.successful_jobs_history_limit >= 1
    assert cron.spec.failed_jobs_history_limit >= 1
    job = cron.spec.job_template.spec
    assert job.backoff_limit == 2
    assert job.active_deadline_seconds == 900
    assert job.ttl_seconds_after_finished > 0
    for labels in (cron.spec.job_template.metadata.labels, job.template.metadata.labels):
        assert labels["app.kubernetes.io/name"] == "datasync-sync"
        assert labels["app.kubernetes.io/instance"] == "crm"
        assert labels["datasync.io/connection"] == "crm"
    pod = job.template.spec
    assert pod.service_account_name == "crm-sync"
    assert pod.automount_service_account_token is False
    assert pod.restart_policy == "Never"
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    (container,) = pod.containers
    assert container.image == "datasync:test"
    assert container.command == ["datasync"]
    assert container.args[0] == "sync"
    assert "--connection-file" in container.args
    assert container.termination_message_path == "/dev/termination-log"
    assert container.termination_message_policy == "File"
    hardening = container.security_context
    assert hardening.read_only_root_filesystem is True
    assert hardening.allow_privilege_escalation is False
    assert hardening.run_as_non_root is True
    assert hardening.capabilities.drop == ["ALL"]
    assert container.resources.requests  # chart defaults when the spec sets none
    env = {item.name: item for item in container.env}
    assert env["JOB_NAME"].value_from.field_ref.field_path.endswith("job-name']")
    assert env["DATASYNC_ALLOW_SANDBOX_URLS"].value == "true"
    mounts = {m.mount_path: m for m in container.volume_mounts}
    assert mounts["/etc/datasync/secrets"].read_only is True
    assert mounts["/etc/datasync/connection"].read_only is True
    assert "/var/lib/datasync" in mounts
    volumes = {v.name: v for v in pod.volumes}
    secret_sources = {s.secret.name for s in volumes["secrets"].projected.sources}
    assert secret_sources == {"hubspot-auth", "salesforce-auth"}
    assert volumes["state"].persistent_volume_claim.claim_name == "crm-state"

    account = cluster.core.read_namespaced_service_account("crm-sync", cluster.namespace)
    assert account.automount_service_account_token is False
    assert [ref.uid for ref in account.metadata.owner_references] == [uid]
    claim = cluster.core.read_namespaced_persistent_volume_claim("crm-state", cluster.namespace)
    assert [ref.uid for ref in claim.metadata.owner_references] == [uid]
    assert cluster.wait_condition("crm", "Synced", "Unknown")["reason"] == "NoRunYet"

    reasons = wait_for(
        lambda: (
            {e.reason for e in cluster.events("crm")} >= {"Created"}
            and {e.reason for e in cluster.events("crm")}
        ),
        30,
        "Created events",
    )
    assert "Created" in reasons
    metrics = operator.metrics()
    assert f'datasync_connection_ready{{name="crm",namespace="{cluster.namespace}"}} 1.0' in metrics


def test_missing_secret_then_created_turns_ready_without_restart(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination()))
    ready = cluster.wait_condition("crm", "Ready", "False", "SecretNotFound")
    assert "hubspot-auth" in ready["message"]
    assert apps.hubspot_secret()["accessToken"] not in str(cluster.get("crm"))
    failed = cluster.wait_condition("crm", "CredentialsValid", "False", "SecretNotFound")
    assert "hubspot-auth" in failed["message"]

    cluster.create_secret("hubspot-auth", {"wrongKey": "x"})
    missing = cluster.wait_condition("crm", "Ready", "False", "SecretKeyMissing")
    assert "accessToken" in missing["message"] and "hubspot-auth" in missing["message"]

    cluster.replace_secret("hubspot-auth", apps.hubspot_secret())
    cluster.wait_condition("crm", "Ready", "True")
    cluster.wait_condition("crm", "CredentialsValid", "True")
    assert cluster.cron_job("crm-sync").spec.schedule == "*/30 * * * *"
    assert operator.process is not None and operator.process.poll() is None


def test_rejected_credentials_and_rotation(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    cluster.create_secret("hubspot-auth", {"accessToken": "pat-na1-not-the-right-one"})
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination()))
    rejected = cluster.wait_condition("crm", "CredentialsValid", "False", "AuthenticationFailed")
    assert "hubspot-auth" in rejected["message"]
    assert "pat-na1-not-the-right-one" not in str(cluster.get("crm"))
    cluster.wait_condition("crm", "Ready", "True")  # found, just not accepted
    wait_for(
        lambda: any(e.reason == "CredentialsRejected" for e in cluster.events("crm")),
        30,
        "a CredentialsRejected event",
    )
    checks_before = apps.salesforce.requests_served

    cluster.replace_secret("hubspot-auth", apps.hubspot_secret())
    cluster.wait_condition("crm", "CredentialsValid", "True")
    assert apps.salesforce.requests_served > checks_before

    # An unrelated Secret changing re-checks nothing.
    served = (apps.hubspot.requests_served, apps.salesforce.requests_served)
    cluster.create_secret("unrelated", {"a": "b"})
    cluster.replace_secret("unrelated", {"a": "c"})
    time.sleep(2)
    assert (apps.hubspot.requests_served, apps.salesforce.requests_served) == served


def test_spec_change_updates_cronjob_and_resync_writes_nothing(
    cluster: Cluster, apps: Apps, operator_factory: Any
) -> None:
    first = operator_factory()
    _create_ready(cluster, apps)
    series = f'name="crm",namespace="{cluster.namespace}"'
    interval = "datasync_schedule_interval_seconds{" + series + "} 1800.0"
    assert interval in first.metrics(), "*/30 schedule: the stale alert's interval"
    cluster.patch("crm", {"spec": {"schedule": "5 * * * *", "suspend": True}})
    wait_for(
        lambda: cluster.cron_job("crm-sync").spec.schedule == "5 * * * *",
        30,
        "the CronJob schedule to change",
    )
    assert cluster.cron_job("crm-sync").spec.suspend is True
    generation = cluster.get("crm")["metadata"]["generation"]
    wait_for(
        lambda: cluster.get("crm")["status"].get("observedGeneration") == generation,
        30,
        "observedGeneration to follow",
    )
    ready = cluster.wait_condition("crm", "Ready", "True")
    assert "suspended" in ready["message"]
    assert "datasync_schedule_interval_seconds{" not in first.metrics(), "no stale alert"
    before = _settled_versions(cluster)

    first.stop()
    second = operator_factory(log_name="operator-2.log")
    wait_for(
        lambda: "Resuming is processed" in second.log_text(),
        30,
        "the restarted operator to resume the connection",
    )
    time.sleep(3)
    assert cluster.owned_versions() == before
    assert len(cluster.batch.list_namespaced_cron_job(cluster.namespace).items) == 1
    assert len(cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace).items) == 1

    cluster.patch("crm", {"spec": {"suspend": False}})
    wait_for(lambda: cluster.cron_job("crm-sync").spec.suspend is False, 30, "unsuspend")


def test_sync_now_creates_exactly_one_job(
    cluster: Cluster, apps: Apps, operator_factory: Any
) -> None:
    operator_factory()
    _create_ready(cluster, apps, suspend=True)
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "first"}}})
    wait_for(
        lambda: cluster.get("crm")["status"].get("syncNowHandled") == "first", 30, "syncNowHandled"
    )
    jobs = cluster.jobs()
    assert len(jobs) == 1
    (job,) = jobs
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job.spec.template.spec.service_account_name == "crm-sync"
    # Reconciling again (another change, a restart) does not start it twice.
    cluster.patch("crm", {"metadata": {"labels": {"team": "sales"}}})
    time.sleep(2)
    assert len(cluster.jobs()) == 1
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "second"}}})
    wait_for(lambda: len(cluster.jobs()) == 2, 30, "a second Job for a new value")


def test_deleting_the_connection_garbage_collects_everything(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    _create_ready(cluster, apps)
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "x"}}})
    wait_for(lambda: cluster.jobs(), 30, "the sync-now Job")
    assert not (cluster.get("crm")["metadata"].get("finalizers"))
    cluster.delete("crm")

    def gone() -> bool:
        owned = cluster.owned_versions()
        leftovers = [
            key
            for key in owned
            if not key.startswith(("ConfigMap/kube-root-ca", "ServiceAccount/default"))
        ]
        return not leftovers

    wait_for(gone, 60, "garbage collection of the CronJob, Job, ServiceAccount, PVC, ConfigMap")


def test_crd_rejects_invalid_resource_before_the_operator(
    cluster: Cluster, apps: Apps, operator_factory: Any
) -> None:
    operator = operator_factory(extra_args=["--log-format", "json"])
    bad = connection("bad", apps.source(), apps.destination(), schedule="every minute")
    with pytest.raises(ApiException) as raised:
        cluster.create(bad)
    assert raised.value.status == 422
    assert "schedule" in str(raised.value.body)
    _create_ready(cluster, apps, name="good")
    assert not [
        j
        for j in cluster.batch.list_namespaced_cron_job(cluster.namespace).items
        if j.metadata.name.startswith("bad")
    ]
    lines = operator.log_text().splitlines()
    assert lines and all(json.loads(line)["message"] for line in lines)
    assert not [line for line in lines if '"bad"' in line or "/bad" in line]
    assert apps.hubspot_secret()["accessToken"] not in operator.log_text()


def test_periodic_check_notices_credentials_revoked_in_the_app(
    cluster: Cluster, apps: Apps, operator_factory: Any
) -> None:
    operator = operator_factory(extra_args=["--credentials-check-interval", "3"])
    _create_ready(cluster, apps)
    first = cluster.wait_condition("crm", "CredentialsValid", "True")
    # Revoked on the app's side: nothing changes in the cluster, only the periodic check
    # can notice.
    apps.hubspot.private_app_token = "pat-na1-revoked-and-replaced"
    rejected = cluster.wait_condition(
        "crm", "CredentialsValid", "False", "AuthenticationFailed", timeout=60
    )
    assert rejected["lastTransitionTime"] >= first["lastTransitionTime"]
    assert "hubspot-auth" in rejected["message"]
    assert "pat-na1-revoked-and-replaced" not in str(cluster.get("crm"))
    assert operator.stop() == 0  # SIGTERM: a clean shutdown


def test_spec_the_crd_accepts_but_the_models_reject_is_not_ready(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    # The CRD knows the auth types, but only the connector knows which it supports.
    destination = dict(apps.destination(), app="postgres")
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), destination))
    ready = cluster.wait_condition("crm", "Ready", "False", "UnsupportedAuthType")
    assert "spec.destination.auth.type" in ready["message"]
    assert "AppParameters" in ready["message"]
    assert not cluster.batch.list_namespaced_cron_job(cluster.namespace).items
    wait_for(
        lambda: any(
            e.reason == "UnsupportedAuthType" and e.type == "Warning" for e in cluster.events("crm")
        ),
        30,
        "a warning Event",
    )
    # The CRD's pattern accepts five cron fields; only croniter knows minute 99 is wrong.
    cluster.patch("crm", {"spec": {"destination": {"app": "salesforce"}, "schedule": "99 * * * *"}})
    invalid = cluster.wait_condition("crm", "Ready", "False", "InvalidSpec")
    assert "spec.schedule" in invalid["message"]
    cluster.patch("crm", {"spec": {"schedule": "*/5 * * * *"}})
    cluster.wait_condition("crm", "Ready", "True")
    config = cluster.core.read_namespaced_config_map("crm-connection", cluster.namespace)
    assert "app: salesforce" in config.data["connection.yaml"]


def test_sigterm_lets_the_in_flight_reconcile_finish(
    cluster: Cluster, apps: Apps, operator_factory: Any
) -> None:
    from datasync.sandbox import Fault

    operator = operator_factory()
    _create_ready(cluster, apps)
    before = cluster.wait_condition("crm", "CredentialsValid", "True")
    checked = cluster.get("crm")["status"]["credentialsCheckedAt"]
    cron_version = cluster.cron_job("crm-sync").metadata.resource_version
    slow = Fault(kind="slow", delay=4, count=100)
    apps.hubspot.inject(slow)
    time.sleep(1)  # credentialsCheckedAt has a one-second resolution
    unanswered = slow.count  # each request HubSpot takes from now on is held for 4 s
    # A new key: a credentials check (slow now) and a CronJob update follow.
    cluster.replace_secret("hubspot-auth", {**apps.hubspot_secret(), "note": "rotated"})
    wait_for(
        lambda: slow.count < unanswered and "re-checking" in operator.log_text(),
        10,
        "the re-check's call to be held by HubSpot",
    )
    assert operator.stop() == 0  # SIGTERM while that call is in flight
    status = cluster.get("crm")["status"]
    assert status["credentialsCheckedAt"] > checked
    assert cluster.condition("crm", "CredentialsValid")["status"] == before["status"]
    cron = cluster.cron_job("crm-sync")
    assert cron.metadata.resource_version != cron_version
    items = [
        i.path
        for s in cron.spec.job_template.spec.template.spec.volumes[1].projected.sources
        for i in s.secret.items
    ]
    assert "source/note" in items


def test_a_claim_the_api_will_not_resize_is_reported_not_retried_forever(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    _create_ready(cluster, apps)
    # The claim is unbound here (no provisioner), and an unbound claim's spec is immutable.
    cluster.patch("crm", {"spec": {"state": {"size": "2Gi"}, "schedule": "7 * * * *"}})
    wait_for(
        lambda: [e for e in cluster.events("crm") if e.reason == "StateClaimUnchanged"],
        30,
        "a StateClaimUnchanged warning",
    )
    wait_for(
        lambda: cluster.cron_job("crm-sync").spec.schedule == "7 * * * *",
        30,
        "the CronJob to be updated all the same",
    )
    claim = cluster.core.read_namespaced_persistent_volume_claim("crm-state", cluster.namespace)
    assert claim.spec.resources.requests["storage"] == "1Gi"
    cluster.wait_condition("crm", "Ready", "True")
    assert "Traceback" not in operator.log_text()


def test_an_object_in_the_way_is_never_taken_over(
    cluster: Cluster, apps: Apps, operator: OperatorProcess
) -> None:
    cluster.core.create_namespaced_config_map(
        cluster.namespace, {"metadata": {"name": "crm-connection"}, "data": {"mine": "yes"}}
    )
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination()))
    conflict = cluster.wait_condition("crm", "Ready", "False", "ObjectConflict")
    assert "crm-connection" in conflict["message"]
    config = cluster.core.read_namespaced_config_map("crm-connection", cluster.namespace)
    assert config.data == {"mine": "yes"} and not config.metadata.owner_references
    cluster.core.delete_namespaced_config_map("crm-connection", cluster.namespace)
    cluster.patch("crm", {"spec": {"schedule": "2 * * * *"}})  # any change reconciles again
    cluster.wait_condition("crm", "Ready", "True")


def _settled_versions(cluster: Cluster) -> Any:
    """The owned objects' resourceVersions once two reads a second apart agree."""
    previous = cluster.owned_versions()

    def steady() -> bool:
        nonlocal previous
        time.sleep(1)
        current = cluster.owned_versions()
        settled, previous = current == previous, current
        return settled

    wait_for(steady, 30, "the operator's last writes to land")
    return previous
