"""`datasync sync` end to end FROM THE EXAMPLES (issue 5): examples/hubspot-salesforce (TwoWay,
OAuth on both sides) and examples/hubspot-postgres (OneWay, private-app token and a DSN).

The example manifests are loaded as written and only repointed at local stand-ins: the
sandboxes' URLs in `settings`, their credentials in place of REPLACE_ME, a real PostgreSQL
DSN. The sync runs as a real `datasync` subprocess; the sandboxes serve from a loop thread
of this process. Expected counts are derived from the seed (tests/examples/seed.py) with
the rules of docs/engine.md, never written down as numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox
from datasync_connectors.salesforce.schema import STATUS_OPTIONS
from email_validator import EmailNotValidError, validate_email

from datasync.api.models import AuthType
from tests.examples import seed
from tests.examples.runner import Sync, example, find_leaks, repoint_secrets
from tests.examples.seed import Person
from tests.hardening.loop import LoopThread, loop_thread

pytestmark = pytest.mark.integration

PARTIALLY_SUCCEEDED = 2  # exit code (docs/engine.md, "Exit codes")
EXAMPLE_LIST = "42"


@pytest.fixture
def thread() -> Iterator[LoopThread]:
    with loop_thread() as running:
        yield running


@pytest.fixture
def hubspot(thread: LoopThread) -> Iterator[HubSpotSandbox]:
    app = HubSpotSandbox()
    thread.run(app.start())
    yield app
    thread.run(app.stop())


@pytest.fixture
def salesforce(thread: LoopThread) -> Iterator[SalesforceSandbox]:
    app = SalesforceSandbox()
    thread.run(app.start())
    yield app
    thread.run(app.stop())


def valid_email(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def status_option(stage: str, value_map: dict[str, str], options: list[str]) -> str | None:
    """The Status__c option a HubSpot stage lands on (value map, then the app's options,
    case-insensitively), or None when the mapped value is no option."""
    mapped = value_map.get(stage, stage)
    return next((option for option in options if option.lower() == mapped.lower()), None)


def load_hubspot(thread: LoopThread, hubspot: HubSpotSandbox, people: list[Person]) -> list[str]:
    """Seed HubSpot; the list members go into a list whose id is the example's "42"
    (the sandbox numbers lists 1, 2, ...: other lists are created first). Returns the
    contact ids in the order of `people`."""

    def load() -> list[str]:
        list_id = hubspot.create_list("Other list 1")
        while list_id != EXAMPLE_LIST:
            list_id = hubspot.create_list(f"Other list {int(list_id) + 1}")
        before = set(hubspot.contacts)
        hubspot.load(seed.hubspot_rows(people))
        ids = [record_id for record_id in hubspot.contacts if record_id not in before]
        hubspot.add_to_list(list_id, [i for i, p in zip(ids, people, strict=True) if p.member])
        return ids

    return thread.call(load)


# ---------------------------------------------------------------- HubSpot <-> Salesforce


@dataclass
class Expected:
    """What the first run must report, derived from the seed."""

    to_destination: Counter[str]  # created, updated, skipped, failed, read
    to_source: Counter[str]
    skipped: Counter[str]
    failures: Counter[str]
    synced_members: list[Person]  # HubSpot people that must be in Salesforce afterwards
    created_in_hubspot: list[Person]  # Salesforce people that must be in HubSpot afterwards
    out_of_scope: list[Person]  # HubSpot people that must not reach Salesforce


def expect_crm(
    hubspot_people: list[Person],
    salesforce_people: list[Person],
    value_map: dict[str, str],
    options: list[str],
) -> Expected:
    expected = Expected(Counter(), Counter(), Counter(), Counter(), [], [], [])
    in_salesforce = {p.email.lower() for p in salesforce_people if p.email}
    for person in hubspot_people:
        expected.to_destination["read"] += 1
        # Exactly one case per seeded contact, so the order of these checks is not at stake.
        skip = None
        if not person.email:
            skip = "MissingIdentity"
        elif not person.member:
            skip = "NotInList"
        elif person.opted_out:
            skip = "OptedOut"
        if skip is not None:
            expected.to_destination["skipped"] += 1
            expected.skipped[skip] += 1
            if skip != "MissingIdentity":
                expected.out_of_scope.append(person)
            continue
        failure = None
        if not valid_email(person.email):
            failure = "InvalidEmail"
        elif person.stage and status_option(person.stage, value_map, options) is None:
            # The example maps to Cold/Open/Qualified/Working; the sandbox org's picklist
            # has only "Customer" of those. Status__c is required: true -> the record fails.
            failure = "InvalidOption"
        elif not person.stage and person.email.lower() not in in_salesforce:
            # Status__c is `required: true`: a contact with no stage is not created.
            failure = "RequiredFieldMissing"
        elif person.email.lower() not in in_salesforce and not person.lastname:
            failure = "RequiredFieldMissing"  # Salesforce Contact.LastName on create
        if failure is not None:
            expected.to_destination["failed"] += 1
            expected.failures[failure] += 1
            expected.out_of_scope.append(person)
            continue
        expected.synced_members.append(person)
        if person.email.lower() in in_salesforce:
            expected.to_destination["updated"] += 1  # Title and Status__c differ
        else:
            expected.to_destination["created"] += 1
    paired = {p.email.lower() for p in expected.synced_members}
    for person in salesforce_people:
        if person.email.lower() in paired:
            continue  # met as a counterpart in the source pass: handled once per run
        expected.to_source["read"] += 1
        if not person.email:
            expected.to_source["skipped"] += 1
            expected.skipped["MissingIdentity"] += 1
        elif not valid_email(person.email):
            expected.to_source["failed"] += 1
            expected.failures["InvalidEmail"] += 1
        else:
            expected.to_source["created"] += 1
            expected.created_in_hubspot.append(person)
    return expected


def counts(summary: dict[str, Any], direction: str) -> Counter[str]:
    names = ("read", "created", "updated", "skipped", "failed")
    return Counter({name: summary["records"][direction][name] for name in names}) + Counter()


def by_email(records: list[dict[str, Any]], field: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        email = str(record.get(field) or "").strip().lower()
        if email:
            found.setdefault(email, []).append(record)
    return found


def test_hubspot_salesforce_example_syncs_the_seed(
    tmp_path: Path,
    thread: LoopThread,
    hubspot: HubSpotSandbox,
    salesforce: SalesforceSandbox,
) -> None:
    connection, secrets = example("hubspot-salesforce")
    spec = connection["spec"]
    assert spec["inclusionList"]["list"] == EXAMPLE_LIST
    spec["source"]["settings"] = {**spec["source"]["settings"], **hubspot.connector_settings()}
    spec["destination"]["settings"] = {
        **spec["destination"]["settings"],
        **salesforce.connector_settings(),
    }
    secrets = repoint_secrets(
        secrets,
        {
            spec["source"]["auth"]["secretRef"]["name"]: hubspot.credentials(AuthType.OAUTH),
            spec["destination"]["auth"]["secretRef"]["name"]: salesforce.credentials(
                AuthType.OAUTH
            ),
        },
    )
    (status_mapping,) = [m for m in spec["mappings"]["fields"] if m["destination"] == "Status__c"]
    assert status_mapping["required"] is True
    value_map: dict[str, str] = status_mapping["values"]
    options = list(STATUS_OPTIONS)  # the sandbox org's Status__c picklist

    hubspot_people = seed.hubspot_people()
    salesforce_people = seed.salesforce_people(hubspot_people)
    hubspot_ids = load_hubspot(thread, hubspot, hubspot_people)
    thread.call(lambda: salesforce.load(seed.salesforce_rows(salesforce_people)))
    expected = expect_crm(hubspot_people, salesforce_people, value_map, options)
    # The seed really holds every case of the issue.
    assert expected.skipped.keys() == {"MissingIdentity", "NotInList", "OptedOut"}
    assert expected.failures.keys() == {"InvalidEmail", "InvalidOption", "RequiredFieldMissing"}
    assert expected.created_in_hubspot and expected.to_destination["updated"]

    sync = Sync(tmp_path, connection, secrets)
    code, summary, stdout = sync.run()

    assert code == PARTIALLY_SUCCEEDED, summary
    assert summary["result"] == "PartiallySucceeded"
    assert counts(summary, "toDestination") == expected.to_destination, summary["records"]
    assert counts(summary, "toSource") == expected.to_source, summary["records"]
    assert Counter(summary["skipped"]) == expected.skipped
    assert summary["failures"]["total"] == sum(expected.failures.values())
    assert Counter(summary["failures"]["byReason"]) == expected.failures
    health = summary["health"]
    assert health["inSync"] == (len(expected.synced_members) + len(expected.created_in_hubspot))
    assert Counter(health["excluded"]) == expected.skipped
    assert Counter(health["failing"]) == expected.failures

    # Samples: record ids only, never an email or a field value.
    samples = summary["failures"]["samples"]
    assert 0 < len(samples) <= 20
    salesforce_ids = {record["Id"] for record in thread.call(salesforce.records)}
    for sample in samples:
        assert sample["app"] in ("source", "destination")
        known = hubspot_ids if sample["app"] == "source" else salesforce_ids
        assert sample["recordId"] in known, sample
    seeded_values = [
        value
        for person in [*hubspot_people, *salesforce_people]
        for value in (person.email, person.lastname, person.firstname)
    ]
    assert find_leaks(stdout, seeded_values, keep=lambda v: len(v) > 4) == []

    # Salesforce holds every synced member with the mapped fields, and nothing out of scope.
    salesforce_records = by_email(thread.call(salesforce.records), "Email")
    assert [e for e, found in salesforce_records.items() if len(found) > 1] == []
    for person in expected.synced_members:
        (record,) = salesforce_records[person.email.lower()]
        assert (record["FirstName"], record["LastName"], record["Title"]) == (
            person.firstname,
            person.lastname,
            person.jobtitle,
        )
        assert record["Status__c"] == (
            status_option(person.stage, value_map, options) if person.stage else None
        )
    for person in expected.out_of_scope:
        assert person.email.lower() not in salesforce_records, person.kind
    seeded_in_salesforce = {p.email.lower() for p in salesforce_people if p.email}
    assert set(salesforce_records) == seeded_in_salesforce | {
        p.email.lower() for p in expected.synced_members
    }

    # HubSpot holds the Salesforce-only contacts (not added to the list), no duplicate.
    hubspot_contacts = by_email([r["properties"] for r in thread.call(hubspot.records)], "email")
    assert [e for e, found in hubspot_contacts.items() if len(found) > 1] == []
    for person in expected.created_in_hubspot:
        (properties,) = hubspot_contacts[person.email.lower()]
        assert (properties["firstname"], properties["lastname"], properties["jobtitle"]) == (
            person.firstname,
            person.lastname,
            person.jobtitle,
        )
    assert len(thread.call(lambda: hubspot.contacts)) == len(hubspot_people) + len(
        expected.created_in_hubspot
    )
    members = thread.call(lambda: set(hubspot.lists[EXAMPLE_LIST].members))
    assert members == {i for i, p in zip(hubspot_ids, hubspot_people, strict=True) if p.member}

    # A second run with no edits writes nothing, and the same records still fail.
    before = (thread.call(hubspot.records), thread.call(salesforce.records))
    second_code, second, _ = sync.run()
    assert second_code == code
    for direction in ("toDestination", "toSource"):
        assert second["records"][direction]["created"] == 0, second["records"]
        assert second["records"][direction]["updated"] == 0, second["records"]
    assert Counter(second["failures"]["byReason"]) == expected.failures
    # The engine's own writes read back are `unchanged`, not skips, also for the contacts
    # it created in HubSpot outside the list; a run with no edits leaves health as it was
    # (docs/engine.md, "Inclusion list and filters").
    assert Counter(second["skipped"]) == expected.skipped
    assert second["health"] == health
    assert (thread.call(hubspot.records), thread.call(salesforce.records)) == before


# ---------------------------------------------------------------- HubSpot -> PostgreSQL


def test_hubspot_postgres_example_copies_the_seed(
    tmp_path: Path, thread: LoopThread, hubspot: HubSpotSandbox, postgres_dsn: str
) -> None:
    connection, secrets = example("hubspot-postgres")
    spec = connection["spec"]
    # The example sets no HubSpot settings (the default API host): point it at the sandbox.
    spec["source"]["settings"] = {
        **spec["source"].get("settings", {}),
        **hubspot.connector_settings(),
    }
    table = spec["destination"]["settings"]["table"]
    schema_name, table_name = table.split(".")
    secrets = repoint_secrets(
        secrets,
        {
            spec["source"]["auth"]["secretRef"]["name"]: hubspot.credentials(
                AuthType.APP_PARAMETERS
            ),
            spec["destination"]["auth"]["secretRef"]["name"]: {"dsn": postgres_dsn},
        },
    )
    people = seed.hubspot_people()
    hubspot_ids = load_hubspot(thread, hubspot, people)
    # createTable creates the table, not its schema: a warehouse has the schema already.
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema_name}"')

    # No inclusion list, no filter here: everyone with an email leaves HubSpot.
    copied = [p for p in people if p.email and valid_email(p.email)]
    invalid = [p for p in people if p.email and not valid_email(p.email)]
    missing = [p for p in people if not p.email]
    assert copied and invalid and missing

    sync = Sync(tmp_path, connection, secrets)
    code, summary, stdout = sync.run()
    assert code == PARTIALLY_SUCCEEDED, summary
    records = summary["records"]["toDestination"]
    assert (records["read"], records["created"], records["updated"]) == (
        len(people),
        len(copied),
        0,
    )
    assert (records["skipped"], records["failed"]) == (len(missing), len(invalid))
    assert summary["records"]["toSource"]["created"] == 0
    assert summary["skipped"] == {"MissingIdentity": len(missing)}
    assert summary["failures"]["byReason"] == {"InvalidEmail": len(invalid)}
    assert summary["health"]["inSync"] == len(copied)
    assert {s["recordId"] for s in summary["failures"]["samples"]} <= set(hubspot_ids)
    assert find_leaks(stdout, [p.email for p in people], keep=lambda v: len(v) > 4) == []

    query = (
        f"SELECT email, first_name, last_name, job_title, lifecycle_stage, email_opt_out "
        f'FROM "{schema_name}"."{table_name}" ORDER BY email'
    )
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(query).fetchall()
    assert rows == sorted(
        (
            p.email.lower(),
            p.firstname,
            p.lastname or None,
            p.jobtitle,
            p.stage or None,
            p.opted_out,
        )
        for p in copied
    )

    second_code, second, _ = sync.run()
    assert second_code == code
    assert second["records"]["toDestination"]["created"] == 0
    assert second["records"]["toDestination"]["updated"] == 0
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(query).fetchall() == rows
