"""The HubSpot connector (CRM v3 contacts) and its sandbox (`.sandbox.HubSpotSandbox`)."""

from datasync_connectors.hubspot.connector import HubSpotConnector, HubSpotSettings

__all__ = ["HubSpotConnector", "HubSpotSettings"]
