"""The demo's scenario driven directly: what the sandbox apps hold afterwards."""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from pathlib import Path

from datasync.demo import scenario
from datasync.demo.sample import (
    INVALID_EMAIL,
    LIFECYCLE_TO_STATUS,
    NO_EMAIL,
    NO_LAST_NAME,
)
from datasync.demo.scenario import DemoScenario
from tests.demo.expected import in_scope


async def test_sandboxes_hold_the_synced_records(tmp_path: Path) -> None:
    async with DemoScenario("small", tmp_path) as demo:
        first = await demo.sync("first")
        assert first.summary.result == "PartiallySucceeded"  # the sample's bad records
        salesforce = demo.salesforce_ids()
        hubspot = demo.hubspot_ids()
        for contact in demo.sample.hubspot:
            email = (contact.email or "").lower()
            clean = not contact.tags & {NO_EMAIL, INVALID_EMAIL, NO_LAST_NAME}
            if contact.overlap:
                assert email in salesforce
            elif in_scope(contact) and clean:
                assert email in salesforce, contact.key  # created in Salesforce
            elif email:
                assert email not in salesforce, contact.key  # stayed in HubSpot
        for contact in demo.sample.salesforce:
            email = (contact.email or "").lower()
            if contact.tags & {NO_EMAIL, INVALID_EMAIL}:
                assert email not in hubspot
            else:
                assert email in hubspot, contact.key  # created in (or matched from) HubSpot

        # A value map at work: HubSpot's lifecycle stage arrives as the Salesforce label.
        by_email = {str(r["Email"]).lower(): r for r in demo.salesforce.records() if r.get("Email")}
        created = [
            c for c in demo.sample.hubspot if not c.overlap and (c.email or "").lower() in by_email
        ]
        assert created
        for contact in created:
            row = by_email[(contact.email or "").lower()]
            assert row["Status__c"] == LIFECYCLE_TO_STATUS[contact.fields["lifecyclestage"]]

        await demo.sync("quiet")
        edits = await demo.edit_both_apps()
        third = await demo.sync("after edits")
        assert third.summary.records.toDestination.read < first.summary.records.toDestination.read
        for outcome in demo.outcomes():
            edit = outcome.edit
            assert outcome.in_step, edit.key
            assert outcome.winner == edit.expected, (edit.kind, edit.why)
            winner_value = edit.values[edit.expected or "hubspot"]
            row = demo.salesforce.get(edit.salesforce_id) or {}
            assert str(row.get(edit.pair.salesforce) or "") == winner_value
        # The staged order is exact: the expected winner's edit is 1 ms later.
        conflicts = [edit for edit in edits if edit.kind == "conflict"]
        assert {edit.expected for edit in conflicts} == {"hubspot", "salesforce"}
        for edit in conflicts:
            loser = "hubspot" if edit.expected == "salesforce" else "salesforce"
            assert edit.expected is not None
            assert edit.edits[edit.expected] - edit.edits[loser] == timedelta(milliseconds=1)
        ties = [edit for edit in edits if edit.kind == "tie"]
        assert ties and all(edit.expected == "salesforce" for edit in ties)  # the SoR
        assert len({edit.edits["hubspot"] for edit in ties}) == len(ties)
        assert all(edit.edits["hubspot"] == edit.edits["salesforce"] for edit in ties)


async def test_shown_manifests_are_valid_and_hide_secrets(tmp_path: Path) -> None:
    from datasync.api.validate import collect_secrets, load_documents, validate_connection

    async with DemoScenario("small", tmp_path) as demo:
        shown = demo.manifests_yaml()
        revealed = demo.manifests_yaml(reveal=True)
        credentials = demo.secrets()
    documents = load_documents(revealed)
    connection = next(d for d in documents if d["kind"] == "DataSyncConnection")
    assert validate_connection(connection, collect_secrets(documents)) == []
    for data in credentials.values():
        for value in data.values():
            assert value not in shown and value in revealed


def test_the_scenario_uses_only_the_sandboxes_public_api() -> None:
    source = inspect.getsource(scenario)
    assert re.findall(r"\.(?:hubspot|salesforce)\._\w+", source) == []
