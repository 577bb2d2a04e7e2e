"""The demo's scenario: two sandbox apps, a first sync, edits on both sides, an
incremental sync, and what happened to each edited record (and why).

Everything here is real: the connectors talk HTTP to the sandboxes, the engine is
`datasync.engine.run_sync`, the state store is SQLite. The command (`datasync demo`)
only prints what this module does; tests drive it directly.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync import registry
from datasync.api.models import AuthType, DataSyncConnectionSpec, Side, SyncSummary
from datasync.demo import manifests
from datasync.demo.sample import (
    LIFECYCLE_TO_STATUS,
    LIST_NAME,
    NOT_IN_LIST,
    OPTED_OUT,
    PLACES,
    TITLES,
    Sample,
    SampleContact,
    generate,
)
from datasync.engine import Progress, run_sync
from datasync.http import ALLOW_LOCAL_ENV
from datasync.secrets import Secret, credentials_for
from datasync.state import open_store

App = Literal["hubspot", "salesforce"]
# Consecutive demo runs are seconds apart; the engine's default 2-minute re-read overlap
# (for app clock lag) would make the incremental run re-read the first run's records.
DEMO_OVERLAP = timedelta(0)


@dataclass(frozen=True)
class FieldPair:
    hubspot: str
    salesforce: str
    label: str


TITLE = FieldPair("jobtitle", "Title", "job title")
LIFECYCLE = FieldPair("lifecyclestage", "Status__c", "lifecycle stage")
PHONE = FieldPair("phone", "Phone", "phone")
CITY = FieldPair("city", "MailingCity", "city")


@dataclass
class Edit:
    """A user's edit of one contact (values stay here; nothing prints them)."""

    key: str
    hubspot_id: str
    salesforce_id: str
    pair: FieldPair
    edits: dict[App, datetime] = field(default_factory=dict)  # side -> when it was edited
    values: dict[App, str] = field(default_factory=dict)  # side -> value as typed there
    expected: App | None = None  # whose value should end up on both sides
    why: str = ""
    kind: str = "edit"  # edit, conflict, tie, joined-list

    @property
    def both(self) -> bool:
        return len(self.edits) == 2


@dataclass
class Outcome:
    edit: Edit
    winner: App | None  # whose value both apps hold after the incremental run
    in_step: bool

    @property
    def as_expected(self) -> bool:
        return self.in_step and self.winner == self.edit.expected


@dataclass
class RunReport:
    label: str
    summary: SyncSummary
    seconds: float


@dataclass
class EditPlan:
    one_side: int  # plain edits per side
    conflicts_salesforce_later: int
    conflicts_hubspot_later: int
    ties: int
    join_list: int


PLANS = {
    "small": EditPlan(
        one_side=5, conflicts_salesforce_later=2, conflicts_hubspot_later=1, ties=1, join_list=1
    ),
    "normal": EditPlan(
        one_side=14, conflicts_salesforce_later=3, conflicts_hubspot_later=2, ties=1, join_list=2
    ),
}


@contextmanager
def sandbox_urls_allowed() -> Iterator[None]:
    """Connectors refuse loopback URLs unless DATASYNC_ALLOW_SANDBOX_URLS is true; the demo
    allows them in this process only, for the duration of the demo."""
    previous = os.environ.get(ALLOW_LOCAL_ENV)
    os.environ[ALLOW_LOCAL_ENV] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ALLOW_LOCAL_ENV, None)
        else:
            os.environ[ALLOW_LOCAL_ENV] = previous


class DemoScenario:
    """Use as `async with DemoScenario(size, workdir) as demo:`; sandboxes stop on exit."""

    def __init__(self, size: str, workdir: Path, seed: int | None = None) -> None:
        self.size = size
        self.workdir = workdir
        self.sample: Sample = generate(size) if seed is None else generate(size, seed)
        self.plan = PLANS[size]
        self.hubspot = HubSpotSandbox()
        self.salesforce = SalesforceSandbox()
        self.state_url = f"sqlite:///{workdir.resolve() / 'state.sqlite3'}"
        self.manifest: dict[str, Any] = {}
        self.spec: DataSyncConnectionSpec | None = None
        self.runs: list[RunReport] = []
        self.edits: list[Edit] = []
        self._rng = random.Random(7)  # noqa: S311 - demo data, not security

    async def __aenter__(self) -> DemoScenario:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ setup
    async def start(self) -> None:
        await self.hubspot.start()
        await self.salesforce.start()
        self.hubspot.load(self.sample.hubspot_records())
        self.salesforce.load(self.sample.salesforce_records())
        self.manifest = manifests.connection_manifest(
            self.hubspot.connector_settings(), self.salesforce.connector_settings()
        )
        self.spec = DataSyncConnectionSpec.model_validate(self.manifest["spec"])

    async def stop(self) -> None:
        await self.hubspot.stop()
        await self.salesforce.stop()

    def secrets(self) -> dict[str, dict[str, str]]:
        return {
            manifests.HUBSPOT_SECRET: self.hubspot.credentials(AuthType.OAUTH),
            manifests.SALESFORCE_SECRET: self.salesforce.credentials(AuthType.OAUTH),
        }

    def manifests_yaml(self, *, reveal: bool = False) -> str:
        documents = [
            manifests.secret_manifest(name, data, reveal=reveal)
            for name, data in self.secrets().items()
        ]
        documents.append(self.manifest)
        return manifests.manifests_yaml(documents)

    # ------------------------------------------------------------------ syncing
    async def sync(self, label: str, progress: Progress | None = None) -> RunReport:
        """One run, exactly as `datasync sync` does it: connectors from the spec and the
        Secrets, the SQLite state store, the engine."""
        assert self.spec is not None, "start() first"
        spec = self.spec
        secrets = self.secrets()
        started = time.monotonic()
        with (
            sandbox_urls_allowed(),
            open_store(
                self.state_url, f"{manifests.NAMESPACE}/{manifests.CONNECTION_NAME}"
            ) as store,
        ):
            connectors = []
            for side, endpoint in (
                (Side.SOURCE, spec.source),
                (Side.DESTINATION, spec.destination),
            ):
                cls = registry.get(endpoint.app)
                name = endpoint.auth.secretRef.name
                credentials = credentials_for(
                    cls,
                    endpoint.auth.type,
                    Secret(name=name, data=secrets[name]),
                    f"spec.{side}.auth.secretRef",
                )
                auth_type = AuthType(endpoint.auth.type)
                connectors.append(cls(endpoint.settings, credentials, auth_type))
            async with connectors[0] as source, connectors[1] as destination:
                summary = await run_sync(
                    spec,
                    source,
                    destination,
                    store,
                    progress=progress,
                    job=label,
                    overlap=DEMO_OVERLAP,
                )
        report = RunReport(label, summary, time.monotonic() - started)
        self.runs.append(report)
        return report

    # ------------------------------------------------------------------ ids
    def hubspot_ids(self) -> dict[str, str]:
        """email -> HubSpot id."""
        return {
            str(record["properties"]["email"]).lower(): str(record["id"])
            for record in self.hubspot.records()
            if record["properties"].get("email")
        }

    def salesforce_ids(self) -> dict[str, str]:
        return {
            str(record["Email"]).strip().lower(): str(record["Id"])
            for record in self.salesforce.records()
            if record.get("Email")
        }

    def synced_people(self) -> list[tuple[SampleContact, str, str]]:
        """Overlapping contacts in scope (list member, not opted out), with both ids."""
        hubspot_ids, salesforce_ids = self.hubspot_ids(), self.salesforce_ids()
        found = []
        for contact in self.sample.hubspot:
            if not contact.overlap or contact.tags & {NOT_IN_LIST, OPTED_OUT}:
                continue
            email = (contact.email or "").lower()
            if email in hubspot_ids and email in salesforce_ids:
                found.append((contact, hubspot_ids[email], salesforce_ids[email]))
        return found

    # ------------------------------------------------------------------ editing
    async def edit_both_apps(self) -> list[Edit]:
        """Users edit records in both apps: plain edits on each side, the same field of
        the same contact on both sides (one later than the other, or in the same
        millisecond), and contacts joining the inclusion list."""
        plan = self.plan
        people = self.synced_people()
        self._rng.shuffle(people)
        picks = iter(people)
        edits: list[Edit] = []
        for index in range(plan.one_side):
            contact, hubspot_id, salesforce_id = next(picks)
            pair = TITLE if index % 2 == 0 else LIFECYCLE
            edit = Edit(contact.key, hubspot_id, salesforce_id, pair, kind="edit")
            self._edit(edit, "hubspot")
            edit.expected, edit.why = "hubspot", "changed only in HubSpot"
            edits.append(edit)
        for index in range(plan.one_side):
            contact, hubspot_id, salesforce_id = next(picks)
            pair = PHONE if index % 2 == 0 else CITY
            edit = Edit(contact.key, hubspot_id, salesforce_id, pair, kind="edit")
            self._edit(edit, "salesforce")
            edit.expected, edit.why = "salesforce", "changed only in Salesforce"
            edits.append(edit)
        later_salesforce: tuple[App, App] = ("hubspot", "salesforce")
        later_hubspot: tuple[App, App] = ("salesforce", "hubspot")
        orders = [later_salesforce] * plan.conflicts_salesforce_later
        orders += [later_hubspot] * plan.conflicts_hubspot_later
        for first, second in orders:
            contact, hubspot_id, salesforce_id = next(picks)
            edit = Edit(contact.key, hubspot_id, salesforce_id, TITLE, kind="conflict")
            self._edit(edit, first)
            self._edit(edit, second)
            self._stage(edit, later=second)
            edit.expected = second
            edit.why = f"changed in both; the {_title(second)} edit is later (MostRecent)"
            edits.append(edit)
        for _ in range(plan.ties):
            contact, hubspot_id, salesforce_id = next(picks)
            edit = Edit(contact.key, hubspot_id, salesforce_id, TITLE, kind="tie")
            self._edit(edit, "hubspot")
            self._edit(edit, "salesforce")
            self._stage(edit, later=None)
            sor: App = (
                "salesforce"
                if self.spec and self.spec.systemOfRecord == "destination"
                else "hubspot"
            )
            edit.expected = sor
            edit.why = (
                f"changed in both in the same millisecond; the system of record "
                f"({_title(sor)}) wins the tie"
            )
            edits.append(edit)
        edits.extend(self._join_list(plan.join_list))
        self.edits = edits
        return edits

    def _edit(self, edit: Edit, app: App) -> None:
        current = self._value(edit, app)
        value = self._new_value(edit.pair, current, avoid=set(edit.values.values()))
        if app == "hubspot":
            self.hubspot.set_properties(edit.hubspot_id, {edit.pair.hubspot: value})
            record = self.hubspot.get(edit.hubspot_id) or {}
            edit.edits[app] = _parse_time(str(record["updatedAt"]))
            edit.values[app] = _as_salesforce(edit.pair, value)
        else:
            self.salesforce.set_fields(edit.salesforce_id, {edit.pair.salesforce: value})
            edit.edits[app] = self._salesforce_time(edit.salesforce_id)
            edit.values[app] = value

    def _salesforce_time(self, salesforce_id: str) -> datetime:
        row = self.salesforce.get(salesforce_id) or {}
        return _parse_time(str(row["SystemModstamp"]))

    def _stage(self, edit: Edit, later: App | None) -> None:
        """Put the Salesforce edit 1 ms after the HubSpot one, 1 ms before it, or in the
        same millisecond (a tie, decided by the system of record; real clocks rarely tie).
        Each app stamps edits with its own clock, and HubSpot's runs ahead of the wall
        clock after a burst of writes, so edits made one after the other can land in either
        order or in one millisecond. Salesforce's public set_modstamp() fixes the order."""
        offset = {"salesforce": 1, "hubspot": -1, None: 0}[later]
        moment = edit.edits["hubspot"] + timedelta(milliseconds=offset)
        self.salesforce.set_modstamp(edit.salesforce_id, moment)
        edit.edits["salesforce"] = self._salesforce_time(edit.salesforce_id)

    def _join_list(self, count: int) -> list[Edit]:
        """HubSpot-only contacts added to the inclusion list: they sync now, edited or not."""
        hubspot_ids = self.hubspot_ids()
        list_id = self.hubspot.create_list(LIST_NAME)
        joined: list[Edit] = []
        for contact in self.sample.hubspot:
            if len(joined) == count:
                break
            if contact.overlap or contact.tags - {NOT_IN_LIST} or NOT_IN_LIST not in contact.tags:
                continue
            email = (contact.email or "").lower()
            if email not in hubspot_ids:
                continue
            self.hubspot.add_to_list(list_id, [hubspot_ids[email]])
            edit = Edit(contact.key, hubspot_ids[email], "", TITLE, kind="joined-list")
            edit.values["hubspot"] = str(contact.fields.get("jobtitle") or "")
            edit.expected = "hubspot"
            edit.why = "added to the inclusion list: created in Salesforce"
            joined.append(edit)
        return joined

    def _value(self, edit: Edit, app: App) -> str:
        if app == "hubspot":
            record = self.hubspot.get(edit.hubspot_id) or {}
            return str((record.get("properties") or {}).get(edit.pair.hubspot) or "")
        row = self.salesforce.get(edit.salesforce_id) or {}
        return str(row.get(edit.pair.salesforce) or "")

    def _new_value(self, pair: FieldPair, current: str, avoid: set[str]) -> str:
        avoid = avoid | {current}
        rng = self._rng
        while True:
            if pair is TITLE:
                value = rng.choice(TITLES)
            elif pair is LIFECYCLE:
                value = rng.choice(list(LIFECYCLE_TO_STATUS))
                if LIFECYCLE_TO_STATUS[value] in avoid:
                    continue
            elif pair is PHONE:
                value = f"+1 {rng.randint(201, 989)} 555 {rng.randint(0, 9999):04d}"
            else:
                value = rng.choice(PLACES)[0]
            if value not in avoid:
                return value

    # ------------------------------------------------------------------ outcomes
    def outcomes(self) -> list[Outcome]:
        """What both apps hold now for each edited field, and whose edit that is."""
        salesforce_ids = self.salesforce_ids()
        results = []
        for edit in self.edits:
            if edit.kind == "joined-list":
                email = str(
                    (self.hubspot.get(edit.hubspot_id) or {}).get("properties", {}).get("email")
                )
                edit.salesforce_id = salesforce_ids.get(email.lower(), "")
            hubspot_value = _as_salesforce(edit.pair, self._value(edit, "hubspot"))
            salesforce_value = self._value(edit, "salesforce") if edit.salesforce_id else ""
            in_step = bool(edit.salesforce_id) and _same(hubspot_value, salesforce_value)
            winner: App | None = None
            for app, value in edit.values.items():
                if in_step and _same(value, salesforce_value):
                    winner = app
            results.append(Outcome(edit, winner, in_step))
        return results


def _as_salesforce(pair: FieldPair, value: str) -> str:
    if pair is LIFECYCLE:
        return LIFECYCLE_TO_STATUS.get(value, value)
    return value


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _title(app: App) -> str:
    return "HubSpot" if app == "hubspot" else "Salesforce"


def _parse_time(text: str) -> datetime:
    """Salesforce's `2026-01-01T10:00:00.000+0000` or HubSpot's `...000Z`, as UTC."""
    moment = datetime.fromisoformat(text.replace("+0000", "+00:00").replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
