"""`datasync demo --keep`: the sandboxes stay up for exploration until stopped."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

DATASYNC = Path(sys.executable).parent / "datasync"


def test_keep_leaves_working_sandboxes_until_stopped() -> None:
    process = subprocess.Popen(
        [str(DATASYNC), "demo", "--size", "small", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("stringData:") and any("keep running" in seen for seen in lines):
                break
            assert time.monotonic() < deadline, "".join(lines)
        text = "".join(lines)
        salesforce = re.search(r"Salesforce: (http://127\.0\.0\.1:\d+)", text)
        assert salesforce, text
        versions = httpx.get(f"{salesforce.group(1)}/services/data/", timeout=10)
        assert versions.status_code == 200 and versions.json()
        secrets = re.search(r"Secrets:\s+(\S+)", text)
        assert secrets and "refreshToken" in Path(secrets.group(1)).read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert "Stopped; the sandboxes are gone." in rest
    assert not Path(secrets.group(1)).exists()  # the temporary directory is removed
