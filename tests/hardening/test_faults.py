"""Runs of the real engine between the HubSpot and Salesforce sandboxes under injected
faults: every record ends each run either written or reported (and then retried by the
next run); nothing is silently dropped, nothing is duplicated."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync.api.models import Side, SyncResult, SyncSummary
from datasync.engine import run_sync
from datasync.engine.sync import OVERLAP
from datasync.http import ALLOW_LOCAL_ENV
from datasync.sandbox import Fault
from datasync.state import StateStore, open_store
from tests.hardening import apps
from tests.hardening.proxy import Delay, DelayingProxy

RECORDS_PER_SIDE = 150
ROUNDS = 12


@pytest.fixture(autouse=True)
def _sandbox_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[HubSpotSandbox, SalesforceSandbox]]:
    hubspot, salesforce = HubSpotSandbox(), SalesforceSandbox()
    await hubspot.start()
    await salesforce.start()
    try:
        yield hubspot, salesforce
    finally:
        await hubspot.stop()
        await salesforce.stop()


@pytest.fixture
def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    with open_store(f"sqlite://{tmp_path}/state.sqlite3", "sales/crm") as opened:
        yield opened


class Expected:
    """What each app should hold once in step: email -> mapped values, edited on the
    record's home app only (so no conflict rule decides the outcome)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.values: dict[str, tuple[str, ...]] = {}
        self.hubspot_ids: dict[str, str] = {}
        self.salesforce_ids: dict[str, str] = {}
        self.next = 0

    def adopt(self, hubspot: HubSpotSandbox, salesforce: SalesforceSandbox) -> None:
        for record in hubspot.records():
            email = record["properties"]["email"]
            self.hubspot_ids[email] = str(record["id"])
            self.values[email] = tuple(record["properties"].get(n, "") for n in apps.MAPPED)
        for record in salesforce.records():
            email = record["Email"].lower()
            self.salesforce_ids[email] = str(record["Id"])
            self.values[email] = tuple(record.get(n) or "" for n in apps.MAPPED.values())

    def edit(self, hubspot: HubSpotSandbox, salesforce: SalesforceSandbox, edits: int) -> None:
        for _ in range(edits):
            title = f"Title {self.rng.randrange(10**6)}"
            if self.rng.random() < 0.5:
                email = self.rng.choice(sorted(self.hubspot_ids))
                hubspot.set_properties(self.hubspot_ids[email], {"jobtitle": title})
            else:
                email = self.rng.choice(sorted(self.salesforce_ids))
                salesforce.set_fields(self.salesforce_ids[email], {"Title": title})
            first, last, _ = self.values[email]
            self.values[email] = (first, last, title)
        for _ in range(self.rng.randint(0, 3)):  # new contacts, on either side
            self.next += 1
            values = apps.person(10_000 + self.next, "new", self.rng)
            email = values["email"]
            if self.rng.random() < 0.5:
                hubspot.load([values])
                self.hubspot_ids[email] = next(
                    str(r["id"]) for r in hubspot.records() if r["properties"]["email"] == email
                )
            else:
                salesforce_id = salesforce.insert(
                    {apps.MAPPED.get(k, "Email"): v for k, v in values.items()}
                )
                self.salesforce_ids[email] = salesforce_id
            self.values[email] = tuple(values[name] for name in apps.MAPPED)


def out_of_step(
    expected: Expected, hubspot: HubSpotSandbox, salesforce: SalesforceSandbox
) -> list[str]:
    hubspot_view, salesforce_view = apps.hubspot_view(hubspot), apps.salesforce_view(salesforce)
    return sorted(
        email
        for email, values in expected.values.items()
        if hubspot_view.get(email) != [values] or salesforce_view.get(email) != [values]
    )


def assert_no_duplicates(hubspot: HubSpotSandbox, salesforce: SalesforceSandbox) -> None:
    assert apps.duplicates(apps.hubspot_view(hubspot)) == []
    assert apps.duplicates(apps.salesforce_view(salesforce)) == []


async def sync(
    hubspot: HubSpotSandbox,
    salesforce: SalesforceSandbox,
    store: StateStore,
    *urls: str,
) -> SyncSummary:
    spec = apps.spec_of(apps.connection(hubspot, salesforce))
    source, destination = apps.connectors(hubspot, salesforce, *urls)
    async with source, destination:
        return await run_sync(spec, source, destination, store)


async def until(condition: Callable[[], bool], stop: asyncio.Event | None = None) -> bool:
    """Poll a sandbox counter (they have no event to wait on) until `condition` holds."""
    while not condition():
        if stop is not None and stop.is_set():
            return False
        await asyncio.sleep(0.0005)
    return True


def will_be_retried(
    store: StateStore,
    summary: SyncSummary,
    hubspot: HubSpotSandbox,
    salesforce: SalesforceSandbox,
    expected: Expected,
    email: str,
) -> bool:
    """Whether the next run will deal with this out-of-step contact: the run failed as a
    whole, one of its records is failing (retried by id), or its last change is not past
    its app's watermark (read again)."""
    if summary.error:
        return True
    ids = {
        Side.SOURCE: {
            str(r["id"]) for r in hubspot.records() if r["properties"].get("email") == email
        },
        Side.DESTINATION: {
            str(r["Id"]) for r in salesforce.records() if str(r.get("Email")).lower() == email
        },
    }
    for side, record_ids in ids.items():
        failing = {record_id for page in store.iter_failing(side, 500) for record_id in page}
        if record_ids & failing:
            return True
    if email in expected.hubspot_ids:
        side = Side.SOURCE
        modified = datetime.fromtimestamp(
            hubspot.contacts[expected.hubspot_ids[email]].modified_ms / 1000, UTC
        )
    else:
        side = Side.DESTINATION
        stamp = salesforce.get(expected.salesforce_ids[email])["SystemModstamp"]  # type: ignore[index]
        modified = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")
    watermark = store.get_watermark(side)
    return watermark is None or modified >= watermark - OVERLAP


def reported(summary: SyncSummary) -> bool:
    """The run said something is not done: failures, failing records or a failed run."""
    return bool(
        summary.result != SyncResult.SUCCEEDED
        or summary.failures.total
        or summary.health.failing
        or summary.error
    )


async def test_random_faults_never_drop_or_duplicate_a_record(
    pair: tuple[HubSpotSandbox, SalesforceSandbox], store: StateStore, tally: Counter[str]
) -> None:
    hubspot, salesforce = pair
    rng = random.Random(20261128)
    apps.seed(hubspot, salesforce, RECORDS_PER_SIDE, rng)
    expected = Expected(rng)
    expected.adopt(hubspot, salesforce)
    plan = apps.FaultPlan(rng)
    faulty_runs = 0
    for _ in range(ROUNDS):
        expected.edit(hubspot, salesforce, edits=rng.randint(5, 30))
        injected: list[Fault] = []
        for sandbox, paths in (
            (hubspot, apps.HUBSPOT_PATHS),
            (salesforce, apps.SALESFORCE_PATHS),
        ):
            for _ in range(rng.randint(1, 3)):
                fault = plan.make(paths)
                injected.append(fault)
                sandbox.inject(fault)
        planned = [fault.count for fault in injected]
        summary = await sync(hubspot, salesforce, store)
        tally["faults_injected"] += apps.served(injected, planned)
        hubspot.faults.clear()
        salesforce.faults.clear()
        tally["fault_runs"] += 1
        assert_no_duplicates(hubspot, salesforce)
        behind = out_of_step(expected, hubspot, salesforce)
        if behind:
            faulty_runs += 1
            assert reported(summary), f"{len(behind)} records silently left behind"
            dropped = [
                email
                for email in behind
                if not will_be_retried(store, summary, hubspot, salesforce, expected, email)
            ]
            assert dropped == [], f"{len(dropped)} records neither failing nor to be re-read"
    # The next run, without faults, retries whatever was reported.
    summary = await sync(hubspot, salesforce, store)
    assert summary.result == SyncResult.SUCCEEDED, summary.failures
    lost = out_of_step(expected, hubspot, salesforce)
    tally["records_lost"] += len(lost)
    assert lost == []
    assert_no_duplicates(hubspot, salesforce)
    assert store.count_pairs() == len(expected.values)
    tally["records_synced_under_faults"] += len(expected.values)
    assert faulty_runs > 0, "the faults never got in the way: the test proves nothing"


async def test_writes_answered_after_the_client_timeout_are_not_repeated(
    pair: tuple[HubSpotSandbox, SalesforceSandbox], store: StateStore, tally: Counter[str]
) -> None:
    """Both apps apply the first create batch but answer only after the client gave up:
    sending it again would create every record twice (Salesforce allows duplicates)."""
    hubspot, salesforce = pair
    rng = random.Random(7)
    apps.seed(hubspot, salesforce, 120, rng)
    expected = Expected(rng)
    expected.adopt(hubspot, salesforce)
    late = apps.CLIENT_TIMEOUT * 3
    proxies = [DelayingProxy(hubspot.base_url), DelayingProxy(salesforce.base_url)]
    proxies[0].delays.append(Delay("/crm/v3/objects/contacts/batch/create", late, "POST"))
    proxies[1].delays.append(Delay("/services/data/v62.0/composite/sobjects", late, "POST"))
    for proxy in proxies:
        await proxy.start()
    try:
        urls = [proxy.base_url for proxy in proxies]
        seeded = len(hubspot.records()), len(salesforce.records())
        first = await sync(hubspot, salesforce, store, *urls)
        assert [proxy.delayed for proxy in proxies] == [1, 1]
        # The proxies hold back only the answers: the apps applied the writes the run
        # timed out on, which is what makes a second send a duplicate.
        applied = len(hubspot.records()) - seeded[0], len(salesforce.records()) - seeded[1]
        assert applied[0] > 0 and applied[1] > 0, applied
        tally["faults_injected"] += 2
        assert_no_duplicates(hubspot, salesforce)
        assert first.result == SyncResult.PARTIALLY_SUCCEEDED
        assert first.failures.byReason == {"AppUnavailable": first.failures.total}
        second = await sync(hubspot, salesforce, store, *urls)
    finally:
        for proxy in proxies:
            await proxy.stop()
    assert second.result == SyncResult.SUCCEEDED, second.failures
    assert_no_duplicates(hubspot, salesforce)
    assert out_of_step(expected, hubspot, salesforce) == []
    assert store.count_pairs() == len(expected.values)


async def test_records_changing_while_a_read_is_paging(
    pair: tuple[HubSpotSandbox, SalesforceSandbox], store: StateStore, tally: Counter[str]
) -> None:
    """Users edit and add contacts in both apps while the run pages through them: the
    edits land by the next run at the latest, none twice, none lost."""
    hubspot, salesforce = pair
    salesforce.query_batch_size = 40
    rng = random.Random(11)
    apps.seed(hubspot, salesforce, 200, rng)
    expected = Expected(rng)
    expected.adopt(hubspot, salesforce)
    search = "/crm/v3/objects/contacts/search"
    done = asyncio.Event()
    edits_mid_read = 0

    async def edit_while_paging() -> None:
        """Edit as soon as HubSpot served its first search page, then again once
        Salesforce served a few query pages, while the run is still going."""
        nonlocal edits_mid_read
        triggers = [
            lambda: hubspot.path_counts.get(search, 0) >= 1,
            lambda: salesforce.api_requests_used >= sf_start + 4,
        ]
        for triggered in triggers:
            if not await until(triggered, done):
                return
            expected.edit(hubspot, salesforce, edits=15)
            edits_mid_read += 15

    sf_start = salesforce.api_requests_used
    editor = asyncio.create_task(edit_while_paging())
    first = await sync(hubspot, salesforce, store)
    done.set()
    await editor
    assert edits_mid_read == 30, "the edits did not happen while the run was reading"
    assert first.result == SyncResult.SUCCEEDED, first.failures
    assert_no_duplicates(hubspot, salesforce)
    second = await sync(hubspot, salesforce, store)
    assert second.result == SyncResult.SUCCEEDED, second.failures
    assert out_of_step(expected, hubspot, salesforce) == []
    assert_no_duplicates(hubspot, salesforce)
    tally["edits_while_paging"] += edits_mid_read


@pytest.mark.parametrize("app", ["hubspot", "salesforce"])
async def test_refresh_token_revoked_mid_run(
    app: str,
    pair: tuple[HubSpotSandbox, SalesforceSandbox],
    store: StateStore,
    tally: Counter[str],
) -> None:
    """The app is uninstalled mid-run: the run fails naming the refresh token, keeps what
    it wrote, and after the user re-authorises the next run completes the rest."""
    hubspot, salesforce = pair
    rng = random.Random(13)
    apps.seed(hubspot, salesforce, 250, rng)
    expected = Expected(rng)
    expected.adopt(hubspot, salesforce)
    sandbox: Any = hubspot if app == "hubspot" else salesforce

    async def revoke_after_some_requests() -> None:
        def used() -> int:
            return int(sandbox.requests_served if app == "hubspot" else sandbox.api_requests_used)

        start = used()
        await until(lambda: used() >= start + 4)
        sandbox.inject(Fault("revoke_refresh_token"))

    revoker = asyncio.create_task(revoke_after_some_requests())
    first = await sync(hubspot, salesforce, store)
    await asyncio.wait_for(revoker, timeout=30)
    tally["faults_injected"] += 1
    assert first.result == SyncResult.FAILED
    assert first.error is not None and "refresh" in first.error.lower()
    for secret in sandbox.credentials("OAuth").values():
        assert secret not in first.error
    assert_no_duplicates(hubspot, salesforce)
    if app == "hubspot":  # the user installs the app again
        hubspot.refresh_token_revoked = False
    else:
        salesforce._refresh_revoked = False
    second = await sync(hubspot, salesforce, store)
    assert second.result == SyncResult.SUCCEEDED, (second.error, second.failures)
    assert out_of_step(expected, hubspot, salesforce) == []
    assert_no_duplicates(hubspot, salesforce)
