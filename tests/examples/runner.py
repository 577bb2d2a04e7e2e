"""Load an example folder, repoint it at local stand-ins, and run `datasync sync` on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datasync.http import ALLOW_LOCAL_ENV

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DATASYNC = str(Path(sys.executable).with_name("datasync"))
PLACEHOLDER = "REPLACE_ME"


def example(folder: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The example's DataSyncConnection and its Secrets, as written in the repository."""
    root = EXAMPLES / folder
    (connection,) = [d for d in yaml.safe_load_all((root / "connection.yaml").read_text()) if d]
    secrets = [d for d in yaml.safe_load_all((root / "secrets.yaml").read_text()) if d]
    return connection, secrets


def repoint_secrets(
    secrets: list[dict[str, Any]], values: Mapping[str, Mapping[str, str]]
) -> list[dict[str, Any]]:
    """Fill each Secret's placeholder keys from `values[secret name]`; every key the example
    has must be filled and no new key is added (the example's key set stays)."""
    filled = []
    for secret in secrets:
        name = secret["metadata"]["name"]
        data = dict(secret["stringData"])
        replacement = values[name]
        assert set(replacement) == set(data), (name, sorted(data), sorted(replacement))
        for key in data:
            assert PLACEHOLDER in data[key], (name, key)
            data[key] = replacement[key]
        filled.append({**secret, "stringData": data})
    return filled


@dataclass
class Sync:
    """`datasync sync` on manifests written to `workdir`, as a real subprocess."""

    workdir: Path
    connection: dict[str, Any]
    secrets: list[dict[str, Any]]

    def __post_init__(self) -> None:
        self.connection_file = self.workdir / "connection.yaml"
        self.connection_file.write_text(yaml.safe_dump(self.connection, sort_keys=False))
        self.secrets_file = self.workdir / "secrets.yaml"
        self.secrets_file.write_text(yaml.safe_dump_all(self.secrets, sort_keys=False))
        self.state = f"sqlite:///{self.workdir}/state.sqlite3"

    def run(self) -> tuple[int, dict[str, Any], str]:
        """Exit code, the parsed SyncSummary, and stdout as printed."""
        result = subprocess.run(
            [
                DATASYNC,
                "sync",
                "-f",
                str(self.connection_file),
                "--secrets",
                str(self.secrets_file),
                "--state",
                self.state,
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, ALLOW_LOCAL_ENV: "true"},
        )
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stdout.strip(), result.stderr[-3000:]
        summary: dict[str, Any] = json.loads(result.stdout)
        return result.returncode, summary, result.stdout


def find_leaks(text: str, values: list[str], keep: Callable[[str], bool] = bool) -> list[str]:
    """The seeded values that appear in `text` (case-insensitive)."""
    lowered = text.lower()
    return sorted({value for value in values if keep(value) and value.lower() in lowered})
