"""What `datasync demo` prints: the sample, the edits and their outcomes, the costs.

Record ids only; never an email or a field value.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from datasync.api.models import SyncSummary
from datasync.demo.sample import (
    CASE_DIFFERS,
    INVALID_EMAIL,
    LIST_NAME,
    NO_EMAIL,
    NO_LAST_NAME,
    NOT_IN_LIST,
    OPTED_OUT,
    VALUES_DIFFER,
    Sample,
)
from datasync.demo.scenario import DemoScenario, Outcome, RunReport

APPS = {"hubspot": "HubSpot", "salesforce": "Salesforce"}

# What each reason means, in the words of the seed guide's checklist.
REASONS = {
    "MissingIdentity": "no email: cannot be matched or created (checklist: do the contacts "
    "have email addresses?)",
    "NotInList": f"not a member of the inclusion list {LIST_NAME!r} (checklist: is the list "
    "criteria right?)",
    "OptedOut": "opted out of email, kept out by spec.filters (checklist: opt-in status)",
    "InvalidEmail": "the email is not a valid address (checklist: formatting restrictions)",
    "RequiredFieldMissing": "Salesforce requires LastName to create a contact (checklist: "
    "mandatory fields)",
    "DuplicateIdentity": "another record on the same side has the same email",
}


def sample_table(sample: Sample) -> Table:
    table = Table(title="The sample", title_justify="left")
    table.add_column("Contacts")
    table.add_column("HubSpot", justify="right")
    table.add_column("Salesforce", justify="right")
    size = sample.size
    rows: list[tuple[str, Any, Any]] = [
        ("in the app", size.hubspot, size.salesforce),
        ("the same people in both apps (matched by email)", size.overlap, size.overlap),
        ("  ... email in different letter case", "", sample.count("salesforce", CASE_DIFFERS)),
        (
            "  ... different job title before the first sync",
            "",
            sample.count("salesforce", VALUES_DIFFER),
        ),
        (
            "without an email",
            sample.count("hubspot", NO_EMAIL),
            sample.count("salesforce", NO_EMAIL),
        ),
        (
            "with an invalid email",
            sample.count("hubspot", INVALID_EMAIL),
            sample.count("salesforce", INVALID_EMAIL),
        ),
        (
            "without a last name (Salesforce requires LastName)",
            sample.count("hubspot", NO_LAST_NAME),
            "",
        ),
        (f"not in the list {LIST_NAME!r}", sample.count("hubspot", NOT_IN_LIST), ""),
        ("opted out of email (hs_email_optout)", sample.count("hubspot", OPTED_OUT), ""),
    ]
    for label, hubspot, salesforce in rows:
        table.add_row(label, str(hubspot), str(salesforce))
    return table


def reasons_table(summary: SyncSummary) -> Table | None:
    reasons = {**summary.skipped, **summary.failures.byReason}
    if not reasons:
        return None
    table = Table(title="Why records were skipped or failed", title_justify="left")
    table.add_column("Reason")
    table.add_column("Records", justify="right")
    table.add_column("Meaning")
    for reason, count in reasons.items():
        kind = "failed" if reason in summary.failures.byReason else "skipped"
        table.add_row(f"{reason} ({kind})", str(count), REASONS.get(reason, ""))
    return table


def written(summary: SyncSummary) -> int:
    records = summary.records
    return sum(
        counts.created + counts.updated for counts in (records.toDestination, records.toSource)
    )


def read(summary: SyncSummary) -> int:
    return summary.records.toDestination.read + summary.records.toSource.read


def cost_table(runs: list[RunReport]) -> Table:
    table = Table(title="Cost follows changes", title_justify="left")
    for column in (
        "Run",
        "Records read",
        "Records written",
        "HubSpot API calls",
        "Salesforce API calls",
        "Seconds",
    ):
        table.add_column(column, justify="left" if column == "Run" else "right")
    for run in runs:
        calls = run.summary.apiCalls
        table.add_row(
            run.label,
            str(read(run.summary)),
            str(written(run.summary)),
            str(calls.get("source", 0)),
            str(calls.get("destination", 0)),
            f"{run.seconds:.1f}",
        )
    return table


def outcome_rows(outcomes: list[Outcome]) -> list[dict[str, str]]:
    rows = []
    for outcome in outcomes:
        edit = outcome.edit
        if edit.kind == "joined-list":
            edited = "HubSpot list membership"
        elif edit.both:
            first = min(edit.edits, key=lambda app: edit.edits[app])
            second = max(edit.edits, key=lambda app: edit.edits[app])
            if edit.edits[first] == edit.edits[second]:
                edited = f"both, same moment {_clock(edit.edits[first])}"
            else:
                edited = (
                    f"{APPS[first]} {_clock(edit.edits[first])}, "
                    f"then {APPS[second]} {_clock(edit.edits[second])}"
                )
        else:
            app = next(iter(edit.edits))
            edited = f"{APPS[app]} {_clock(edit.edits[app])}"
        if edit.kind == "joined-list":
            result = "created in Salesforce" if outcome.in_step else "NOT created"
        elif outcome.in_step and outcome.winner:
            result = f"{APPS[outcome.winner]}'s value in both apps"
        elif outcome.in_step:
            result = "in step"
        else:
            result = "NOT in step"
        rows.append(
            {
                "kind": edit.kind,
                "hubspotId": edit.hubspot_id,
                "salesforceId": edit.salesforce_id,
                "field": "whole record"
                if edit.kind == "joined-list"
                else f"{edit.pair.hubspot} / {edit.pair.salesforce}",
                "edited": edited,
                "result": result,
                "why": edit.why,
                "asExpected": "yes" if outcome.as_expected else "no",
            }
        )
    return rows


def outcomes_table(outcomes: list[Outcome], plain_examples: int = 2) -> Table:
    table = Table(title="What happened to each edit, and why", title_justify="left")
    for column in ("HubSpot id", "Salesforce id", "Field", "Edited", "Now", "Why", "OK"):
        table.add_column(column, overflow="fold")
    shown: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    for row in outcome_rows(outcomes):
        group = f"{row['kind']}:{row['why']}"
        if row["kind"] == "edit" and shown[group] >= plain_examples and row["asExpected"] == "yes":
            hidden[row["why"]] += 1
            continue
        shown[group] += 1
        table.add_row(
            row["hubspotId"],
            row["salesforceId"] or "-",
            row["field"],
            row["edited"],
            row["result"],
            row["why"],
            row["asExpected"],
        )
    for why, count in hidden.items():
        table.add_row("...", "...", "", "", "", f"{count} more: {why}", "yes")
    return table


def _clock(moment: Any) -> str:
    return str(moment.strftime("%H:%M:%S.")) + f"{moment.microsecond // 1000:03d}"


def json_document(demo: DemoScenario, outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    return {
        "size": demo.size,
        "sample": {
            "hubspot": demo.sample.size.hubspot,
            "salesforce": demo.sample.size.salesforce,
            "overlap": demo.sample.size.overlap,
        },
        "sandboxes": {"hubspot": demo.hubspot.base_url, "salesforce": demo.salesforce.base_url},
        "connection": demo.manifest,
        "runs": [
            {
                "label": run.label,
                "seconds": round(run.seconds, 3),
                "summary": run.summary.model_dump(mode="json", exclude_none=True),
            }
            for run in demo.runs
        ],
        "edits": outcome_rows(outcomes),
        "seconds": round(seconds, 3),
    }


def print_table(console: Console, table: Table | None) -> None:
    if table is not None:
        console.print(table)
