"""The chart against the real control plane (tests/cluster): server-side dry-run apply of the
default and the full rendering, a real `helm install` with default values, the examples
applied from Git without drift, and the CRD kept on uninstall."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from tests.cluster.controlplane import ControlPlane, free_port
from tests.cluster.podrunner import PodRunner
from tests.ship.tools import CHART, FULL_VALUES, REPO, argocd_health, helm, render

pytestmark = pytest.mark.integration

CRD_NAME = "datasyncconnections.datasync.io"
EXAMPLE_FOLDERS = ["hubspot-salesforce", "hubspot-postgres", "sandbox"]

# Minimal stand-ins for the prometheus-operator CRDs, which the test cluster does not have:
# the API server then checks apiVersion/kind/metadata of ServiceMonitor and PrometheusRule,
# while their spec is checked by tests/ship/test_chart_render.py (the real CRDs' schemas are
# not available offline).
STAND_IN_CRDS = [
    {"kind": kind, "plural": plural}
    for kind, plural in (
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    )
]


def stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.monitoring.coreos.com",
            "labels": {"datasync.test/stand-in": "true"},
        },
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {
                "kind": kind,
                "plural": plural,
                "listKind": f"{kind}List",
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def dry_run_apply(plane: ControlPlane, documents: list[dict[str, Any]]) -> str:
    result = plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=datasync-ship-test",
        "-f",
        "-",
        input=to_yaml(documents),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_established(plane: ControlPlane, name: str) -> None:
    plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> Iterator[None]:
    created = []
    for crd in STAND_IN_CRDS:
        document = stand_in_crd(crd["kind"], crd["plural"])
        name = document["metadata"]["name"]
        exists = control_plane.kubectl("get", f"crd/{name}", check=False).returncode == 0
        if not exists:
            control_plane.kubectl("create", "-f", "-", input=to_yaml([document]))
            created.append(name)
        wait_established(control_plane, name)
    yield
    for name in created:
        control_plane.kubectl("delete", f"crd/{name}", "--wait=false", check=False)


def test_default_chart_passes_server_side_dry_run(
    control_plane: ControlPlane, namespace: str
) -> None:
    documents = render(namespace=namespace)
    output = dry_run_apply(control_plane, documents)
    for kind in (
        "deployment.apps",
        "serviceaccount",
        "service",
        "customresourcedefinition.apiextensions.k8s.io",
        "clusterrole.rbac.authorization.k8s.io",
        "pod",
    ):
        assert f"{kind}/" in output, output


def test_full_chart_passes_server_side_dry_run(
    control_plane: ControlPlane, namespace: str, monitoring_crds: None
) -> None:
    # Roles go to watched namespaces, which must exist: watch the test namespace.
    documents = render(
        namespace=namespace,
        values_files=[FULL_VALUES],
        values={"watchNamespaces": "{" + namespace + "}"},
    )
    kinds = {d["kind"] for d in documents}
    assert {
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "ConfigMap",
        "Role",
        "RoleBinding",
    } <= kinds
    output = dry_run_apply(control_plane, documents)
    for kind in (
        "servicemonitor.monitoring.coreos.com",
        "prometheusrule.monitoring.coreos.com",
        "networkpolicy.networking.k8s.io",
        "role.rbac.authorization.k8s.io",
        "configmap",
    ):
        assert f"{kind}/" in output, output


def test_dry_run_rejects_what_the_api_server_would_reject(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Guards the tests above: a broken Deployment must not pass the dry run.
    documents = render(namespace=namespace, show_hooks=False)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 0
    result = control_plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        input=to_yaml([deployment]),
        check=False,
    )
    assert result.returncode != 0 and "containerPort" in result.stderr


def pod_from_template(owner: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = owner["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{owner['metadata']['name']}-pss",
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        # The release's ServiceAccount does not exist in a dry run; PodSecurity ignores it.
        "spec": {**template["spec"], "serviceAccountName": "default"},
    }


def test_every_pod_meets_the_restricted_pod_security_standard(
    control_plane: ControlPlane, namespace: str
) -> None:
    # The API server's PodSecurity admission enforces "restricted" on this namespace; the
    # operator pod, the helm test pods and the sandbox apps must all be admitted.
    control_plane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    rendered = render(namespace=namespace)
    pods = [d for d in rendered if d["kind"] == "Pod"]
    pods += [pod_from_template(d, namespace) for d in rendered if d["kind"] == "Deployment"]
    sandbox = yaml.safe_load_all((REPO / "examples/sandbox/sandbox-apps.yaml").read_text())
    pods += [pod_from_template(d, namespace) for d in sandbox if d["kind"] == "Deployment"]
    assert len(pods) == 5
    output = dry_run_apply(control_plane, pods)
    assert output.count("pod/") == 5, output
    # And a pod that is not hardened is refused there, so the check above means something.
    weak = pod_from_template(next(d for d in rendered if d["kind"] == "Deployment"), namespace)
    del weak["spec"]["containers"][0]["securityContext"]["capabilities"]
    result = control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=to_yaml([weak]), check=False
    )
    assert result.returncode != 0 and "restricted" in result.stderr


def prepare_crd_for_release(plane: ControlPlane, release: str, namespace: str) -> None:
    """Another test may have created the CRD already; let this release adopt it, as a user
    moving an existing CRD under the chart would (Helm's ownership metadata)."""
    if plane.kubectl("get", f"crd/{CRD_NAME}", check=False).returncode != 0:
        return
    plane.kubectl("label", "--overwrite", f"crd/{CRD_NAME}", "app.kubernetes.io/managed-by=Helm")
    plane.kubectl(
        "annotate",
        "--overwrite",
        f"crd/{CRD_NAME}",
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    )


def kubectl_files(folder: str, pattern: str = "*.yaml") -> list[str]:
    files = sorted((REPO / "examples" / folder).glob(pattern))
    assert files, f"examples/{folder}/{pattern}"
    return [arg for path in files for arg in ("-f", str(path))]


def test_helm_install_with_defaults_examples_apply_from_git_and_crd_is_kept(
    control_plane: ControlPlane, namespace: str
) -> None:
    release = f"ds-{uuid.uuid4().hex[:6]}"
    prepare_crd_for_release(control_plane, release, namespace)
    installed = helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        kubeconfig=control_plane.kubeconfig,
    )
    notes = installed.stdout.split("NOTES:", 1)[1]
    for expected in (
        "examples/hubspot-salesforce/secrets.yaml",
        "kubectl get dsc",
        "datasync status",
        f"helm test {release} -n {namespace}",
    ):
        assert expected in notes
    try:
        fullname = f"{release}-datasync"
        deployment = yaml.safe_load(
            control_plane.kubectl(
                "get", "deployment", fullname, "-n", namespace, "-o", "yaml"
            ).stdout
        )
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == fullname
        control_plane.kubectl("get", "serviceaccount", fullname, "-n", namespace)
        control_plane.kubectl("get", "service", f"{fullname}-metrics", "-n", namespace)
        control_plane.kubectl("get", "clusterrolebinding", fullname)
        crd = yaml.safe_load(control_plane.kubectl("get", f"crd/{CRD_NAME}", "-o", "yaml").stdout)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        wait_established(control_plane, CRD_NAME)

        # The examples apply from Git, and a second look finds no drift in the connections
        # and Secrets: no server-side defaults, nothing the API server rewrites. (The sandbox
        # Deployments are left out of the diff: their controller updates them meanwhile.)
        for folder in EXAMPLE_FOLDERS:
            control_plane.kubectl(
                "apply",
                "--server-side",
                "--field-manager=gitops",
                "-n",
                namespace,
                *kubectl_files(folder),
            )
            diff = control_plane.kubectl(
                "diff",
                "--server-side",
                "--field-manager=gitops",
                "-n",
                namespace,
                *kubectl_files(folder, "connection.yaml"),
                *kubectl_files(folder, "secrets.yaml"),
                check=False,
            )
            assert diff.returncode == 0, f"{folder} drifts after apply:\n{diff.stdout}"
        names = control_plane.kubectl("get", "dsc", "-n", namespace, "-o", "name").stdout.split()
        assert len(names) == len(EXAMPLE_FOLDERS)
    finally:
        helm(
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--wait",
            kubeconfig=control_plane.kubeconfig,
        )

    # The keep policy: the CRD, and with it every connection, survives the uninstall.
    assert control_plane.kubectl("get", f"crd/{CRD_NAME}", check=False).returncode == 0
    assert (
        control_plane.kubectl(
            "get", "deployment", f"{release}-datasync", "-n", namespace, check=False
        ).returncode
        != 0
    )
    deadline = time.monotonic() + 30
    while (
        control_plane.kubectl("get", "clusterrole", f"{release}-datasync", check=False).returncode
        == 0
    ):
        assert time.monotonic() < deadline, "ClusterRole not removed by helm uninstall"
        time.sleep(0.5)
    remaining = control_plane.kubectl("get", "dsc", "-n", namespace, "-o", "name").stdout.split()
    assert len(remaining) == len(EXAMPLE_FOLDERS)


def wait_for(
    check: Callable[[], object], timeout: float, what: str, logs: Callable[[], str]
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out waiting for {what}\n--- operator log ---\n{logs()}", pytrace=False
            )
        time.sleep(0.5)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def test_chart_operator_pod_runs_namespaced_and_reconciles_an_example(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The Deployment exactly as rendered, run by the pod runner (tests/cluster) with its own
    ServiceAccount token: command, args, env, ports and probe path must fit the real operator,
    and the namespaced RBAC must let it reconcile a connection from examples/."""
    release = f"ds-{uuid.uuid4().hex[:6]}"
    prepare_crd_for_release(control_plane, release, namespace)
    metrics_port, health_port = free_port(), free_port()
    helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        f"metrics.port={metrics_port}",
        "--set",
        f"operator.healthPort={health_port}",
        kubeconfig=control_plane.kubeconfig,
    )
    runner = PodRunner(
        control_plane.kubeconfig,
        label_selector=(
            f"app.kubernetes.io/instance={release},app.kubernetes.io/component in (operator,test)"
        ),
        namespaces=[namespace],
        state_dir=tmp_path / "podrunner",
        node_name=f"ship-{release}",
    ).start()

    def operator_log() -> str:
        pods = control_plane.kubectl(
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            f"app.kubernetes.io/instance={release}",
            "-o",
            "jsonpath={.items[*].metadata.name}",
            check=False,
        ).stdout.split()
        return "\n".join(runner.logs(namespace, pod)[-4000:] for pod in pods) or "(no pod)"

    try:
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200,
            90,
            "the operator's /healthz (the chart's probes)",
            operator_log,
        )
        status, metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200 and "datasync_connection_ready" in metrics

        control_plane.kubectl(
            "apply",
            "-n",
            namespace,
            *kubectl_files("hubspot-postgres"),
        )
        custom = client.CustomObjectsApi(control_plane.api_client())

        def reconciled() -> dict[str, Any] | None:
            obj = cast(
                dict[str, Any],
                custom.get_namespaced_custom_object(
                    "datasync.io",
                    "v1alpha1",
                    namespace,
                    "datasyncconnections",
                    "hubspot-postgres-contacts",
                ),
            )
            status = obj.get("status") or {}
            ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
            return obj if status.get("observedGeneration") == 1 and ready else None

        obj = wait_for(reconciled, 90, "the operator to reconcile the example", operator_log)
        assert isinstance(obj, dict)
        control_plane.kubectl(
            "get",
            "cronjob",
            "-n",
            namespace,
            obj["status"]["cronJob"],
        )
        # The Argo CD health check on a status the real operator wrote: no sync has run.
        health = argocd_health(obj)
        conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
        expected = (
            "Degraded"
            if "False" in (conditions.get("Ready"), conditions.get("CredentialsValid"))
            else "Progressing"
        )
        assert health["status"] == expected, (health, obj["status"])

        # `helm test`: the connectors hook runs the image's entry point. (The metrics hook
        # needs cluster DNS for the Service name, which the pod runner does not provide.)
        tested = helm(
            "test",
            release,
            "--namespace",
            namespace,
            "--timeout",
            "90s",
            "--filter",
            f"name={release}-datasync-test-connectors",
            kubeconfig=control_plane.kubeconfig,
        )
        assert "Phase:          Succeeded" in tested.stdout, tested.stdout
        hook_log = runner.logs(namespace, f"{release}-datasync-test-connectors")
        assert "hubspot" in hook_log and "postgres" in hook_log, hook_log
    finally:
        # While the operator still runs, so it removes its finalizer from the connection.
        control_plane.kubectl(
            "delete", "dsc", "--all", "-n", namespace, "--timeout=30s", check=False
        )
        helm(
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--wait",
            kubeconfig=control_plane.kubeconfig,
        )
        runner.stop()
