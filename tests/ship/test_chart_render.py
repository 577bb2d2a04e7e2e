"""`helm lint` and `helm template` of charts/datasync with default and non-default values."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.commands.operator import command as operator_command
from tests.ship.tools import (
    CHART,
    FULL_VALUES,
    SCHEDULE_INTERVAL_METRIC,
    by_kind,
    helm,
    one,
    operator_metrics,
    render,
)

DEFAULT_KINDS = {"ServiceAccount", "CustomResourceDefinition", "Service", "Deployment"}
OPTIONAL_KINDS = {"ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"}
Docs = list[dict[str, Any]]
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
ALERTS = {
    "DatasyncSyncFailing",
    "DatasyncSyncStale",
    "DatasyncCredentialsInvalid",
    "DatasyncStateStoreFull",
    "DatasyncOperatorDown",
}


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def full_docs() -> list[dict[str, Any]]:
    return render(namespace="ops", values_files=[FULL_VALUES])


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(docs, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    return list(operator_container(docs)["args"])


@pytest.mark.parametrize("values", [[], [FULL_VALUES]], ids=["default", "full"])
def test_helm_lint_strict_passes(values: list[Any]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in values:
        args += ["--values", str(path)]
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout


def test_default_render_has_the_core_objects_and_no_optional_ones(default_docs: Docs) -> None:
    kinds = {doc["kind"] for doc in default_docs}
    assert kinds >= DEFAULT_KINDS
    assert not kinds & OPTIONAL_KINDS
    for doc in default_docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "datasync-system", doc["metadata"]["name"]


def test_operator_runs_as_decided_one_replica_recreate(default_docs: Docs) -> None:
    deployment = one(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    spread = pod["topologySpreadConstraints"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_operator_pod_is_hardened(default_docs: Docs) -> None:
    pod = one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(default_docs)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 65532
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # Scratch space for a read-only root filesystem.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["limits"] and container["resources"]["requests"]


def test_operator_probes_and_ports_follow_the_cli_contract(default_docs: Docs) -> None:
    container = operator_container(default_docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    # The image's ENTRYPOINT, spelled out (runtimes without image metadata rely on it).
    assert container["command"] == ["datasync"]
    args = args_of(default_docs)
    assert args[0] == "operator"
    assert "--metrics-port=8080" in args and "--health-port=8081" in args
    assert "--sync-image=ghcr.io/datasync/datasync:0.1.0" in args
    assert "--credentials-check-interval=3600" in args
    assert "--log-format=json" in args
    assert not [a for a in args if a.startswith("--namespace")]  # all namespaces
    assert "--allow-sandbox-urls" not in args
    assert not [a for a in args if a.startswith("--allowed-hosts")]
    assert container["image"] == "ghcr.io/datasync/datasync:0.1.0"  # appVersion


@pytest.mark.parametrize("which", ["default", "full"])
def test_the_real_operator_command_accepts_the_rendered_arguments(
    which: str, default_docs: Docs, full_docs: Docs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parse (not run) the arguments and environment with `datasync operator` itself, so a
    # renamed or removed flag fails here rather than in a crash-looping pod.
    docs = default_docs if which == "default" else full_docs
    container = operator_container(docs)
    for inherited in ("DATASYNC_ALLOWED_HOSTS", "DATASYNC_ALLOW_SANDBOX_URLS"):
        monkeypatch.delenv(inherited, raising=False)
    for variable in container["env"]:
        if "value" in variable:
            monkeypatch.setenv(variable["name"], variable["value"])
    args = container["args"]
    assert args[0] == "operator"
    context = operator_command.make_context("operator", list(args[1:]))
    params = context.params
    values = yaml.safe_load(FULL_VALUES.read_text()) if which == "full" else {}
    assert params["metrics_port"] == 8080 and params["health_port"] == 8081
    assert json.loads(params["sync_resources"]) == (
        values.get("syncJob", {}).get("resources")
        or {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        }
    )
    assert params["log_format"] == values.get("operator", {}).get("logFormat", "json")
    assert list(params["namespaces"]) == values.get("watchNamespaces", [])
    assert params["allow_sandbox_urls"] is (which == "full")
    assert params["sync_image_pull_policy"] == ("Never" if which == "full" else "IfNotPresent")


def test_sync_job_defaults_reach_the_operator(default_docs: Docs) -> None:
    env = {e["name"]: e for e in operator_container(default_docs)["env"]}
    resources = json.loads(env["DATASYNC_SYNC_JOB_RESOURCES"]["value"])
    assert resources == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_metrics_service_selects_the_operator_pod(default_docs: Docs) -> None:
    service = one(default_docs, "Service")
    pod_labels = one(default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_service_account_is_the_one_the_pod_uses(default_docs: Docs) -> None:
    account = one(default_docs, "ServiceAccount")
    pod = one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"] == "ds-datasync"


def test_default_rbac_is_cluster_wide_and_bound_to_the_service_account(default_docs: Docs) -> None:
    roles = by_kind(default_docs, "ClusterRole")
    bindings = by_kind(default_docs, "ClusterRoleBinding")
    assert roles and bindings, "rbac.yaml must render a ClusterRole and binding by default"
    assert not by_kind(default_docs, "Role")
    for binding in bindings:
        assert {
            "kind": "ServiceAccount",
            "name": "ds-datasync",
            "namespace": "datasync-system",
        } in binding["subjects"]
    watched = [
        rule
        for role in roles
        for rule in role.get("rules", [])
        if "datasync.io" in rule.get("apiGroups", [])
    ]
    assert any("watch" in rule["verbs"] for rule in watched)


def test_full_values_render_every_optional_part(full_docs: Docs) -> None:
    kinds = {doc["kind"] for doc in full_docs}
    assert kinds >= DEFAULT_KINDS | OPTIONAL_KINDS
    container = operator_container(full_docs)
    args = container["args"]
    assert container["image"] == "registry.example.com/datasync:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    assert "--sync-image=registry.example.com/datasync-sync:0.1.0-rc1" in args
    assert "--allowed-hosts=crm.internal.example.com,*.my.salesforce.com" in args
    assert "--allow-sandbox-urls" in args and "--log-format=text" in args
    assert "--sync-image-pull-policy=Always" in args
    assert args[-1] == "--sync-image-pull-policy=Never"  # extraArgs come last and win
    pod = one(full_docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "datasync-operator"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"][0]["key"] == "dedicated"
    account = one(full_docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    crd = one(full_docs, "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_watched_namespaces_get_roles_instead_of_cluster_wide_access(full_docs: Docs) -> None:
    for namespace in ("team-a", "team-b"):
        roles = [r for r in by_kind(full_docs, "Role") if r["metadata"]["namespace"] == namespace]
        bindings = [
            b for b in by_kind(full_docs, "RoleBinding") if b["metadata"]["namespace"] == namespace
        ]
        assert roles and bindings, f"no Role/RoleBinding in watched namespace {namespace}"
        for binding in bindings:
            assert {
                "kind": "ServiceAccount",
                "name": "datasync-operator",
                "namespace": "ops",
            } in binding["subjects"]
    cluster_rules = [
        rule for role in by_kind(full_docs, "ClusterRole") for rule in role.get("rules", [])
    ]
    # Cluster-wide access to connections or Secrets would defeat the namespace list.
    for rule in cluster_rules:
        resources = set(rule.get("resources", []))
        assert not resources & {"datasyncconnections", "datasyncconnections/status", "secrets"}


def test_service_monitor_scrapes_the_metrics_service_keeping_connection_labels(
    full_docs: Docs,
) -> None:
    monitor = one(full_docs, "ServiceMonitor")
    service = one(full_docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True


def known_metrics() -> frozenset[str]:
    return operator_metrics() | {SCHEDULE_INTERVAL_METRIC}


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\bdatasync_[a-z_]+\b", expression))


def test_prometheus_rule_has_the_five_alerts_on_contract_metrics(full_docs: Docs) -> None:
    rule = one(full_docs, "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == ALERTS
    for alert in alerts.values():
        assert metric_names(alert["expr"]) <= known_metrics(), alert["alert"]
        assert alert["labels"]["team"] == "crm" and alert["labels"]["severity"]
        assert alert["annotations"]["summary"]
        assert alert["expr"].count("(") == alert["expr"].count(")")
    stale = alerts["DatasyncSyncStale"]["expr"]
    assert "> 5 * datasync_schedule_interval_seconds" in stale
    assert "time() - datasync_sync_last_success_timestamp_seconds" in stale
    assert 'result="Failed"' in alerts["DatasyncSyncFailing"]["expr"]
    assert 'reason="StateStoreFull"' in alerts["DatasyncStateStoreFull"]["expr"]
    assert (
        alerts["DatasyncCredentialsInvalid"]["expr"].strip()
        == "datasync_connection_credentials_valid == 0"
    )
    assert 'job="ds-datasync-metrics", namespace="ops"' in alerts["DatasyncOperatorDown"]["expr"]
    # Prometheus templates survive helm templating.
    assert "{{ $labels.namespace }}" in alerts["DatasyncSyncFailing"]["annotations"]["summary"]


def test_grafana_dashboard_is_valid_json_on_contract_metrics(full_docs: Docs) -> None:
    (config_map,) = [
        d for d in by_kind(full_docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["datasync.json"])
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in expressions))
    assert used <= known_metrics()
    assert {
        "datasync_sync_runs_total",
        "datasync_connection_ready",
        "datasync_connection_credentials_valid",
        "datasync_sync_last_success_timestamp_seconds",
    } <= used
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_network_policy_limits_ingress_to_metrics_and_egress_to_dns_api_and_apps(
    full_docs: Docs,
) -> None:
    policy = one(full_docs, "NetworkPolicy")["spec"]
    pod_labels = one(full_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in ingress["from"]
    egress_ports = [
        {(p["port"], p["protocol"]) for p in rule["ports"]} for rule in policy["egress"]
    ]
    assert {(53, "UDP"), (53, "TCP")} in egress_ports
    assert {(443, "TCP"), (6443, "TCP")} in egress_ports
    assert {(443, "TCP"), (5432, "TCP")} in egress_ports
    api_rule = policy["egress"][egress_ports.index({(443, "TCP"), (6443, "TCP")})]
    assert api_rule["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]


def test_helm_test_hooks_run_the_image_hardened(default_docs: Docs) -> None:
    pods = by_kind(default_docs, "Pod")
    assert {p["metadata"]["name"] for p in pods} == {
        "ds-datasync-test-connectors",
        "ds-datasync-test-metrics",
    }
    for pod in pods:
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "ghcr.io/datasync/datasync:0.1.0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    connectors = next(p for p in pods if p["metadata"]["name"].endswith("connectors"))
    assert connectors["spec"]["containers"][0]["command"] == ["datasync"]
    assert connectors["spec"]["containers"][0]["args"] == ["connectors"]
    metrics = next(p for p in pods if p["metadata"]["name"].endswith("metrics"))
    script = metrics["spec"]["containers"][0]["command"][-1]
    assert "http://ds-datasync-metrics.datasync-system.svc:8080/metrics" in script
    compile(script, "test-metrics", "exec")  # the embedded Python is valid


def test_disabling_parts_removes_them() -> None:
    docs = render(
        values={
            "metrics.service.enabled": "false",
            "serviceAccount.create": "false",
            "crds.install": "false",
            "rbac.create": "false",
        }
    )
    kinds = {doc["kind"] for doc in docs}
    assert kinds.isdisjoint(
        {
            "Service",
            "ServiceAccount",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        }
    )
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "default"
    assert [p["metadata"]["name"] for p in by_kind(docs, "Pod")] == ["ds-datasync-test-connectors"]


namespace_names = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(namespace_names, min_size=1, max_size=4, unique=True))
def test_any_namespace_list_becomes_flags_and_namespaced_rbac(namespaces: list[str]) -> None:
    docs = render(values={"watchNamespaces": "{" + ",".join(namespaces) + "}"}, show_hooks=False)
    assert [
        a.removeprefix("--namespace=") for a in args_of(docs) if a.startswith("--namespace=")
    ] == namespaces
    assert {r["metadata"]["namespace"] for r in by_kind(docs, "RoleBinding")} >= set(namespaces)


def test_alerts_and_dashboard_use_only_metrics_the_operator_exports(full_docs: Docs) -> None:
    rule = one(full_docs, "PrometheusRule")
    expressions = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    (config_map,) = [
        d for d in by_kind(full_docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    dashboard = json.loads(config_map["data"]["datasync.json"])
    expressions += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = set().union(*(metric_names(e) for e in expressions))
    missing = sorted(used - operator_metrics())
    assert not missing, (
        f"alerts/dashboard query metrics the operator does not export: {missing}; "
        f"it exports {sorted(operator_metrics())}"
    )
