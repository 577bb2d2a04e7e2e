"""Test-harness stand-in for kube-scheduler + kubelet: binds matching pods to a fake
node and runs their first container's command as a local subprocess.
See tests/cluster/README.md for the path-remapping rule and limitations."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=datasync"
NODE_NAME = "podrunner"
SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"

Json = dict[str, Any]


class PodSetupError(Exception):
    """The pod cannot be started yet (transient) or at all (permanent)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand_references(value: str, variables: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are substituted, `$$` escapes `$`."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if value.startswith("$(", i):
            end = value.find(")", i + 2)
            if end != -1:
                name = value[i + 2 : end]
                out.append(variables.get(name, value[i : end + 1]))
                i = end + 1
                continue
        out.append(value[i])
        i += 1
    return "".join(out)


class PathRewriter:
    """Replaces container mount paths by their materialized local paths, longest first,
    only where the mount path starts a path (not inside another path component)."""

    def __init__(self, mounts: dict[str, Path]) -> None:
        self.mounts = {p.rstrip("/"): local for p, local in mounts.items() if p.rstrip("/")}
        ordered = sorted(self.mounts, key=len, reverse=True)
        alternatives = "|".join(re.escape(p) for p in ordered)
        self._pattern = (
            re.compile(rf"(?<![\w.\-/])({alternatives})(?=$|/|[^\w.\-])") if ordered else None
        )

    def __call__(self, value: str) -> str:
        if self._pattern is None:
            return value
        return self._pattern.sub(lambda m: str(self.mounts[m.group(1)]), value)


@dataclass
class PodState:
    namespace: str
    name: str
    uid: str
    root: Path
    log_path: Path
    wake: threading.Event = field(default_factory=threading.Event)
    kill_reason: str | None = None
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_file: Path


class PodRunner:
    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        label_selector: str | None = DEFAULT_SELECTOR,
        namespaces: Iterable[str] | None = None,
        extra_env: dict[str, str] | None = None,
        max_parallel: int = 4,
        state_dir: str | os.PathLike[str] | None = None,
        node_name: str = NODE_NAME,
        max_grace_seconds: float = 10.0,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.label_selector = label_selector or None
        self.namespaces = list(namespaces) if namespaces else None
        self.extra_env = dict(extra_env or {})
        self.node_name = node_name
        self.max_grace_seconds = max_grace_seconds
        self._own_state_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="datasync-podrunner-"))
        self.log_root = self.state_dir / "logs"
        self._executor = ThreadPoolExecutor(
            max_workers=max_parallel, thread_name_prefix="podrunner"
        )
        self._cond = threading.Condition()
        self._claimed: set[str] = set()
        self._done: set[str] = set()
        self._states: dict[str, PodState] = {}
        self._log_paths: dict[tuple[str, str], Path] = {}
        self._outstanding = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.log = logging.getLogger("tests.cluster.podrunner")
        self._log_handler: logging.Handler | None = None
        self._api: client.ApiClient | None = None

    @property
    def core(self) -> client.CoreV1Api:
        assert self._api is not None, "PodRunner.start() was not called"
        return client.CoreV1Api(self._api)

    def start(self) -> PodRunner:
        self.log_root.mkdir(parents=True, exist_ok=True)
        self._attach_log_file()
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = 32
        self._api = client.ApiClient(configuration)
        self._ensure_node()
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        for namespace in scopes:
            thread = threading.Thread(
                target=self._watch_loop,
                args=(namespace,),
                name=f"podrunner-watch-{namespace or 'all'}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            for state in self._states.values():
                state.kill_reason = state.kill_reason or "Stopped"
                state.wake.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=1)
        if self._api is not None:
            self._api.close()
        if self._log_handler is not None:
            self.log.removeHandler(self._log_handler)
            self._log_handler.close()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir / "pods", ignore_errors=True)

    def log_path(self, namespace: str, pod_name: str) -> Path:
        with self._cond:
            path = self._log_paths.get((namespace, pod_name))
        if path is None:
            raise FileNotFoundError(f"pod {namespace}/{pod_name} was not run by this pod runner")
        return path

    def logs(self, namespace: str, pod_name: str) -> str:
        return self.log_path(namespace, pod_name).read_text(errors="replace")

    def wait_for_idle(self, timeout: float = 60.0, settle: float = 0.5) -> None:
        """Wait until every claimed pod has finished and nothing new arrived for `settle`s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                remaining = deadline - time.monotonic()
                if self._outstanding == 0:
                    self._cond.wait(timeout=min(settle, max(remaining, 0)))
                    if self._outstanding == 0:
                        return
                if remaining <= 0:
                    raise TimeoutError(f"pod runner still busy with {self._outstanding} pod(s)")
                self._cond.wait(timeout=remaining)

    def _attach_log_file(self) -> None:
        handler = logging.FileHandler(self.log_root / "podrunner.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(handler)
        self.log.setLevel(logging.INFO)
        self._log_handler = handler

    def _ensure_node(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        node = client.V1Node(metadata=client.V1ObjectMeta(name=self.node_name, labels=labels))
        try:
            self.core.create_node(node)
        except ApiException as error:
            if error.status != 409:
                raise
        stamp = now_rfc3339()
        resources = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        self.core.patch_node_status(
            self.node_name,
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "podrunner is posting ready status",
                            "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp,
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "podrunner",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                        "kernelVersion": "",
                        "osImage": "podrunner",
                        "containerRuntimeVersion": "podrunner://local",
                        "kubeProxyVersion": "",
                    },
                }
            },
        )

    def _list_and_watch_args(self, namespace: str | None) -> tuple[Callable[..., Any], Json]:
        kwargs: Json = {}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        if namespace is None:
            return self.core.list_pod_for_all_namespaces, kwargs
        kwargs["namespace"] = namespace
        return self.core.list_namespaced_pod, kwargs

    def _watch_loop(self, namespace: str | None) -> None:
        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                resource_version = self._watch_once(namespace, resource_version)
            except ApiException as error:
                if error.status == 410:
                    self.log.info("watch expired (410 Gone); relisting")
                    resource_version = None
                    continue
                self.log.warning("watch failed: %s", error)
                self._stopping.wait(1)
            except Exception:
                if self._stopping.is_set():
                    return
                self.log.exception("watch loop error")
                self._stopping.wait(1)

    def _watch_once(self, namespace: str | None, resource_version: str | None) -> str | None:
        list_fn, kwargs = self._list_and_watch_args(namespace)
        if resource_version is None:
            listing = list_fn(**kwargs)
            for pod in listing.items:
                self._on_pod("ADDED", self._to_dict(pod))
            resource_version = listing.metadata.resource_version
        stream = watch.Watch()
        for event in stream.stream(
            list_fn,
            resource_version=resource_version,
            timeout_seconds=5,
            allow_watch_bookmarks=True,
            **kwargs,
        ):
            if self._stopping.is_set():
                stream.stop()
                break
            kind = event["type"]
            if kind == "ERROR":
                raw = event.get("raw_object") or {}
                if raw.get("code") == 410:
                    return None
                raise RuntimeError(f"watch error: {raw}")
            pod = self._to_dict(event["object"])
            resource_version = pod.get("metadata", {}).get("resourceVersion", resource_version)
            if kind != "BOOKMARK":
                self._on_pod(kind, pod)
        return resource_version

    def _to_dict(self, obj: Any) -> Json:
        if isinstance(obj, dict):
            return obj
        assert self._api is not None
        result: Json = self._api.sanitize_for_serialization(obj)
        return result

    def _on_pod(self, kind: str, pod: Json) -> None:
        meta, spec = pod.get("metadata", {}), pod.get("spec", {})
        uid = meta.get("uid", "")
        if kind == "DELETED":
            self._request_kill(uid, "Deleted")
            return
        if meta.get("deletionTimestamp"):
            self._on_deleting(pod)
            return
        node = spec.get("nodeName")
        phase = pod.get("status", {}).get("phase", "Pending")
        if (node and node != self.node_name) or phase != "Pending" or spec.get("schedulingGates"):
            return
        with self._cond:
            if uid in self._claimed or self._stopping.is_set():
                return
            self._claimed.add(uid)
            self._outstanding += 1
        self._executor.submit(self._run_pod_guarded, pod)

    def _on_deleting(self, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        with self._cond:
            known = uid in self._claimed
        if known:
            self._request_kill(uid, "Deleted")
        elif pod.get("spec", {}).get("nodeName") == self.node_name:
            self._force_delete(pod)

    def _request_kill(self, uid: str, reason: str) -> None:
        with self._cond:
            state = self._states.get(uid)
            if state is not None and state.kill_reason is None:
                state.kill_reason = reason
                state.wake.set()
            elif state is None and uid in self._claimed and uid not in self._done:
                self._states[uid] = PodState("", "", uid, Path(), Path(), kill_reason=reason)

    def _force_delete(self, pod: Json) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                self.log.warning(
                    "force delete of %s/%s failed: %s", meta["namespace"], meta["name"], error
                )

    def _run_pod_guarded(self, pod: Json) -> None:
        meta = pod["metadata"]
        try:
            self._run_pod(pod)
        except Exception:
            self.log.exception("pod %s/%s: runner error", meta["namespace"], meta["name"])
        finally:
            with self._cond:
                self._states.pop(meta["uid"], None)
                self._done.add(meta["uid"])
                self._outstanding -= 1
                self._cond.notify_all()

    def _new_state(self, pod: Json) -> PodState:
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        root = self.state_dir / "pods" / f"{namespace}_{name}_{uid[:8]}"
        root.mkdir(parents=True, exist_ok=True)
        log_path = self.log_root / namespace / f"{name}-{uid[:8]}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        state = PodState(namespace, name, uid, root, log_path)
        with self._cond:
            earlier = self._states.get(uid)
            if earlier is not None:
                state.kill_reason = earlier.kill_reason
            self._states[uid] = state
            self._log_paths[(namespace, name)] = log_path
        return state

    def _run_pod(self, pod: Json) -> None:
        state = self._new_state(pod)
        if state.kill_reason:
            self._finish_killed(pod, state)
            return
        if not pod["spec"].get("nodeName") and not self._bind(pod):
            return
        start_time = time.time()
        started_at = now_rfc3339()
        deadline = self._deadline(pod, start_time)
        launch = self._prepare_until_ready(pod, state, started_at, deadline)
        if launch is None:
            return
        self._execute(pod, state, launch, started_at, deadline)

    def _deadline(self, pod: Json, start_time: float) -> float | None:
        seconds = pod["spec"].get("activeDeadlineSeconds")
        return start_time + float(seconds) if seconds else None

    def _bind(self, pod: Json) -> bool:
        meta = pod["metadata"]
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=meta["name"], uid=meta["uid"]),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.node_name),
        )
        try:
            self.core.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
        except ApiException as error:
            if error.status != 409:
                raise
            self.log.info("%s/%s was bound by someone else", meta["namespace"], meta["name"])
            return False
        self.log.info("bound %s/%s to %s", meta["namespace"], meta["name"], self.node_name)
        return True

    def _prepare_until_ready(
        self, pod: Json, state: PodState, started_at: str, deadline: float | None
    ) -> Launch | None:
        reported = ""
        while True:
            try:
                return self._prepare(pod, state)
            except PodSetupError as error:
                message = str(error)
                if error.permanent:
                    self._report_terminal(
                        pod,
                        started_at,
                        exit_code=128,
                        reason="StartError",
                        message=message,
                        pod_reason="UnsupportedByPodRunner",
                    )
                    return None
                if message != reported:
                    self.log.info("pod %s/%s waiting: %s", state.namespace, state.name, message)
                    self._report_waiting(pod, started_at, "CreateContainerConfigError", message)
                    reported = message
            if state.kill_reason or self._stopping.is_set():
                self._finish_killed(pod, state)
                return None
            if deadline is not None and time.time() > deadline:
                self._report_terminal(
                    pod,
                    started_at,
                    exit_code=137,
                    reason="Error",
                    message=DEADLINE_MESSAGE,
                    pod_reason="DeadlineExceeded",
                )
                return None
            state.wake.wait(1.0)

    def _prepare(self, pod: Json, state: PodState) -> Launch:
        spec = pod["spec"]
        container = spec["containers"][0]
        command = list(container.get("command") or [])
        if not command:
            raise PodSetupError(
                "podrunner needs an explicit container `command` (no images)", permanent=True
            )
        volumes = self._materialize_volumes(pod, state.root / "volumes")
        mounts = self._mounts(container, volumes)
        termination_path = container.get("terminationMessagePath") or (
            DEFAULT_TERMINATION_MESSAGE_PATH
        )
        termination_file = state.root / "termination-log"
        termination_file.write_bytes(b"")
        mounts[termination_path] = termination_file
        container_env = self._container_env(pod, container)
        env = self._base_env(pod, state, mounts)
        rewrite = PathRewriter(mounts)
        env.update({key: rewrite(value) for key, value in container_env.items()})
        env.update(self.extra_env)
        argv = [
            rewrite(expand_references(arg, container_env))
            for arg in command + list(container.get("args") or [])
        ]
        workdir = state.root / "workdir"
        workdir.mkdir(exist_ok=True)
        return Launch(argv, env, workdir, termination_file)

    def _mounts(self, container: Json, volumes: dict[str, Path]) -> dict[str, Path]:
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            source = volumes.get(mount["name"])
            if source is None:
                raise PodSetupError(f"volumeMount {mount['name']} has no volume", permanent=True)
            local = source / mount["subPath"] if mount.get("subPath") else source
            if mount.get("subPath") and not local.exists():
                local.mkdir(parents=True)
            mounts[mount["mountPath"]] = local
        return mounts

    def _base_env(self, pod: Json, state: PodState, mounts: dict[str, Path]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")
        }
        env["PATH"] = _path_with_interpreter_dir(env.get("PATH", os.defpath))
        env["HOSTNAME"] = pod["metadata"]["name"]
        if self._automount(pod):
            env.update(self._service_account_env(pod, state, mounts))
        return env

    def _automount(self, pod: Json) -> bool:
        explicit = pod["spec"].get("automountServiceAccountToken")
        if explicit is not None:
            return bool(explicit)
        name = pod["spec"].get("serviceAccountName") or "default"
        try:
            account = self.core.read_namespaced_service_account(name, pod["metadata"]["namespace"])
        except ApiException as error:
            raise PodSetupError(f"serviceaccount {name} not readable: {error.reason}") from error
        return account.automount_service_account_token is not False

    def _service_account_env(
        self, pod: Json, state: PodState, mounts: dict[str, Path]
    ) -> dict[str, str]:
        sa_dir = mounts.get(SA_MOUNT_PATH)
        if sa_dir is None or not (sa_dir / "token").exists():
            sa_dir = state.root / "serviceaccount"
            sa_dir.mkdir(exist_ok=True)
            (sa_dir / "token").write_text(self._token(pod, None, None))
            (sa_dir / "namespace").write_text(pod["metadata"]["namespace"])
            mounts.setdefault(SA_MOUNT_PATH, sa_dir)
        ca_file = sa_dir / "ca.crt"
        if not ca_file.exists():
            ca_file = state.root / "ca.crt"
            shutil.copyfile(self._cluster_ca(), ca_file)
        assert self._api is not None
        server = self._api.configuration.host
        kubeconfig = state.root / "kubeconfig"
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "pod",
            "clusters": [
                {
                    "name": "cluster",
                    "cluster": {"server": server, "certificate-authority": str(ca_file)},
                }
            ],
            "users": [{"name": "sa", "user": {"tokenFile": str(sa_dir / "token")}}],
            "contexts": [
                {
                    "name": "pod",
                    "context": {
                        "cluster": "cluster",
                        "user": "sa",
                        "namespace": pod["metadata"]["namespace"],
                    },
                }
            ],
        }
        kubeconfig.write_text(yaml.safe_dump(document))
        parsed = urlparse(server)
        env = {"KUBECONFIG": str(kubeconfig)}
        if Path(SA_MOUNT_PATH, "token").exists():
            return env
        port = str(parsed.port or 443)
        env.update(
            KUBERNETES_SERVICE_HOST=parsed.hostname or "127.0.0.1",
            KUBERNETES_SERVICE_PORT=port,
            KUBERNETES_SERVICE_PORT_HTTPS=port,
        )
        return env

    def _cluster_ca(self) -> Path:
        assert self._api is not None
        return Path(self._api.configuration.ssl_ca_cert)

    def _token(self, pod: Json, audience: str | None, expiration: int | None) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[audience] if audience else [],
                expiration_seconds=expiration or 3600,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=meta["name"], uid=meta["uid"]
                ),
            )
        )
        try:
            response = self.core.create_namespaced_service_account_token(
                account, meta["namespace"], request
            )
        except ApiException as error:
            raise PodSetupError(
                f"TokenRequest for serviceaccount {account} failed: {error.reason}"
            ) from error
        status = response.status
        if status is None or not status.token:
            raise PodSetupError(f"TokenRequest for serviceaccount {account} returned no token")
        return str(status.token)

    def _materialize_volumes(self, pod: Json, root: Path) -> dict[str, Path]:
        result: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            target = root / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            result[volume["name"]] = self._materialize(pod, volume, target)
        return result

    def _materialize(self, pod: Json, volume: Json, target: Path) -> Path:
        namespace = pod["metadata"]["namespace"]
        if "emptyDir" in volume:
            return target
        if "persistentVolumeClaim" in volume:
            return self._claim_dir(namespace, volume["persistentVolumeClaim"]["claimName"])
        if "secret" in volume:
            source = volume["secret"]
            files = self._secret_files(namespace, source.get("secretName", ""), source)
        elif "configMap" in volume:
            source = volume["configMap"]
            files = self._configmap_files(namespace, source.get("name", ""), source)
        elif "downwardAPI" in volume:
            files = self._downward_files(pod, volume["downwardAPI"].get("items") or [])
        elif "projected" in volume:
            files = self._projected_files(pod, volume["projected"].get("sources") or [])
        else:
            kinds = sorted(set(volume) - {"name"})
            raise PodSetupError(
                f"volume {volume['name']}: type {kinds} not supported by podrunner", permanent=True
            )
        _write_files(target, files)
        return target

    def _claim_dir(self, namespace: str, claim: str) -> Path:
        try:
            self.core.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as error:
            raise PodSetupError(f"persistentvolumeclaim {claim} not found") from error
        path = self.state_dir / "pv" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _secret_data(self, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404 and optional:
                return None
            raise PodSetupError(f'secret "{name}" not found') from error
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def _configmap_data(self, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
        try:
            config_map = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            if error.status == 404 and optional:
                return None
            raise PodSetupError(f'configmap "{name}" not found') from error
        data = {k: v.encode() for k, v in (config_map.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (config_map.binary_data or {}).items()})
        return data

    def _secret_files(self, namespace: str, name: str, source: Json) -> dict[str, bytes]:
        data = self._secret_data(namespace, name, bool(source.get("optional")))
        return _select_items(data or {}, source.get("items"), f"secret {name}")

    def _configmap_files(self, namespace: str, name: str, source: Json) -> dict[str, bytes]:
        data = self._configmap_data(namespace, name, bool(source.get("optional")))
        return _select_items(data or {}, source.get("items"), f"configmap {name}")

    def _downward_files(self, pod: Json, items: list[Json]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for item in items:
            if "fieldRef" not in item:
                raise PodSetupError(
                    "downwardAPI resourceFieldRef not supported by podrunner", permanent=True
                )
            files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"]).encode()
        return files

    def _projected_files(self, pod: Json, sources: list[Json]) -> dict[str, bytes]:
        namespace = pod["metadata"]["namespace"]
        files: dict[str, bytes] = {}
        for source in sources:
            if "secret" in source:
                files.update(
                    self._secret_files(
                        namespace, source["secret"].get("name", ""), source["secret"]
                    )
                )
            elif "configMap" in source:
                files.update(
                    self._configmap_files(
                        namespace, source["configMap"].get("name", ""), source["configMap"]
                    )
                )
            elif "downwardAPI" in source:
                files.update(self._downward_files(pod, source["downwardAPI"].get("items") or []))
            elif "serviceAccountToken" in source:
                token_source = source["serviceAccountToken"]
                token = self._token(
                    pod, token_source.get("audience"), token_source.get("expirationSeconds")
                )
                files[token_source["path"]] = token.encode()
            else:
                raise PodSetupError(
                    f"projected source {sorted(source)} not supported", permanent=True
                )
        return files

    def _container_env(self, pod: Json, container: Json) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                ref = source["secretRef"]
                data = self._secret_data(namespace, ref["name"], bool(ref.get("optional")))
            else:
                ref = source["configMapRef"]
                data = self._configmap_data(namespace, ref["name"], bool(ref.get("optional")))
            env.update({prefix + k: v.decode(errors="replace") for k, v in (data or {}).items()})
        for var in container.get("env") or []:
            value = self._env_value(pod, var, env)
            if value is not None:
                env[var["name"]] = value
        return env

    def _env_value(self, pod: Json, var: Json, env: dict[str, str]) -> str | None:
        if "valueFrom" not in var:
            return expand_references(var.get("value", ""), env)
        source = var["valueFrom"]
        namespace = pod["metadata"]["namespace"]
        if "fieldRef" in source:
            return field_value(pod, source["fieldRef"]["fieldPath"])
        for kind, loader in (
            ("secretKeyRef", self._secret_data),
            ("configMapKeyRef", self._configmap_data),
        ):
            if kind in source:
                ref = source[kind]
                optional = bool(ref.get("optional"))
                data = loader(namespace, ref["name"], optional)
                if data is None or ref["key"] not in data:
                    if optional:
                        return None
                    raise PodSetupError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
                return data[ref["key"]].decode(errors="replace")
        raise PodSetupError(
            f"env {var['name']}: {sorted(source)} not supported by podrunner", permanent=True
        )

    def _execute(
        self, pod: Json, state: PodState, launch: Launch, started_at: str, deadline: float | None
    ) -> None:
        with open(state.log_path, "ab") as log:
            try:
                state.process = subprocess.Popen(
                    launch.argv,
                    env=launch.env,
                    cwd=launch.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as error:
                message = f"failed to start {launch.argv[0]!r}: {error}"
                log.write(f"podrunner: {message}\n".encode())
                self._report_terminal(pod, started_at, 128, "StartError", message)
                return
        self.log.info(
            "started %s/%s pid %s: %s", state.namespace, state.name, state.process.pid, launch.argv
        )
        self._report_running(pod, started_at, state.process.pid)
        exit_code = self._supervise(pod, state, deadline)
        if state.kill_reason in ("Deleted", "Stopped"):
            self._finish_killed(pod, state)
            return
        message = self._termination_message(pod, launch.termination_file, state, exit_code)
        if state.kill_reason == "DeadlineExceeded":
            self._report_terminal(
                pod,
                started_at,
                exit_code,
                "Error",
                message or DEADLINE_MESSAGE,
                pod_reason="DeadlineExceeded",
                pod_message=DEADLINE_MESSAGE,
            )
            return
        reason = "Completed" if exit_code == 0 else "Error"
        self._report_terminal(pod, started_at, exit_code, reason, message)

    def _supervise(self, pod: Json, state: PodState, deadline: float | None) -> int:
        process = state.process
        assert process is not None
        while process.poll() is None:
            if state.kill_reason is None and self._stopping.is_set():
                state.kill_reason = "Stopped"
            if state.kill_reason is None and deadline is not None and time.time() > deadline:
                state.kill_reason = "DeadlineExceeded"
            if state.kill_reason is not None:
                self._kill(process, self._grace(pod, state.kill_reason))
                break
            state.wake.wait(0.1)
        code = process.wait()
        self.log.info("pod %s/%s exited %s", state.namespace, state.name, code)
        return 128 - code if code < 0 else code

    def _grace(self, pod: Json, reason: str) -> float:
        if reason == "Stopped":
            return 2.0
        seconds = pod["metadata"].get("deletionGracePeriodSeconds")
        if seconds is None:
            seconds = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return min(float(seconds), self.max_grace_seconds)

    def _kill(self, process: subprocess.Popen[bytes], grace: float) -> None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()

    def _termination_message(self, pod: Json, path: Path, state: PodState, exit_code: int) -> str:
        try:
            data = path.read_bytes()[:MAX_TERMINATION_MESSAGE]
        except OSError:
            data = b""
        container = pod["spec"]["containers"][0]
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not data and fallback and exit_code != 0:
            lines = state.log_path.read_bytes().splitlines()[-FALLBACK_LOG_LINES:]
            data = b"\n".join(lines)[-MAX_TERMINATION_MESSAGE:]
        return data.decode(errors="replace")

    def _finish_killed(self, pod: Json, state: PodState) -> None:
        if state.kill_reason == "Deleted":
            self._force_delete(pod)

    def _container_status(
        self, pod: Json, state: Json, ready: bool, started: bool, container_id: str | None = None
    ) -> Json:
        container = pod["spec"]["containers"][0]
        status: Json = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": f"podrunner://{container.get('image', '')}",
            "ready": ready,
            "started": started,
            "restartCount": 0,
            "state": state,
        }
        if container_id:
            status["containerID"] = container_id
        return status

    def _patch_status(self, pod: Json, status: Json) -> None:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}
            )
        except ApiException as error:
            if error.status != 404:
                self.log.warning(
                    "status update for %s/%s failed: %s %s",
                    meta["namespace"],
                    meta["name"],
                    error.status,
                    error.body,
                )

    def _report_waiting(self, pod: Json, started_at: str, reason: str, message: str) -> None:
        waiting = {"waiting": {"reason": reason, "message": message}}
        self._patch_status(
            pod,
            {
                "phase": "Pending",
                "startTime": started_at,
                "conditions": _conditions(started_at, ready=False, reason="ContainersNotReady"),
                "containerStatuses": [self._container_status(pod, waiting, False, False)],
            },
        )

    def _report_running(self, pod: Json, started_at: str, pid: int) -> None:
        running = {"running": {"startedAt": started_at}}
        self._patch_status(
            pod,
            {
                "phase": "Running",
                "startTime": started_at,
                "conditions": _conditions(started_at, ready=True),
                "containerStatuses": [
                    self._container_status(pod, running, True, True, f"podrunner://{pid}")
                ],
            },
        )

    def _report_terminal(
        self,
        pod: Json,
        started_at: str,
        exit_code: int,
        reason: str,
        message: str,
        pod_reason: str | None = None,
        pod_message: str | None = None,
    ) -> None:
        terminated: Json = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": now_rfc3339(),
        }
        if message:
            terminated["message"] = message
        status: Json = {
            "phase": "Succeeded" if exit_code == 0 and pod_reason is None else "Failed",
            "startTime": started_at,
            "conditions": _conditions(started_at, ready=False, reason="PodCompleted"),
            "containerStatuses": [
                self._container_status(pod, {"terminated": terminated}, False, False)
            ],
        }
        if pod_reason:
            status["reason"] = pod_reason
            status["message"] = pod_message or message
        self._patch_status(pod, status)
        self.log.info(
            "pod %s/%s -> %s (exit %s)",
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            status["phase"],
            exit_code,
        )


def _conditions(at: str, ready: bool, reason: str | None = None) -> list[Json]:
    def condition(kind: str, value: bool) -> Json:
        result: Json = {
            "type": kind,
            "status": "True" if value else "False",
            "lastTransitionTime": at,
            "lastProbeTime": None,
        }
        if not value and reason:
            result["reason"] = reason
        return result

    return [
        condition("PodScheduled", True),
        condition("Initialized", True),
        condition("PodReadyToStartContainers", True),
        condition("ContainersReady", ready),
        condition("Ready", ready),
    ]


def field_value(pod: Json, path: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", NODE_NAME),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise PodSetupError(f"fieldRef {path} not supported by podrunner", permanent=True)


def _select_items(data: dict[str, bytes], items: list[Json] | None, what: str) -> dict[str, bytes]:
    if not items:
        return dict(data)
    selected: dict[str, bytes] = {}
    for item in items:
        if item["key"] not in data:
            raise PodSetupError(f"{what} has no key {item['key']}")
        selected[item["path"]] = data[item["key"]]
    return selected


def _write_files(target: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _path_with_interpreter_dir(path: str) -> str:
    interpreter_dir = str(Path(sys.executable).parent)
    entries = path.split(os.pathsep)
    return path if interpreter_dir in entries else os.pathsep.join([interpreter_dir, *entries])


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
