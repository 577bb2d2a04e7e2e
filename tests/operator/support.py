"""Helpers for the operator tests: the CRD, the operator as a real subprocess, sandbox apps
on a background event loop, and polling the cluster."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.controlplane import ControlPlane

GROUP, VERSION, PLURAL = "datasync.io", "v1alpha1", "datasyncconnections"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "condition",
    interval: float = 0.25,
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except ApiException as error:
            if error.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_counts(plane: ControlPlane) -> Counter[tuple[str, str]]:
    """Requests the API server has served, from its own `apiserver_request_total`, summed
    by (verb, resource[/subresource]); verbs as the metric names them (GET, LIST, POST,
    PUT, PATCH, WATCH ...)."""
    status, body = plane.request("/metrics")
    if status != 200:
        raise RuntimeError(f"apiserver /metrics answered {status}")
    counts: Counter[tuple[str, str]] = Counter()
    for line in body.decode().splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(match.group("value")))
    return counts


def crd_manifest() -> dict[str, Any]:
    path = REPO_ROOT / "crds" / "datasyncconnections.yaml"
    if path.exists():
        return dict(yaml.safe_load(path.read_text()))
    output = subprocess.run(
        [str(Path(sys.executable).parent / "datasync"), "crd"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return dict(yaml.safe_load(output.stdout))


def install_crd(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    manifest = crd_manifest()
    try:
        extensions.create_custom_resource_definition(manifest)
    except ApiException as error:
        if error.status != 409:
            raise
        current = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(manifest["metadata"]["name"], manifest)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
        )

    wait_for(established, 30, "the CRD to be established")
    # The API server serves a new CRD a moment after Established; wait until it lists.
    custom = client.CustomObjectsApi(api)
    wait_for(
        lambda: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL) is not None,
        30,
        "the CRD to be served",
    )


class OperatorProcess:
    """`datasync operator` as a subprocess, so that restarts are real."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str],
        log_path: Path,
        extra_args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        command = [
            str(Path(sys.executable).parent / "datasync"),
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            "--allow-sandbox-urls",
            "--sync-image",
            "datasync:test",
            *[arg for ns in self.namespaces for arg in ("--namespace", ns)],
            *self.extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self._healthy():
                return self
            time.sleep(0.2)
        raise AssertionError(f"operator not healthy after {timeout}s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"operator ignored SIGTERM:\n{self.log_tail()}") from None

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class BackgroundLoop:
    """An event loop in a thread, to serve sandbox apps while tests block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def connection(
    name: str, source: dict[str, Any], destination: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DataSyncConnection",
        "metadata": {"name": name},
        "spec": {
            "direction": "TwoWay",
            "schedule": "*/30 * * * *",
            "source": source,
            "destination": destination,
            **spec,
        },
    }
    return body


def endpoint(
    app: str, auth_type: str, secret_name: str, settings: dict[str, str]
) -> dict[str, Any]:
    return {
        "app": app,
        "auth": {"type": auth_type, "secretRef": {"name": secret_name}},
        "settings": settings,
    }


class Cluster:
    """Short-hand access to the API for one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def create_secret(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(self.namespace, secret(name, data))

    def replace_secret(self, name: str, data: dict[str, str]) -> None:
        self.core.replace_namespaced_secret(name, self.namespace, secret(name, data))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, patch
            )
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        status = self.get(name).get("status") or {}
        for item in status.get("conditions") or []:
            if item.get("type") == kind:
                return dict(item)
        return None

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.condition(name, kind)
            if (
                found
                and found["status"] == status
                and (reason is None or found["reason"] == reason)
            ):
                return found
            return None

        return wait_for(
            probe,
            timeout,
            f"{kind}={status} ({reason}) on {name}; status now: {self.get(name).get('status')}",
        )

    def cron_job(self, name: str) -> Any:
        return self.batch.read_namespaced_cron_job(name, self.namespace)

    def jobs(self) -> list[Any]:
        return list(self.batch.list_namespaced_job(self.namespace).items)

    def events(self, involved: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(self.namespace).items
            if e.involved_object.name == involved
        ]

    def owned_versions(self) -> dict[str, str]:
        """kind/name -> resourceVersion of everything the operator writes here."""
        versions: dict[str, str] = {}
        for kind, items in (
            ("ServiceAccount", self.core.list_namespaced_service_account(self.namespace).items),
            ("ConfigMap", self.core.list_namespaced_config_map(self.namespace).items),
            (
                "PersistentVolumeClaim",
                self.core.list_namespaced_persistent_volume_claim(self.namespace).items,
            ),
            ("CronJob", self.batch.list_namespaced_cron_job(self.namespace).items),
            ("Job", self.batch.list_namespaced_job(self.namespace).items),
        ):
            for item in items:
                versions[f"{kind}/{item.metadata.name}"] = item.metadata.resource_version
        for item in self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL
        )["items"]:
            versions[f"DataSyncConnection/{item['metadata']['name']}"] = item["metadata"][
                "resourceVersion"
            ]
        return versions
