"""The test control plane is a real Kubernetes: CRD validation, RBAC, CronJob -> Job ->
pod (via the pod runner), Job failure, garbage collection."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.controlplane import (
    BUILD_SCRIPT,
    ControlPlane,
    MissingBinariesError,
    check_binaries,
    default_bin_dir,
)
from tests.cluster.podrunner import DEFAULT_SELECTOR, PathRewriter, PodRunner, expand_references

pytestmark = pytest.mark.integration

MANAGED = dict([DEFAULT_SELECTOR.split("=")])
GROUP = "test.datasync.io"
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "condition",
    interval: float = 0.2,
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def widget_crd(plural: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "x-kubernetes-validations": [
                    {
                        "rule": "self.minReplicas <= self.maxReplicas",
                        "message": "minReplicas must not exceed maxReplicas",
                    }
                ],
                "properties": {
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "minReplicas": {"type": "integer", "default": 0},
                    "maxReplicas": {"type": "integer", "default": 1},
                },
            },
            "status": {"type": "object", "properties": {"observed": {"type": "boolean"}}},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def crd_established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(
        c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
    )


def create_widget(
    objects: client.CustomObjectsApi, namespace: str, plural: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    result: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP, "v1", namespace, plural, body
    )
    return result


def rejection(call: Callable[[], object]) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return caught.value


def test_crd_schema_and_cel_validation(kube_api: client.ApiClient, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(kube_api)
    objects = client.CustomObjectsApi(kube_api)
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    crd = widget_crd(plural)
    ext.create_custom_resource_definition(crd)
    try:
        wait_for(lambda: crd_established(ext, crd["metadata"]["name"]), 30, "CRD Established")
        created = wait_for(lambda: _try_create(objects, namespace, plural), 15, "CRD served")
        assert created["spec"] == {"size": "small", "minReplicas": 0, "maxReplicas": 1}

        schema_error = rejection(
            lambda: create_widget(objects, namespace, plural, "bad-enum", {"size": "huge"})
        )
        assert "spec.size" in schema_error.body
        assert "Unsupported value" in schema_error.body

        cel_error = rejection(
            lambda: create_widget(
                objects,
                namespace,
                plural,
                "bad-cel",
                {"size": "large", "minReplicas": 5, "maxReplicas": 2},
            )
        )
        assert "minReplicas must not exceed maxReplicas" in cel_error.body

        status = objects.patch_namespaced_custom_object_status(
            GROUP, "v1", namespace, plural, "ok", {"status": {"observed": True}}
        )
        assert status["status"] == {"observed": True}
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def _try_create(
    objects: client.CustomObjectsApi, namespace: str, plural: str
) -> dict[str, Any] | None:
    try:
        return create_widget(objects, namespace, plural, "ok", {"size": "small"})
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def service_account_token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    return str(core.create_namespaced_service_account_token(name, namespace, request).status.token)


def test_rbac_as_service_account(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for secret in ("allowed", "other"):
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name=secret), string_data={"key": secret}),
        )
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-allowed"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""],
                    resources=["secrets"],
                    verbs=["get"],
                    resource_names=["allowed"],
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-allowed"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )

    token = service_account_token(core, namespace, "reader")
    kubeconfig = control_plane.kubeconfig_for_token(token, namespace=namespace)
    with control_plane.api_client(kubeconfig) as as_reader:
        reader = client.CoreV1Api(as_reader)
        allowed = reader.read_namespaced_secret("allowed", namespace)
        assert allowed.data["key"] == "YWxsb3dlZA=="
        for forbidden in (
            lambda: reader.read_namespaced_secret("other", namespace),
            lambda: reader.list_namespaced_secret(namespace),
        ):
            with pytest.raises(ApiException) as caught:
                forbidden()
            assert caught.value.status == 403
            assert f"system:serviceaccount:{namespace}:reader" in caught.value.body

    user = f"system:serviceaccount:{namespace}:reader"
    authz = client.AuthorizationV1Api(kube_api)

    def allowed_to_get(secret: str) -> bool:
        review = authz.create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user,
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=namespace, verb="get", resource="secrets", name=secret
                    ),
                )
            )
        )
        return bool(review.status.allowed)

    assert allowed_to_get("allowed")
    assert not allowed_to_get("other")

    denied = control_plane.kubectl(
        "get", "secret", "other", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr


def job_condition(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    job = batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def job_pod(core: client.CoreV1Api, namespace: str, job: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


SYNC_SCRIPT = """
import os, pathlib
from kubernetes import client, config
print("hello from", os.environ["POD_NAME"], "token", os.environ["API_TOKEN"])
settings = pathlib.Path(os.environ["DATASYNC_CONFIG"]).read_text().strip()
config.load_kube_config()
review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
summary = f"synced=3 settings={settings} user={review.status.user_info.username}"
pathlib.Path(os.environ["DATASYNC_TERMINATION_MESSAGE_PATH"]).write_text(summary)
"""


def test_job_from_cronjob_runs_to_completion(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str, pod_runner: PodRunner
) -> None:
    core = client.CoreV1Api(kube_api)
    batch = client.BatchV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="crm"), string_data={"token": "s3cret"}),
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="settings"), data={"mode.txt": "incremental"}
        ),
    )
    container = client.V1Container(
        name="sync",
        image="datasync:test",
        command=["python3", "-c", SYNC_SCRIPT],
        env=[
            client.V1EnvVar(
                name="POD_NAME",
                value_from=client.V1EnvVarSource(
                    field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
                ),
            ),
            client.V1EnvVar(
                name="API_TOKEN",
                value_from=client.V1EnvVarSource(
                    secret_key_ref=client.V1SecretKeySelector(name="crm", key="token")
                ),
            ),
            client.V1EnvVar(name="DATASYNC_CONFIG", value="/etc/datasync/mode.txt"),
            client.V1EnvVar(name="DATASYNC_TERMINATION_MESSAGE_PATH", value="/dev/termination-log"),
        ],
        volume_mounts=[client.V1VolumeMount(name="settings", mount_path="/etc/datasync")],
    )
    template = client.V1JobTemplateSpec(
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=MANAGED),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[container],
                    volumes=[
                        client.V1Volume(
                            name="settings",
                            config_map=client.V1ConfigMapVolumeSource(name="settings"),
                        )
                    ],
                ),
            ),
        )
    )
    batch.create_namespaced_cron_job(
        namespace,
        client.V1CronJob(
            metadata=client.V1ObjectMeta(name="nightly"),
            spec=client.V1CronJobSpec(schedule="0 3 * * *", suspend=True, job_template=template),
        ),
    )

    control_plane.kubectl("create", "job", "manual-1", "--from=cronjob/nightly", "-n", namespace)

    assert (
        wait_for(lambda: job_condition(batch, namespace, "manual-1"), 60, "Job complete")
        == "Complete"
    )
    pod = job_pod(core, namespace, "manual-1")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == "podrunner"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert terminated.reason == "Completed"
    user = f"system:serviceaccount:{namespace}:default"
    assert terminated.message == f"synced=3 settings=incremental user={user}"
    assert f"hello from {pod.metadata.name} token s3cret" in pod_runner.logs(
        namespace, pod.metadata.name
    )


def run_job(
    batch: client.BatchV1Api, namespace: str, name: str, command: list[str], **job_spec: Any
) -> None:
    container = client.V1Container(name="main", image="datasync:test", command=command)
    batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1JobSpec(
                backoff_limit=0,
                **job_spec,
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=MANAGED),
                    spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
                ),
            ),
        ),
    )


def test_failing_command_fails_the_job(
    kube_api: client.ApiClient, namespace: str, pod_runner: PodRunner
) -> None:
    core = client.CoreV1Api(kube_api)
    batch = client.BatchV1Api(kube_api)
    run_job(
        batch,
        namespace,
        "broken",
        [
            "python3",
            "-c",
            "import sys; print('about to fail'); "
            "open('/dev/termination-log', 'w').write('connector unreachable'); sys.exit(3)",
        ],
    )

    assert (
        wait_for(lambda: job_condition(batch, namespace, "broken"), 60, "Job finished") == "Failed"
    )
    pod = job_pod(core, namespace, "broken")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"
    assert terminated.message == "connector unreachable"
    assert "about to fail" in pod_runner.logs(namespace, pod.metadata.name)


def test_active_deadline_and_deletion_kill_the_process(
    kube_api: client.ApiClient, namespace: str, pod_runner: PodRunner
) -> None:
    core = client.CoreV1Api(kube_api)
    sleeper = ["python3", "-c", "import time; print('sleeping', flush=True); time.sleep(120)"]
    for name, deadline in (("deadline", 2), ("deleted", None)):
        core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=name, labels=MANAGED),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    active_deadline_seconds=deadline,
                    containers=[
                        client.V1Container(name="main", image="datasync:test", command=sleeper)
                    ],
                ),
            ),
        )

    def phase(name: str) -> str:
        return str(core.read_namespaced_pod(name, namespace).status.phase)

    wait_for(lambda: phase("deleted") == "Running", 30, "pod running")
    core.delete_namespaced_pod("deleted", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("deleted", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, 20, "deleted pod to disappear")
    wait_for(lambda: phase("deadline") == "Failed", 30, "deadline pod to fail")
    assert core.read_namespaced_pod("deadline", namespace).status.reason == "DeadlineExceeded"
    assert "sleeping" in pod_runner.logs(namespace, "deadline")


def test_owned_objects_are_garbage_collected(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "b"})
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="child",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1",
                        kind="ConfigMap",
                        name="owner",
                        uid=owner.metadata.uid,
                        block_owner_deletion=False,
                    )
                ],
            ),
            data={"c": "d"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(child_gone, 60, "owned ConfigMap to be garbage-collected", interval=0.5)


def test_missing_binaries_give_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(MissingBinariesError) as caught:
        check_binaries(tmp_path)
    message = str(caught.value)
    assert "kube-apiserver" in message
    assert "etcd" in message
    assert str(tmp_path) in message
    assert "tests/cluster/build.sh" in message


def test_pod_runner_relists_after_watch_expiry(tmp_path: Path) -> None:
    runner = PodRunner(tmp_path / "unused.kubeconfig", state_dir=tmp_path)
    seen: list[str | None] = []

    def watch_once(namespace: str | None, resource_version: str | None) -> str | None:
        seen.append(resource_version)
        if len(seen) == 1:
            return "41"
        if len(seen) == 2:
            raise ApiException(status=410, reason="Gone")
        runner._stopping.set()
        return "42"

    runner._watch_once = watch_once  # type: ignore[method-assign]
    runner._watch_loop(None)
    assert seen == [None, "41", None]


def managed_pod(name: str, command: list[str], **spec: Any) -> client.V1Pod:
    container_keys = {"env", "env_from", "volume_mounts"}
    container = client.V1Container(
        name="main",
        image="datasync:test",
        command=command,
        **{k: v for k, v in spec.items() if k in container_keys},
    )
    pod_spec = {k: v for k, v in spec.items() if k not in container_keys}
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=MANAGED),
        spec=client.V1PodSpec(restart_policy="Never", containers=[container], **pod_spec),
    )


def terminated_state(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    def probe() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod.status.container_statuses[0].state.terminated
        return None

    return wait_for(probe, 30, f"pod {name} to finish")


def test_pod_runner_waits_for_config_persists_claims_and_reports_start_errors(
    kube_api: client.ApiClient, namespace: str, pod_runner: PodRunner
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="state"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Mi"}),
            ),
        ),
    )
    claim = client.V1Volume(
        name="state",
        persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="state"),
    )
    mount = [client.V1VolumeMount(name="state", mount_path="/var/lib/datasync")]
    env_from = [
        client.V1EnvFromSource(prefix="CRM_", secret_ref=client.V1SecretEnvSource(name="late"))
    ]
    writer = "import os; open('/var/lib/datasync/cursor', 'w').write(os.environ['CRM_CURSOR'])"
    core.create_namespaced_pod(
        namespace,
        managed_pod(
            "writer",
            ["python3", "-c", writer],
            volumes=[claim],
            volume_mounts=mount,
            env_from=env_from,
        ),
    )

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("writer", namespace).status.container_statuses
        return statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason

    assert wait_for(waiting_reason, 30, "config error") == "CreateContainerConfigError"
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="late"), string_data={"CURSOR": "c-42"}),
    )
    assert terminated_state(core, namespace, "writer").exit_code == 0

    reader = "print(open('/var/lib/datasync/cursor').read())"
    core.create_namespaced_pod(
        namespace,
        managed_pod("reader", ["python3", "-c", reader], volumes=[claim], volume_mounts=mount),
    )
    assert terminated_state(core, namespace, "reader").exit_code == 0
    assert pod_runner.logs(namespace, "reader").strip() == "c-42"

    core.create_namespaced_pod(namespace, managed_pod("missing", ["no-such-binary-x"]))
    missing = terminated_state(core, namespace, "missing")
    assert (missing.exit_code, missing.reason) == (128, "StartError")
    assert "no-such-binary-x" in missing.message


def test_python_harness_and_build_script_agree_on_the_cache_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATASYNC_CLUSTER_BIN", raising=False)
    printed = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(printed) == default_bin_dir()


def test_path_rewriting_rule(tmp_path: Path) -> None:
    rewrite = PathRewriter(
        {"/etc/datasync": tmp_path / "cfg", "/etc/datasync/secrets": tmp_path / "sec"}
    )
    assert rewrite("--config=/etc/datasync/app.yaml") == f"--config={tmp_path}/cfg/app.yaml"
    assert rewrite("/etc/datasync/secrets/token") == f"{tmp_path}/sec/token"
    assert rewrite("/etc/datasync") == f"{tmp_path}/cfg"
    assert (
        rewrite("/opt/etc/datasync/x /etc/datasync-old") == "/opt/etc/datasync/x /etc/datasync-old"
    )
    assert expand_references("$(A)-$$(A)-$(B)", {"A": "1"}) == "1-$(A)-$(B)"
