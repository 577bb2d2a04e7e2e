"""SIGKILL `datasync sync` at random points, many times in a row during one large sync,
rerunning after each kill: the final contents of both apps and of the state store equal
those of an uninterrupted run on identical seed data.

The sync runs as a real subprocess; the HubSpot and Salesforce sandboxes run in this
process (a loop thread), so they outlive every killed sync; the state is a SQLite file.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync.http import ALLOW_LOCAL_ENV
from tests.hardening import apps
from tests.hardening.kills import sigkill_after
from tests.hardening.loop import LoopThread, loop_thread

RECORDS_PER_SIDE = 1200
KILLS = 20
DATASYNC = str(Path(sys.executable).with_name("datasync"))


@dataclass
class World:
    """A pair of sandboxes seeded identically, and the files `datasync sync` reads."""

    thread: LoopThread
    hubspot: HubSpotSandbox
    salesforce: SalesforceSandbox
    workdir: Path

    @classmethod
    def create(cls, thread: LoopThread, workdir: Path) -> World:
        workdir.mkdir()
        hubspot, salesforce = HubSpotSandbox(), SalesforceSandbox()
        thread.run(hubspot.start())
        thread.run(salesforce.start())
        thread.call(lambda: apps.seed(hubspot, salesforce, RECORDS_PER_SIDE, random.Random(5)))
        world = cls(thread, hubspot, salesforce, workdir)
        (workdir / "connection.yaml").write_text(
            yaml.safe_dump(apps.connection(hubspot, salesforce))
        )
        secrets = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": sandbox.credentials("OAuth"),
            }
            for name, sandbox in (("hubspot", hubspot), ("salesforce", salesforce))
        ]
        (workdir / "secrets.yaml").write_text(yaml.safe_dump_all(secrets))
        return world

    def stop(self) -> None:
        self.thread.run(self.hubspot.stop())
        self.thread.run(self.salesforce.stop())

    @property
    def state(self) -> Path:
        return self.workdir / "state.sqlite3"

    def start_sync(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                DATASYNC,
                "sync",
                "-f",
                str(self.workdir / "connection.yaml"),
                "--secrets",
                str(self.workdir / "secrets.yaml"),
                "--state",
                f"sqlite://{self.state}",
                "--output",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, ALLOW_LOCAL_ENV: "true", "NO_COLOR": "1"},
        )

    def sync(self) -> dict[str, Any]:
        process = self.start_sync()
        out, _ = process.communicate(timeout=120)
        summary: dict[str, Any] = yaml.safe_load(out)
        return summary

    def contents(self) -> dict[str, Any]:
        """Both apps keyed by email, and the store's pairs and health by email."""

        def snapshot() -> dict[str, Any]:
            hubspot_emails = {
                str(r["id"]): r["properties"].get("email") for r in self.hubspot.records()
            }
            salesforce_emails = {
                str(r["Id"]): str(r.get("Email") or "").lower() for r in self.salesforce.records()
            }
            return {
                "hubspot": apps.hubspot_view(self.hubspot),
                "salesforce": apps.salesforce_view(self.salesforce),
                "ids": {"source": hubspot_emails, "destination": salesforce_emails},
            }

        seen = self.thread.call(snapshot)
        ids = seen.pop("ids")
        with sqlite3.connect(self.state) as db:
            pairs = db.execute(
                "SELECT source_id, destination_id, fingerprint FROM datasync_pairs"
            ).fetchall()
            health = db.execute("SELECT side, record_id, state, reason FROM datasync_health")
            seen["health"] = sorted(
                (side, ids[side].get(record_id), state, reason)
                for side, record_id, state, reason in health
            )
        seen["pairs"] = sorted(
            (ids["source"].get(source), ids["destination"].get(destination), fingerprint)
            for source, destination, fingerprint in pairs
        )
        return seen


@pytest.fixture
def thread() -> Iterator[LoopThread]:
    with loop_thread() as running:
        yield running


@pytest.mark.timeout(240)
def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(
    thread: LoopThread, tmp_path: Path, tally: Counter[str]
) -> None:
    reference = World.create(thread, tmp_path / "reference")
    killed = World.create(thread, tmp_path / "killed")
    try:
        started = time.monotonic()
        summary = reference.sync()
        full_run = time.monotonic() - started
        assert summary["result"] == "Succeeded", summary
        expected = reference.contents()
        assert len(expected["pairs"]) == 2 * RECORDS_PER_SIDE

        rng = random.Random(1128)
        kills = 0
        for _ in range(KILLS):
            # Anywhere from import time to the end of a full run: many land mid-write.
            kills += sigkill_after(killed.start_sync(), rng.uniform(0.2, full_run))
        tally["runs_killed"] += kills
        assert kills >= KILLS // 2, f"only {kills} runs were still going when killed"

        final = killed.sync()
        assert final["result"] == "Succeeded", final
        got = killed.contents()
        for app in ("hubspot", "salesforce"):
            lost = set(expected[app]) - set(got[app])
            tally["records_lost"] += len(lost)
            assert not lost, f"{len(lost)} records missing in {app}"
        for part in ("hubspot", "salesforce", "pairs", "health"):
            assert got[part] == expected[part], f"{part} differs from the uninterrupted run"
        assert apps.duplicates(got["hubspot"]) == [] and apps.duplicates(got["salesforce"]) == []
        # Both are settled: one more run changes nothing on either.
        for world in (reference, killed):
            again = world.sync()
            assert again["result"] == "Succeeded"
            for direction in ("toDestination", "toSource"):
                counts = again["records"][direction]
                assert counts.get("created", 0) == counts.get("updated", 0) == 0, again
        tally["records_in_killed_sync"] += 2 * RECORDS_PER_SIDE
    finally:
        reference.stop()
        killed.stop()
