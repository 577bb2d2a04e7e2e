"""The demo's DataSyncConnection and Secret manifests: what the user would apply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from datasync.api.models import API_VERSION, KIND
from datasync.demo.sample import LIFECYCLE_TO_STATUS, LIST_NAME

CONNECTION_NAME = "hubspot-salesforce"
NAMESPACE = "datasync-demo"
HUBSPOT_SECRET = "hubspot-oauth"  # noqa: S105 - a Secret name, not a value
SALESFORCE_SECRET = "salesforce-oauth"  # noqa: S105 - a Secret name
HIDDEN = "<sandbox-only value, shown with --keep>"


def connection_manifest(
    hubspot_settings: Mapping[str, str], salesforce_settings: Mapping[str, str]
) -> dict[str, Any]:
    """The connection the demo syncs: HubSpot contacts in the inclusion list, minus the
    opted-out ones, both ways with Salesforce contacts; Salesforce is the system of record."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": CONNECTION_NAME, "namespace": NAMESPACE},
        "spec": {
            "goal": "Sales sees every sales-qualified HubSpot contact; marketing sees the "
            "sales team's updates.",
            "direction": "TwoWay",
            "schedule": "*/15 * * * *",
            "source": {
                "app": "hubspot",
                "auth": {"type": "OAuth", "secretRef": {"name": HUBSPOT_SECRET}},
                "settings": dict(hubspot_settings),
            },
            "destination": {
                "app": "salesforce",
                "auth": {"type": "OAuth", "secretRef": {"name": SALESFORCE_SECRET}},
                "settings": dict(salesforce_settings),
            },
            "systemOfRecord": "destination",
            "conflictResolution": "MostRecent",
            "inclusionList": {"app": "source", "list": LIST_NAME},
            "filters": [
                {
                    "app": "source",
                    "field": "hs_email_optout",
                    "operator": "NotEquals",
                    "values": ["true"],
                    "reason": "OptedOut",
                }
            ],
            "mappings": {
                "defaults": True,
                "fields": [
                    {
                        # Consent lives in HubSpot: Salesforce's default (not opted out)
                        # must never clear a HubSpot opt-out, whichever app is the system
                        # of record.
                        "source": "hs_email_optout",
                        "destination": "HasOptedOutOfEmail",
                        "direction": "ToDestination",
                    },
                    {
                        "source": "lifecyclestage",
                        "destination": "Status__c",
                        "values": dict(LIFECYCLE_TO_STATUS),
                    },
                ],
            },
            "state": {"type": "SQLite", "size": "1Gi"},
        },
    }


def secret_manifest(name: str, data: Mapping[str, str], *, reveal: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": {key: (value if reveal else HIDDEN) for key, value in data.items()},
    }


def manifests_yaml(documents: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=100) for doc in documents)
