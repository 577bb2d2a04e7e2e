"""Connector discovery through the `datasync.connectors` entry-point group.

Connectors load one at a time, by name, so a command that needs HubSpot never imports
the PostgreSQL driver, and a broken plug-in only breaks connections that use it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from datasync.connector import Connector


class UnknownConnectorError(LookupError):
    pass


def _entries() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group="datasync.connectors")}


def names() -> list[str]:
    """Registered connector names, without importing the connectors."""
    return sorted(_entries())


@cache
def get(name: str) -> type[Connector]:
    entries = _entries()
    if name not in entries:
        raise UnknownConnectorError(
            f"unknown connector {name!r}; available: {', '.join(sorted(entries)) or 'none'}"
        )
    loaded: type[Connector] = entries[name].load()
    return loaded


def connectors() -> dict[str, type[Connector]]:
    return {name: get(name) for name in names()}
