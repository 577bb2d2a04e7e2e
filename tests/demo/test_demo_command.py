"""`datasync demo` end to end, as a user (or CI) runs it: no terminal, real sandboxes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from datasync.cli import cli
from datasync.commands.demo import run_step
from datasync.demo.sample import generate
from datasync.demo.scenario import DemoScenario
from datasync.http import ALLOW_LOCAL_ENV
from tests.demo.expected import expected_first_run


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["demo", "--size", "small", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _personal_data(output: str) -> list[str]:
    """Emails and phone numbers of the sample that appear in `output`."""
    sample = generate("small")
    found = []
    for contact in [*sample.hubspot, *sample.salesforce]:
        for key in ("email", "Email", "phone", "Phone"):
            value = contact.fields.get(key)
            if value and str(value) in output:
                found.append(key)
    return found


def test_json_output_matches_the_sample_and_the_edits() -> None:
    before = os.environ.get(ALLOW_LOCAL_ENV)
    code, output = _run("--output", "json")
    assert code == 0, output
    document: dict[str, Any] = json.loads(output)
    assert os.environ.get(ALLOW_LOCAL_ENV) == before  # allowed inside the demo only

    sample = generate("small")
    expected = expected_first_run(sample)
    first, second, third = (run["summary"] for run in document["runs"])
    assert first["skipped"]["MissingIdentity"] == expected.missing_identity
    assert first["failures"]["byReason"].get("InvalidEmail", 0) == expected.invalid_email
    assert first["failures"]["byReason"]["RequiredFieldMissing"] == (
        expected.required_field_missing
    )
    # A non-member matched in Salesforce is excluded only while its HubSpot values differ.
    assert (
        expected.not_in_list_without_match
        <= first["health"]["excluded"]["NotInList"]
        <= expected.not_in_list
    )
    assert first["health"]["excluded"]["OptedOut"] == expected.opted_out
    # Each skipped record is counted once, though both passes meet those with a match.
    assert first["skipped"]["NotInList"] == expected.not_in_list
    assert first["skipped"]["OptedOut"] == expected.opted_out
    assert sum(first["skipped"].values()) == (
        first["records"]["toDestination"]["skipped"] + first["records"]["toSource"]["skipped"]
    )
    created = first["records"]["toDestination"]["created"] + first["records"]["toSource"]["created"]
    assert created > 0
    for sample_record in first["failures"]["samples"]:
        assert sample_record["recordId"] and "@" not in sample_record["message"]

    # Nothing edited between runs 1 and 2: nothing written (no ping-pong), health as it was
    # (the contacts created in HubSpot are not list members, yet in sync).
    for direction in ("toDestination", "toSource"):
        assert second["records"][direction]["created"] == 0
        assert second["records"][direction]["updated"] == 0
    assert second["health"] == first["health"]

    # Every edit ended where the rules say, and run 3 cost less than run 1.
    edits = document["edits"]
    assert edits and all(edit["asExpected"] == "yes" for edit in edits), edits
    kinds = {edit["kind"] for edit in edits}
    assert {"edit", "conflict", "tie", "joined-list"} <= kinds
    # Cost follows changes: run 3 reads far fewer records than run 1, and run 2 (no edits)
    # makes fewer calls. (In the small sample run 1 fits in a few large pages, so its call
    # count is close to a run's fixed calls; records read is the measure that scales.)
    reads = [
        run["summary"]["records"]["toDestination"]["read"]
        + run["summary"]["records"]["toSource"]["read"]
        for run in document["runs"]
    ]
    assert reads[2] * 2 < reads[0]
    calls = [sum(run["summary"]["apiCalls"].values()) for run in document["runs"]]
    assert calls[1] < calls[0]
    assert third["records"]["toDestination"]["created"] == sum(
        1 for edit in edits if edit["kind"] == "joined-list"
    )
    assert not _personal_data(output)


def test_text_output_without_a_terminal() -> None:
    code, output = _run()
    assert code == 0, output
    for expected in (
        "Run 1: the first sync",
        "Run 3: the incremental sync",
        f"{ALLOW_LOCAL_ENV}=true is set inside this process only",
        "MissingIdentity",
        "RequiredFieldMissing",
        "What happened to each edit, and why",
        "helm install datasync charts/datasync",
        "Demo finished in",
    ):
        assert expected in output
    assert "\x1b[" not in output  # no colour codes in a pipe
    assert "<sandbox-only value" in output  # Secret values hidden without --keep
    assert not _personal_data(output)
    assert "NOT in step" not in output


async def test_a_failed_run_stops_the_demo_with_what_to_do(tmp_path: Path) -> None:
    async with DemoScenario("small", tmp_path) as demo:
        demo.salesforce.revoke_refresh_token()  # the user uninstalled the app
        with pytest.raises(click.ClickException) as caught:
            await run_step(demo, "1 first sync", "json", Console(file=io.StringIO()))
    message = caught.value.message
    assert "run '1 first sync' of the demo failed" in message
    assert "refreshToken" in message and "please report it" in message
