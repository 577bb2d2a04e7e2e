"""Scenarios 1-3: TwoWay HubSpot sandbox <-> Salesforce sandbox (initial sync, under the
documented rate limits, incremental after 1% edits on each side)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from bench.common import (
    BackgroundLoop,
    SyncRun,
    ceil_div,
    run_sync,
    secret_doc,
    write_yaml,
)
from datasync.api.models import AuthType
from datasync.demo import manifests
from datasync.demo.sample import LIST_NAME, SIZES, TITLES, SampleSize, generate
from datasync.engine.values import normalize_identity
from datasync.sandbox import RateLimit

# Batch sizes the minimum is computed with (the APIs' documented maxima).
HUBSPOT_SEARCH_PAGE = 200
HUBSPOT_BATCH = 100
HUBSPOT_MEMBERSHIP_PAGE = 250
SALESFORCE_QUERY_PAGE = 2000
SALESFORCE_COLLECTION = 200
# Documented limits used by scenario 2 (see bench/README.md for the sources).
HUBSPOT_OAUTH_LIMIT = RateLimit(requests=100, per_seconds=10)
SALESFORCE_DAILY_LIMIT = 100_000


@dataclass
class AppCounts:
    """Requests each sandbox served (counted on the app's side, not the client's)."""

    hubspot: int
    salesforce: int
    hubspot_paths: dict[str, int]
    salesforce_kinds: dict[str, int] = field(default_factory=dict)

    def minus(self, before: AppCounts) -> AppCounts:
        return AppCounts(
            self.hubspot - before.hubspot,
            self.salesforce - before.salesforce,
            _minus(self.hubspot_paths, before.hubspot_paths),
            _minus(self.salesforce_kinds, before.salesforce_kinds),
        )


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: n - before.get(key, 0) for key, n in after.items() if n - before.get(key, 0)}


@dataclass
class Scope:
    """What the sync has to do, computed from the apps' data (not from the sync)."""

    hubspot_records: int
    salesforce_records: int
    list_members: int
    hubspot_lookups: int  # in-scope HubSpot records with an identity (looked up in Salesforce)
    salesforce_lookups: int  # Salesforce records with an identity not matched by those
    extra: dict[str, Any] = field(default_factory=dict)


class _CountingSalesforce(SalesforceSandbox):
    """The Salesforce sandbox, also counting data requests by kind (query purpose, write)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.kinds: dict[str, int] = {}

    def _tally(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    async def _query(self, request: Any) -> Any:
        text = request.query.get("q", "")
        where = text.split(" WHERE ", 1)[1] if " WHERE " in text else ""
        if "ORDER BY SystemModstamp" in text:
            kind = "query changed"
        elif " IN (" in where:
            kind = f"query {where.split(' IN (', 1)[0].split()[-1]} IN"
        else:
            kind = "query other"
        self._tally(kind)
        return await super()._query(request)

    async def _query_more(self, request: Any) -> Any:
        self._tally("query next page")
        return await super()._query_more(request)

    async def _collections(self, request: Any) -> Any:
        self._tally("collections " + ("create" if request.method == "POST" else "update"))
        return await super()._collections(request)


class CrmWorld:
    """Two sandboxes loaded with the seed's sample, and the connection between them."""

    def __init__(
        self,
        loop: BackgroundLoop,
        workdir: Path,
        per_side: int,
        rate_limited: bool = False,
        seed: int = 20_260_401,
    ) -> None:
        self.loop = loop
        self.workdir = workdir
        self.per_side = per_side
        self.rate_limited = rate_limited
        self.seed = seed
        self.hubspot = HubSpotSandbox(rate_limit=HUBSPOT_OAUTH_LIMIT if rate_limited else None)
        self.salesforce = _CountingSalesforce(
            daily_api_limit=SALESFORCE_DAILY_LIMIT if rate_limited else 5_000_000
        )
        self.state_url = f"sqlite:///{workdir.resolve() / 'state.sqlite3'}"
        self.connection = workdir / "connection.yaml"
        self.secrets = workdir / "secrets.yaml"
        self.runs = 0

    # ------------------------------------------------------------ setup
    def start(self) -> float:
        """Start and load both sandboxes; returns the seconds loading took."""
        started = time.perf_counter()
        key = f"bench-{self.per_side}"
        SIZES[key] = SampleSize(
            hubspot=self.per_side, salesforce=self.per_side, overlap=self.per_side // 2
        )
        sample = generate(key, self.seed)
        self.loop.run(self.hubspot.start())
        self.loop.run(self.salesforce.start())
        self.loop.call(self.hubspot.load, sample.hubspot_records())
        self.loop.call(self.salesforce.load, sample.salesforce_records())
        self.loop.call(self._backdate)
        connection = manifests.connection_manifest(
            self.hubspot.connector_settings(), self.salesforce.connector_settings()
        )
        write_yaml(self.connection, [connection])
        write_yaml(
            self.secrets,
            [
                secret_doc(
                    manifests.HUBSPOT_SECRET,
                    self.hubspot.credentials(AuthType.OAUTH),
                    manifests.NAMESPACE,
                ),
                secret_doc(
                    manifests.SALESFORCE_SECRET,
                    self.salesforce.credentials(AuthType.OAUTH),
                    manifests.NAMESPACE,
                ),
            ],
        )
        return time.perf_counter() - started

    def _backdate(self) -> None:
        """Spread the loaded records' creation and modification times over the last 90
        days, as in a real account. Loaded in one go they would all carry the same few
        seconds, and every incremental run re-reads what changed in the 2 minutes before
        its watermark (the engine's clock-skew overlap): that would be the whole app."""
        now_ms = int(time.time() * 1000)
        start_ms = now_ms - 90 * 86_400_000
        contacts = list(self.hubspot.contacts.values())
        step = (now_ms - 3_600_000 - start_ms) // max(1, len(contacts))
        for index, contact in enumerate(contacts):
            contact.created_ms = contact.modified_ms = start_ms + index * step
        rows = list(self.salesforce._objects["Contact"].rows.values())
        step = (now_ms - 3_600_000 - start_ms) // max(1, len(rows))
        for index, row in enumerate(rows):
            stamp = datetime.fromtimestamp((start_ms + index * step) / 1000, UTC)
            row["CreatedDate"] = row["LastModifiedDate"] = row["SystemModstamp"] = stamp

    def stop(self) -> None:
        self.loop.run(self.hubspot.stop())
        self.loop.run(self.salesforce.stop())

    # ------------------------------------------------------------ measuring
    def counts(self) -> AppCounts:
        def snapshot() -> AppCounts:
            return AppCounts(
                self.hubspot.requests_served,
                self.salesforce.requests_served,
                dict(self.hubspot.path_counts),
                dict(self.salesforce.kinds),
            )

        result: AppCounts = self.loop.call(snapshot)
        return result

    def sync(self, label: str, state_url: str | None = None) -> tuple[SyncRun, AppCounts]:
        before = self.counts()
        run = run_sync(
            self.connection, self.secrets, state_url or self.state_url, self.workdir, label
        )
        self.runs += 1
        return run, self.counts().minus(before)

    def scope(self) -> Scope:
        """The work an initial sync must do, from the apps' current data."""

        def compute() -> Scope:
            lists = [item for item in self.hubspot.lists.values() if item.name == LIST_NAME]
            members = set(lists[0].members) if lists else set()
            in_scope: set[str] = set()
            for contact in self.hubspot.contacts.values():
                props = contact.properties
                if contact.id not in members or props.get("hs_email_optout") == "true":
                    continue
                identity = normalize_identity(props.get("email"))
                if identity is not None:
                    in_scope.add(identity)
            salesforce_rows = list(self.salesforce._objects["Contact"].rows.values())
            salesforce_emails = [normalize_identity(row.get("Email")) for row in salesforce_rows]
            matched = {email for email in salesforce_emails if email in in_scope}
            unmatched = [e for e in salesforce_emails if e is not None and e not in matched]
            return Scope(
                hubspot_records=len(self.hubspot.contacts),
                salesforce_records=len(salesforce_rows),
                list_members=len(members),
                hubspot_lookups=len(in_scope),
                salesforce_lookups=len(unmatched),
                extra={"matchedByEmail": len(matched)},
            )

        result: Scope = self.loop.call(compute)
        return result

    # ------------------------------------------------------------ editing
    def edit_fraction(self, fraction: float, seed: int = 7) -> dict[str, int]:
        """Users edit `fraction` of each app's records (job title), disjoint people."""

        def edit() -> dict[str, int]:
            rng = random.Random(seed)
            hubspot_ids = sorted(self.hubspot.contacts)
            salesforce_ids = sorted(self.salesforce._objects["Contact"].rows)
            count_h = max(1, round(len(hubspot_ids) * fraction))
            count_s = max(1, round(len(salesforce_ids) * fraction))
            edited_emails: set[str] = set()
            for record_id in rng.sample(hubspot_ids, count_h):
                contact = self.hubspot.contacts[record_id]
                edited_emails.add(str(contact.properties.get("email") or "").lower())
                title = rng.choice([t for t in TITLES if t != contact.properties.get("jobtitle")])
                self.hubspot.set_properties(record_id, {"jobtitle": title})
            rows = self.salesforce._objects["Contact"].rows
            candidates = [
                i
                for i in salesforce_ids
                if str(rows[i].get("Email") or "").lower() not in edited_emails
            ]
            for record_id in rng.sample(candidates, count_s):
                title = rng.choice([t for t in TITLES if t != rows[record_id].get("Title")])
                self.salesforce.set_fields(record_id, {"Title": title})
            return {"hubspot": count_h, "salesforce": count_s}

        result: dict[str, int] = self.loop.call(edit)
        return result


def initial_minimum(scope: Scope, run: SyncRun) -> dict[str, int]:
    """Fewest API calls the documented batch sizes allow for this initial TwoWay sync.

    HubSpot: 1 token + 1 properties + 1 list-by-name + ceil(M/250) membership pages
    + ceil(H/200) search pages + ceil(Ls/100) email lookups + ceil(Ch/100) creates
    + ceil(Uh/100) updates.
    Salesforce: 1 token + 1 describe + ceil(S/2000) query pages + ceil(Lh/200) IN-lookups
    + ceil(Cs/200) creates + ceil(Us/200) updates.
    """
    to_destination = run.records("toDestination")
    to_source = run.records("toSource")
    hubspot = (
        3
        + ceil_div(scope.list_members, HUBSPOT_MEMBERSHIP_PAGE)
        + ceil_div(scope.hubspot_records, HUBSPOT_SEARCH_PAGE)
        + ceil_div(scope.salesforce_lookups, HUBSPOT_BATCH)
        + ceil_div(to_source.get("created", 0), HUBSPOT_BATCH)
        + ceil_div(to_source.get("updated", 0), HUBSPOT_BATCH)
    )
    salesforce = (
        2
        + ceil_div(scope.salesforce_records, SALESFORCE_QUERY_PAGE)
        + ceil_div(scope.hubspot_lookups, SALESFORCE_COLLECTION)
        + ceil_div(to_destination.get("created", 0), SALESFORCE_COLLECTION)
        + ceil_div(to_destination.get("updated", 0), SALESFORCE_COLLECTION)
    )
    return {"hubspot": hubspot, "salesforce": salesforce, "total": hubspot + salesforce}
