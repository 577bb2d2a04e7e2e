"""hack/kind-up.sh cannot run here (no Docker engine, no kind); it is linted with shellcheck and
checked to install what the docs say it installs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.ship.tools import REPO, tool

SCRIPT = REPO / "hack" / "kind-up.sh"
SHELLCHECK_HINT = "install the Debian package: `apt-get install -y shellcheck`"


def test_shellcheck_passes() -> None:
    shellcheck = tool("shellcheck", SHELLCHECK_HINT)
    result = subprocess.run(
        [shellcheck, "--severity=style", "--external-sources", str(SCRIPT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_catches_a_bad_script(tmp_path: Path) -> None:
    shellcheck = tool("shellcheck", SHELLCHECK_HINT)
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/build\n")
    result = subprocess.run([shellcheck, str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_script_is_executable_strict_and_does_what_the_docs_say() -> None:
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    for step in (
        "kind create cluster",
        "docker build",
        "kind load docker-image",
        "helm upgrade --install datasync charts/datasync",
        "operator.allowSandboxUrls=true",
        "examples/sandbox/sandbox-apps.yaml",
        "examples/sandbox/connection.yaml",
    ):
        assert step in text.replace('"${create_args[@]}"', "create cluster"), step


def test_script_refuses_clearly_without_docker(tmp_path: Path) -> None:
    # With a PATH lacking docker/kind the script stops at its first check, naming the tool.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname",):
        found = shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run(
        [bash, str(SCRIPT)],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 1
    assert "'docker' is required on PATH" in result.stderr
