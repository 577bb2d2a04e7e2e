"""A reverse proxy that delays chosen answers AFTER the app has handled the request.

The sandboxes' own "slow" fault sleeps before reading the request, so a client that gives
up never has its write applied. Real apps often apply a write and answer late; this proxy
makes exactly that happen, to prove a timed-out write is never applied twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class Delay:
    path_prefix: str
    seconds: float
    method: str | None = None
    count: int = 1


@dataclass
class DelayingProxy:
    upstream: str
    delays: list[Delay] = field(default_factory=list)
    delayed: int = 0
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=True)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _take(self, request: web.Request) -> Delay | None:
        for delay in self.delays:
            if (
                delay.count > 0
                and request.path.startswith(delay.path_prefix)
                and delay.method in (None, request.method)
            ):
                delay.count -= 1
                return delay
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as answer:
            content = await answer.read()
            status = answer.status
            answer_headers = {
                k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS
            }
        # Links the app hands out (Salesforce's instance_url) must lead back here.
        content = content.replace(self.upstream.encode(), self.base_url.encode())
        delay = self._take(request)
        if delay is not None:
            self.delayed += 1
            await asyncio.sleep(delay.seconds)
        return web.Response(status=status, body=content, headers=answer_headers)
