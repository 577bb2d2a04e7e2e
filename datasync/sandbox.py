"""Sandbox apps: local, in-memory emulations of an app's documented API.

Each connector that talks to a SaaS API ships a sandbox (`connectors/<name>/sandbox.py`),
registered in the `datasync.sandboxes` entry-point group. Sandboxes serve the documented
endpoints at the documented paths over real HTTP (aiohttp), so the connector, and any other
client of the real API, works against them unchanged. They back the tests, `datasync demo`,
the benchmarks, and users trying Datasync before connecting real accounts.
"""

from __future__ import annotations

import abc
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

from aiohttp import web

from datasync.api.models import AuthType


@dataclass
class RateLimit:
    """Requests allowed per window; `None` fields fall back to the app's documented limits."""

    requests: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """'100/10s' -> 100 requests per 10 seconds."""
        try:
            count, window = text.split("/", 1)
            seconds = float(window.rstrip("s") or 1)
            return cls(requests=int(count), per_seconds=seconds)
        except ValueError as error:
            raise ValueError(
                f"rate limit {text!r} must look like REQUESTS/SECONDSs, e.g. 100/10s"
            ) from error


@dataclass
class Fault:
    """An injected fault: the next `count` matching requests get it instead of an answer.

    kind: "status" (respond `status`, optional `retry_after`), "reset" (drop the
    connection), "slow" (sleep `delay` seconds first), "malformed" (invalid JSON body),
    "revoke_refresh_token" (the refresh token stops working).
    """

    kind: str
    count: int = 1
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    path_prefix: str = ""


@dataclass
class SandboxApp(abc.ABC):
    """Base of every sandbox: lifecycle, faults and request accounting."""

    app_name: ClassVar[str]
    host: str = "127.0.0.1"
    port: int = 0
    rate_limit: RateLimit | None = None
    faults: list[Fault] = field(default_factory=list)
    requests_served: int = 0
    _runner: web.AppRunner | None = None
    base_url: str = ""
    # Serve https with this context (a test's private CA); plain http when None.
    ssl_context: ssl.SSLContext | None = None

    @abc.abstractmethod
    def build_app(self) -> web.Application:
        """The aiohttp application serving the API."""

    @abc.abstractmethod
    def load(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add records (dicts of the app's field names) and return how many were added."""

    @abc.abstractmethod
    def credentials(self, auth_type: AuthType) -> dict[str, str]:
        """The Secret data the connector needs to log in here with `auth_type`."""

    @abc.abstractmethod
    def connector_settings(self) -> dict[str, str]:
        """The connector settings that point it at this sandbox."""

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    async def start(self) -> str:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context is not None else "http"
        self.base_url = f"{scheme}://{self.host}:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@cache
def sandboxes() -> dict[str, type[SandboxApp]]:
    found: dict[str, type[SandboxApp]] = {}
    for entry in entry_points(group="datasync.sandboxes"):
        found[entry.name] = entry.load()
    return dict(sorted(found.items()))
