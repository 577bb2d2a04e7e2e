"""Connector discovery through the `datasync.connectors` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from datasync.connector import Connector


class UnknownConnectorError(LookupError):
    pass


@cache
def connectors() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for entry in entry_points(group="datasync.connectors"):
        found[entry.name] = entry.load()
    return dict(sorted(found.items()))


def get(name: str) -> type[Connector]:
    available = connectors()
    if name not in available:
        raise UnknownConnectorError(
            f"unknown connector {name!r}; available: {', '.join(available) or 'none'}"
        )
    return available[name]
