"""pytest plugin: a real control plane per session plus a pod runner.

Load with `pytest_plugins = ["tests.cluster.fixtures"]`."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.controlplane import (
    LOG_ARCHIVE,
    ControlPlane,
    ControlPlaneError,
    MissingBinariesError,
)
from tests.cluster.podrunner import DEFAULT_SELECTOR, PodRunner

KEPT_LOGS = pytest.StashKey[list[Path]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs the real control plane (tests/cluster), always run in CI"
    )
    config.stash[KEPT_LOGS] = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for path in config.stash.get(KEPT_LOGS, []):
        terminalreporter.write_line(f"test cluster logs kept in {path}")


def _remember_logs(request: pytest.FixtureRequest, path: Path | None) -> None:
    if path is not None:
        request.config.stash[KEPT_LOGS].append(path)


def _session_failed(request: pytest.FixtureRequest) -> bool:
    return bool(request.session.testsfailed)


def _start_or_explain(plane: ControlPlane, request: pytest.FixtureRequest) -> str | None:
    try:
        plane.start()
    except MissingBinariesError as error:
        return str(error)
    except ControlPlaneError as error:
        kept = plane.stop(keep_logs_in=LOG_ARCHIVE)
        _remember_logs(request, kept)
        return f"control plane failed to start: {error}\nlogs kept in {kept}"
    return None


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    plane = ControlPlane()
    problem = _start_or_explain(plane, request)
    if problem:
        pytest.fail(problem, pytrace=False)
    yield plane
    kept = plane.stop(keep_logs_in=LOG_ARCHIVE if _session_failed(request) else None)
    _remember_logs(request, kept)


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = control_plane.api_client()
    yield api
    api.close()


@pytest.fixture(scope="session")
def pod_runner_extra_env() -> dict[str, str]:
    """Extra environment for every pod process; override in a conftest to customise."""
    return {}


@pytest.fixture(scope="session")
def pod_runner(
    control_plane: ControlPlane,
    pod_runner_extra_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> Iterator[PodRunner]:
    runner = PodRunner(
        control_plane.kubeconfig,
        label_selector=DEFAULT_SELECTOR,
        extra_env=pod_runner_extra_env,
        state_dir=control_plane.work_dir / "podrunner",
    ).start()
    yield runner
    runner.stop()
    if _session_failed(request) and runner.log_root.exists():
        target = LOG_ARCHIVE / f"podrunner-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(runner.log_root, target, dirs_exist_ok=True)
        _remember_logs(request, target)


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


def wait_for_service_account(
    core: client.CoreV1Api, namespace: str, name: str = "default", timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account(name, namespace)
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    core = client.CoreV1Api(kube_api)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"datasync.test/ephemeral": "true"})
        )
    )
    wait_for_service_account(core, name)
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise
