"""Salesforce connector (REST API) and its sandbox org."""

from .connector import SalesforceConnector

__all__ = ["SalesforceConnector"]
