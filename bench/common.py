"""Shared plumbing: sandboxes on a background event loop, `datasync sync` as a measured
subprocess (its own peak RSS via wait4), the sample data, the result records."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from datasync.http import ALLOW_LOCAL_ENV

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
DATASYNC = Path(sys.executable).parent / "datasync"


class BackgroundLoop:
    """An asyncio loop in a thread: the sandboxes serve from here while the bench blocks on
    the sync subprocess, so the subprocess's peak RSS is the sync's alone."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Any, *args: Any) -> Any:
        """Run a plain function on the loop's thread (sandbox state is not thread-safe)."""

        async def wrapper() -> Any:
            return function(*args)

        return self.run(wrapper(), timeout=600)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class SyncRun:
    """One `datasync sync` subprocess, measured from outside."""

    seconds: float
    peak_rss_mib: float
    exit_code: int
    summary: dict[str, Any]
    stderr_tail: str
    cpu_seconds: float = 0.0  # user + system CPU of the sync process (load-independent-ish)
    apps_cpu_seconds: float = 0.0  # CPU of the bench process (the sandboxes) meanwhile

    @property
    def api_calls(self) -> dict[str, int]:
        return dict(self.summary.get("apiCalls") or {})

    def records(self, direction: str) -> dict[str, int]:
        return dict((self.summary.get("records") or {}).get(direction) or {})


def write_yaml(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text("---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in documents))
    return path


def secret_doc(name: str, data: dict[str, str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": dict(data),
    }


def run_sync(connection: Path, secrets: Path, state_url: str, workdir: Path, label: str) -> SyncRun:
    """`datasync sync ... --output json` in a child process; wall time, CPU time and the
    child's peak RSS (ru_maxrss from wait4, KiB on Linux)."""
    env = dict(os.environ)
    env[ALLOW_LOCAL_ENV] = "true"
    env.setdefault("NO_COLOR", "1")
    stdout_path = workdir / f"{label}.stdout.json"
    stderr_path = workdir / f"{label}.stderr.log"
    command = [
        str(DATASYNC),
        "sync",
        "-f",
        str(connection),
        "--secrets",
        str(secrets),
        "--state",
        state_url,
        "--output",
        "json",
    ]
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        apps_before = own_cpu_seconds()
        measured = measure(command, workdir / f"{label}.measure.json", out, err, env)
        apps_cpu = own_cpu_seconds() - apps_before
    text = stdout_path.read_text(errors="replace").strip()
    try:
        summary = json.loads(text.splitlines()[-1]) if text else {}
    except json.JSONDecodeError:
        summary = {}
    tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-15:])
    return SyncRun(
        measured["seconds"],
        measured["maxRssKiB"] / 1024,
        measured["exitCode"],
        summary,
        tail,
        cpu_seconds=measured["cpuSeconds"],
        apps_cpu_seconds=apps_cpu,
    )


def measure(
    command: list[str], result: Path, stdout: Any, stderr: Any, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `command` through bench.measure (see there why) and return its figures."""
    subprocess.run(
        [sys.executable, "-m", "bench.measure", str(result), "--", *command],
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    figures: dict[str, Any] = json.loads(result.read_text())
    return figures


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ceil_div(count: int, size: int) -> int:
    return math.ceil(count / size) if count > 0 else 0


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memoryGiB": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadAverageAtStart": [round(value, 2) for value in load],
    }


@dataclass
class Row:
    """One line of the printed table (and of the JSON)."""

    scenario: str
    case: str
    figures: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class ScenarioResult:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
