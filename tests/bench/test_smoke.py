"""The benchmark runner runs and writes its figures (structure only: benchmarks are not
tests, so nothing here looks at a time or a rate)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_scenario_1_small_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "figures.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scenario",
            "1",
            "--size",
            "200",
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["machine"]["cpus"] >= 1
    [scenario] = report["scenarios"]
    assert scenario["number"] == 1 and scenario["error"] is None
    [row] = scenario["rows"]
    figures = row["figures"]
    assert figures["recordsPerSide"] == 200
    assert figures["exitCode"] in (0, 2)  # the sample's messy records make it partial
    assert figures["result"] in ("Succeeded", "PartiallySucceeded")
    # Calls are counted on the apps' side and agree with the sync's own summary.
    assert figures["requestsServed"]["hubspot"] == figures["apiCallsSummary"]["source"]
    assert figures["requestsServed"]["salesforce"] == figures["apiCallsSummary"]["destination"]
    assert figures["apiCallsMinimum"]["total"] > 0
    assert figures["peakRssMiB"] > 0
    assert "Datasync benchmarks" in completed.stdout
