"""Outbound requests: only the apps' official API hosts (plus operator-configured ones)
are reachable, sandbox URLs need an explicit opt-in, nothing is even connected to before
that check, and TLS is always verified (a custom CA bundle can be given)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from datasync_connectors.hubspot import HubSpotConnector
from datasync_connectors.salesforce import SalesforceConnector

from datasync.api.models import AuthType
from datasync.connector import AppUnreachableError, ConfigurationError
from datasync.http import ALLOW_LOCAL_ENV, ALLOWED_HOSTS_ENV, RetryPolicy

OAUTH = {"clientId": "id", "clientSecret": "secret", "refreshToken": "refresh"}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on loopback that must never see a connection."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server


def _saw_connection(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def _targets(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}",
        f"https://127.0.0.1:{port}",
        f"http://localhost:{port}",
        "http://169.254.169.254",
        "https://169.254.169.254",
        "http://10.0.0.1",
        "https://10.0.0.1:8443",
        "https://[::ffff:169.254.169.254]",
        # Tricks that name an allowed host somewhere else in the URL:
        f"https://api.hubapi.com@127.0.0.1:{port}",
        "https://api.hubapi.com.169.254.169.254.nip.io",
        "https://acme.my.salesforce.com@10.0.0.1",
        "https://acme.my.salesforce.com.evil.example",
        "https://login.salesforce.com:443@169.254.169.254",
    ]


def _build(app: str, setting: str, url: str) -> Any:
    if app == "hubspot":
        return HubSpotConnector({setting: url}, {"accessToken": "t"}, AuthType.APP_PARAMETERS)
    if setting == "organizationUrl":
        return SalesforceConnector(
            {setting: url}, {"clientId": "i", "clientSecret": "s"}, AuthType.APP_PARAMETERS
        )
    return SalesforceConnector({setting: url}, OAUTH, AuthType.OAUTH)


@pytest.mark.parametrize(
    ("app", "setting"),
    [("hubspot", "baseUrl"), ("salesforce", "organizationUrl"), ("salesforce", "loginUrl")],
)
async def test_internal_addresses_are_refused_without_a_connection(
    app: str,
    setting: str,
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    tally: Counter[str],
) -> None:
    monkeypatch.delenv(ALLOW_LOCAL_ENV, raising=False)
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    port = listener.getsockname()[1]
    for url in _targets(port):
        with pytest.raises(ConfigurationError) as refused:
            connector = _build(app, setting, url)
            async with connector:  # had it been built, it must still not get through
                await connector.check()
        assert refused.value.field == setting, url
        tally["outbound_urls_refused"] += 1
    await asyncio.sleep(0.05)
    assert not _saw_connection(listener), "a refused URL was connected to"


async def test_opt_in_allows_loopback_but_never_other_internal_addresses(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DATASYNC_ALLOW_SANDBOX_URLS opens loopback (sandboxes) only: not the metadata
    service, not private networks."""
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    for url in ("http://169.254.169.254", "http://10.0.0.1", "https://192.168.1.1"):
        with pytest.raises(ConfigurationError):
            _build("hubspot", "baseUrl", url)
    port = listener.getsockname()[1]
    _build("hubspot", "baseUrl", f"http://127.0.0.1:{port}")  # allowed: built
    assert not _saw_connection(listener)


async def test_an_instance_url_from_the_token_answer_is_checked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Salesforce's token answer names the instance to call. A token endpoint that names
    an internal address (compromised, or a malicious sandbox) gets no request there."""
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")

    async def token(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "access_token": "token",
                "instance_url": "http://169.254.169.254",
                "id": "https://login.salesforce.com/id/00D/005",
                "token_type": "Bearer",
                "issued_at": "1",
                "signature": "x",
            }
        )

    app = web.Application()
    app.router.add_post("/services/oauth2/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        connector = SalesforceConnector({"loginUrl": base}, OAUTH, AuthType.OAUTH)
        async with connector:
            with pytest.raises(ConfigurationError) as refused:
                await connector.check()
    finally:
        await runner.cleanup()
    assert "instance_url host '169.254.169.254' is not an allowed" in str(refused.value)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.mark.filterwarnings("error::DeprecationWarning")
async def test_tls_is_verified_and_a_ca_bundle_can_be_given(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = certificate
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")
    monkeypatch.delenv("DATASYNC_CA_BUNDLE", raising=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def properties(request: web.Request) -> web.Response:
        return web.json_response({"results": []})

    app = web.Application()
    app.router.add_get("/crm/v3/properties/contacts", properties)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    fast = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    try:
        untrusted = HubSpotConnector(
            {"baseUrl": url}, {"accessToken": "t"}, AuthType.APP_PARAMETERS, retry=fast
        )
        async with untrusted:
            with pytest.raises(AppUnreachableError):
                await untrusted.describe("contacts")
        monkeypatch.setenv("DATASYNC_CA_BUNDLE", str(cert))
        trusted = HubSpotConnector(
            {"baseUrl": url}, {"accessToken": "t"}, AuthType.APP_PARAMETERS, retry=fast
        )
        async with trusted:
            schema = await trusted.describe("contacts")
        assert schema.fields == {}
    finally:
        await runner.cleanup()


async def test_an_unreadable_ca_bundle_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "true")
    not_pem = tmp_path / "bundle.pem"
    not_pem.write_text("not a certificate")
    for bundle in (tmp_path / "missing.pem", not_pem):
        monkeypatch.setenv("DATASYNC_CA_BUNDLE", str(bundle))
        connector = HubSpotConnector(
            {"baseUrl": "https://127.0.0.1:9"}, {"accessToken": "t"}, AuthType.APP_PARAMETERS
        )
        async with connector:
            with pytest.raises(ConfigurationError) as refused:
                await connector.describe("contacts")
        assert refused.value.field == "DATASYNC_CA_BUNDLE"
