"""Least privilege: the sync pods get no API access, and the operator needs no more than
the Helm chart's RBAC grants it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.operator.conftest import Apps
from tests.operator.support import REPO_ROOT, Cluster, OperatorProcess, connection, wait_for

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "datasync"


def _allowed(
    api: client.ApiClient,
    user: str,
    namespace: str,
    verb: str,
    resource: str,
    group: str = "",
    name: str | None = None,
) -> bool:
    attributes: dict[str, Any] = {
        "namespace": namespace,
        "verb": verb,
        "resource": resource,
        "group": group,
    }
    if name:
        attributes["name"] = name
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attributes,
            },
        }
    )
    return bool(review.status.allowed)


def _allowed_admin(api: client.ApiClient, namespace: str) -> bool:
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "someone",
                "groups": ["system:masters"],
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": "get",
                    "resource": "secrets",
                },
            },
        }
    )
    return bool(review.status.allowed)


def test_sync_pod_identity_reaches_no_secret_and_no_connection(
    cluster: Cluster, apps: Apps, operator: OperatorProcess, kube_api: client.ApiClient
) -> None:
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination()))
    cluster.wait_condition("crm", "Ready", "True")
    user = f"system:serviceaccount:{cluster.namespace}:crm-sync"
    ns = cluster.namespace
    for verb in ("get", "list", "watch"):
        assert not _allowed(kube_api, user, ns, verb, "secrets")
        assert not _allowed(kube_api, user, ns, verb, "datasyncconnections", "datasync.io")
    assert not _allowed(kube_api, user, ns, "get", "secrets", name="hubspot-auth")
    assert not _allowed(kube_api, user, ns, "get", "datasyncconnections", "datasync.io", "crm")
    assert not _allowed(kube_api, user, ns, "create", "pods")
    assert not _allowed(kube_api, user, ns, "create", "serviceaccounts/token")
    # The review can say yes (it is not vacuous): a user in system:masters may.
    assert _allowed_admin(kube_api, ns)
    bindings = client.RbacAuthorizationV1Api(kube_api).list_namespaced_role_binding(ns).items
    assert not [b for b in bindings if any(s.name == "crm-sync" for s in b.subjects or [])]
    pod = cluster.cron_job("crm-sync").spec.job_template.spec.template.spec
    assert pod.automount_service_account_token is False
    assert not [
        v
        for v in pod.volumes
        if v.projected and any(s.service_account_token for s in v.projected.sources)
    ]
    account = cluster.core.read_namespaced_service_account("crm-sync", ns)
    assert account.automount_service_account_token is False


def _helm(helm: Path, *args: str) -> str:
    result = subprocess.run(
        [str(helm), "template", "datasync", str(CHART), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rules(documents: list[dict[str, Any]], kind: str) -> list[Any]:
    return [doc["rules"] for doc in documents if doc and doc["kind"] == kind]


def test_chart_rbac_is_cluster_wide_or_per_namespace(control_plane: Any) -> None:
    helm = control_plane.binary("helm")
    wide = list(yaml.safe_load_all(_helm(helm, "--show-only", "templates/rbac.yaml")))
    scoped = list(
        yaml.safe_load_all(
            _helm(helm, "--show-only", "templates/rbac.yaml", "--set", "watchNamespaces={a,b}")
        )
    )
    assert [d["kind"] for d in wide if d] == ["ClusterRole", "ClusterRoleBinding"]
    assert sorted(d["kind"] for d in scoped if d) == ["Role", "Role", "RoleBinding", "RoleBinding"]
    assert {d["metadata"]["namespace"] for d in scoped if d} == {"a", "b"}
    (cluster_rules,) = _rules(wide, "ClusterRole")
    assert all(rules == cluster_rules for rules in _rules(scoped, "Role"))
    verbs = {
        (rule["apiGroups"][0], resource): set(rule["verbs"])
        for rule in cluster_rules
        for resource in rule["resources"]
    }
    assert verbs[("", "secrets")] == {"get", "list", "watch"}
    assert not any("delete" in v or "*" in v for v in verbs.values())
    assert not any("*" in rule["resources"] for rule in cluster_rules)
    result = subprocess.run(
        [
            str(helm),
            "template",
            "datasync",
            str(CHART),
            "--show-only",
            "templates/rbac.yaml",
            "--set",
            "rbac.create=false",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Role" not in result.stdout


@pytest.mark.usefixtures("pod_runner")
@pytest.mark.parametrize("cluster_wide", [False, True], ids=["namespaced", "cluster-wide"])
def test_operator_works_with_exactly_the_chart_rbac(
    cluster: Cluster, apps: Apps, control_plane: Any, operator_factory: Any, cluster_wide: bool
) -> None:
    ns = cluster.namespace
    helm = control_plane.binary("helm")
    release = f"ds-{ns[-6:]}"  # cluster-scoped names must not clash between tests
    scope = [] if cluster_wide else ["--set", f"watchNamespaces={{{ns}}}"]
    rendered = subprocess.run(
        [
            str(helm),
            "template",
            release,
            str(CHART),
            "--namespace",
            ns,
            *scope,
            "--show-only",
            "templates/rbac.yaml",
            "--show-only",
            "templates/serviceaccount.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    expected = (
        {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
        if cluster_wide
        else {"ServiceAccount", "Role", "RoleBinding"}
    )
    assert {d["kind"] for d in documents} == expected
    control_plane.kubectl("apply", "-f", "-", input=rendered)
    try:
        _run_through(cluster, apps, control_plane, operator_factory, documents, cluster_wide)
    finally:
        if cluster_wide:
            control_plane.kubectl(
                "delete", "-f", "-", "--ignore-not-found", input=rendered, check=False
            )


def _run_through(
    cluster: Cluster,
    apps: Apps,
    control_plane: Any,
    operator_factory: Any,
    documents: list[dict[str, Any]],
    cluster_wide: bool,
) -> None:
    ns = cluster.namespace
    account = next(d for d in documents if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = cluster.core.create_namespaced_service_account_token(
        account, ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    kubeconfig = control_plane.kubeconfig_for_token(token)
    operator = operator_factory(kubeconfig=kubeconfig, cluster_wide=cluster_wide)

    cluster.create_secret("salesforce-auth", apps.salesforce_secret())
    cluster.create(connection("crm", apps.source(), apps.destination(), suspend=True))
    cluster.wait_condition("crm", "Ready", "False", "SecretNotFound")
    cluster.create_secret("hubspot-auth", apps.hubspot_secret())
    cluster.wait_condition("crm", "Ready", "True")
    cluster.wait_condition("crm", "CredentialsValid", "True")
    cluster.patch("crm", {"spec": {"schedule": "0 3 * * *"}})
    wait_for(
        lambda: cluster.cron_job("crm-sync").spec.schedule == "0 3 * * *", 30, "the CronJob update"
    )
    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "rbac"}}})
    wait_for(lambda: cluster.get("crm")["status"].get("syncNowHandled") == "rbac", 30, "sync-now")
    assert len(cluster.jobs()) == 1
    # Whatever the run's outcome, the operator can read its pods and record it.
    wait_for(
        lambda: (cluster.get("crm")["status"].get("lastSync") or {}).get("job"),
        90,
        "the run to be recorded",
    )
    wait_for(
        lambda: {"Created", "Updated"} <= {e.reason for e in cluster.events("crm")},
        30,
        "Created and Updated events",
    )
    log = operator.log_text()
    assert "403 Forbidden" not in log and "forbidden" not in log, log
