"""Shared helpers of the shipping tests: the pinned helm build, chart rendering, metric names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import MissingBinariesError, check_binaries, default_bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "datasync"
FULL_VALUES = Path(__file__).resolve().parent / "values-full.yaml"

# Needed by DatasyncSyncStale and the dashboard; not yet exported by the operator.
SCHEDULE_INTERVAL_METRIC = "datasync_schedule_interval_seconds"


def operator_metrics() -> frozenset[str]:
    """The series names the operator really exports (its prometheus_client registry)."""
    from datasync_operator.metrics import REGISTRY

    names = set()
    for family in REGISTRY.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return frozenset(names)


def cluster_binary(name: str) -> Path:
    """A binary of the pinned control-plane build (tests/cluster/build.sh); fail, never skip."""
    try:
        return check_binaries(default_bin_dir())[name]
    except MissingBinariesError as error:
        pytest.fail(f"{name} is needed by tests/ship: {error}", pytrace=False)


def helm_env() -> dict[str, str]:
    # Keep helm's caches and config out of $HOME so parallel runs cannot disturb each other.
    env = dict(os.environ)
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"datasync-ship-helm-{os.getuid()}"
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(base / sub)
    return env


def helm(
    *args: str, check: bool = True, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(cluster_binary("helm")), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, env=helm_env(), timeout=120)
    if check and result.returncode != 0:
        pytest.fail(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}", pytrace=False
        )
    return result


def set_args(values: Mapping[str, str] | None) -> list[str]:
    return [arg for key, value in (values or {}).items() for arg in ("--set", f"{key}={value}")]


def render(
    *,
    release: str = "ds",
    namespace: str = "datasync-system",
    values_files: Iterable[Path] = (),
    values: Mapping[str, str] | None = None,
    show_hooks: bool = True,
) -> list[dict[str, Any]]:
    """`helm template` the chart; returns the non-empty documents."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    args += set_args(values)
    if not show_hooks:
        args.append("--skip-tests")
    output = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(documents: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def one(documents: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(documents, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def venv_script(name: str) -> Path:
    """A console script of the project's virtual environment (the one running pytest)."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{path} is missing: run `uv sync`"
    return path


def tool(name: str, install_hint: str) -> str:
    """A lint tool from PATH or the project's virtual environment; fail with how to get it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"`{name}` is not installed; {install_hint}", pytrace=False)
    return found


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run deploy/argocd/health.lua as Argo CD does: `obj` global in, `hs` table out."""
    import lupa

    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((REPO / "deploy" / "argocd" / "health.lua").read_text())
    return dict(result.items())
