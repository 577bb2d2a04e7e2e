"""Two sandbox apps (HubSpot, Salesforce) and what the hardening tests read from them.

Contents are compared as the user sees them: records keyed by email, with the mapped fields.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from datasync_connectors.hubspot import HubSpotConnector
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce import SalesforceConnector
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync.api.models import AuthType, DataSyncConnectionSpec
from datasync.http import RetryPolicy
from datasync.sandbox import Fault

# HubSpot property -> Salesforce Contact field, the default mappings compared.
MAPPED = {"firstname": "FirstName", "lastname": "LastName", "jobtitle": "Title"}
# Production retry policy, minus the waiting.
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_rate_limit_wait=5.0)
CLIENT_TIMEOUT = 0.5  # seconds; "slow" faults sleep past it


def connection(hubspot: HubSpotSandbox, salesforce: SalesforceSandbox) -> dict[str, Any]:
    return {
        "apiVersion": "datasync.io/v1alpha1",
        "kind": "DataSyncConnection",
        "metadata": {"name": "crm", "namespace": "sales"},
        "spec": {
            "direction": "TwoWay",
            "schedule": "*/15 * * * *",
            "source": {
                "app": "hubspot",
                "auth": {"type": "OAuth", "secretRef": {"name": "hubspot"}},
                "settings": hubspot.connector_settings(),
            },
            "destination": {
                "app": "salesforce",
                "auth": {"type": "OAuth", "secretRef": {"name": "salesforce"}},
                "settings": salesforce.connector_settings(),
            },
        },
    }


def spec_of(manifest: dict[str, Any]) -> DataSyncConnectionSpec:
    return DataSyncConnectionSpec.model_validate(manifest["spec"])


def connectors(
    hubspot: HubSpotSandbox,
    salesforce: SalesforceSandbox,
    hubspot_url: str | None = None,
    salesforce_url: str | None = None,
) -> tuple[HubSpotConnector, SalesforceConnector]:
    """Connectors to the sandboxes (or to proxies in front of them)."""
    hubspot_url = hubspot_url or hubspot.base_url
    salesforce_url = salesforce_url or salesforce.base_url
    source = HubSpotConnector(
        {"baseUrl": hubspot_url}, hubspot.credentials(AuthType.OAUTH), AuthType.OAUTH
    )
    source._api.retry = FAST_RETRY
    source._api.timeout = CLIENT_TIMEOUT
    destination = SalesforceConnector(
        {"organizationUrl": salesforce_url, "loginUrl": salesforce_url},
        salesforce.credentials(AuthType.OAUTH),
        AuthType.OAUTH,
    )
    destination.http.retry = FAST_RETRY
    destination.http.timeout = CLIENT_TIMEOUT
    return source, destination


def person(i: int, side: str, rng: random.Random) -> dict[str, str]:
    return {
        "email": f"{side}{i}@example.com",
        "firstname": f"First{i}",
        "lastname": f"Last{i}",
        "jobtitle": rng.choice(["CEO", "CTO", "Buyer", "Engineer", "Analyst"]),
    }


def seed(
    hubspot: HubSpotSandbox, salesforce: SalesforceSandbox, count: int, rng: random.Random
) -> None:
    """`count` contacts only in HubSpot, `count` only in Salesforce."""
    hubspot.load(person(i, "hs", rng) for i in range(count))
    salesforce.load(
        {MAPPED.get(k, "Email"): v for k, v in person(i, "sf", rng).items()} for i in range(count)
    )


def hubspot_view(hubspot: HubSpotSandbox) -> dict[str, list[tuple[str, ...]]]:
    """email -> the mapped values of every HubSpot contact holding it (more than one
    entry means a duplicate)."""
    view: dict[str, list[tuple[str, ...]]] = {}
    for record in hubspot.records():
        properties = record["properties"]
        values = tuple(str(properties.get(name) or "") for name in MAPPED)
        view.setdefault(str(properties.get("email") or "").lower(), []).append(values)
    return view


def salesforce_view(salesforce: SalesforceSandbox) -> dict[str, list[tuple[str, ...]]]:
    view: dict[str, list[tuple[str, ...]]] = {}
    for record in salesforce.records():
        values = tuple(str(record.get(name) or "") for name in MAPPED.values())
        view.setdefault(str(record.get("Email") or "").lower(), []).append(values)
    return view


def duplicates(view: dict[str, list[tuple[str, ...]]]) -> list[str]:
    return sorted(email for email, entries in view.items() if len(entries) > 1)


@dataclass
class FaultPlan:
    """Random faults for both apps; counts what was actually served."""

    rng: random.Random
    injected: int = 0

    KINDS = (
        "429-retry-after",
        "429-bare",
        "500",
        "502",
        "503",
        "504",
        "reset",
        "slow",
        "malformed",
    )

    def make(self, prefixes: Iterable[str]) -> Fault:
        kind = self.rng.choice(self.KINDS)
        count = self.rng.randint(1, 3)
        prefix = self.rng.choice([*prefixes, ""])
        if kind.startswith("429"):
            retry_after = 0.05 if kind == "429-retry-after" else None
            return Fault("status", count, 429, retry_after=retry_after, path_prefix=prefix)
        if kind.isdigit():
            return Fault("status", count, int(kind), path_prefix=prefix)
        if kind == "slow":
            return Fault("slow", 1, delay=CLIENT_TIMEOUT * 2, path_prefix=prefix)
        return Fault(kind, count, path_prefix=prefix)


HUBSPOT_PATHS = ("/crm/v3/objects/contacts/search", "/crm/v3/objects/contacts/batch", "/oauth")
SALESFORCE_PATHS = ("/services/data/v62.0/query", "/services/data/v62.0/composite", "/services")


def served(faults: list[Fault], planned: list[int]) -> int:
    """How many planned fault answers were actually given (the rest are still pending)."""
    return sum(planned) - sum(fault.count for fault in faults)
