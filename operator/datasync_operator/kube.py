"""A small async Kubernetes REST client (aiohttp) sharing the operator's login.

Kopf's own API client is private, and the generated `kubernetes` client is blocking, so
the operator's writes go through this: plain JSON in, plain JSON out.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

Json = dict[str, Any]

FIELD_MANAGER = "datasync-operator"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, causes: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes

    @property
    def namespace_terminating(self) -> bool:
        """The write was refused because its namespace is being deleted."""
        return "NamespaceTerminating" in self.causes


@dataclass
class Credentials:
    server: str
    ca_path: str | None = None
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def load_credentials(kubeconfig: str | None) -> Credentials:
    """In-cluster service account, else the kubeconfig file (or KUBECONFIG)."""
    from kubernetes import client, config

    if kubeconfig is None and (SERVICE_ACCOUNT_DIR / "token").exists():
        return Credentials(
            server="https://kubernetes.default.svc",
            ca_path=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
            token_file=str(SERVICE_ACCOUNT_DIR / "token"),
        )
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=configuration
    )
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    token = header.split(" ", 1)[-1] if header else None
    return Credentials(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def _ssl_context(credentials: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=credentials.ca_path)
    if credentials.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.certificate_path:
        context.load_cert_chain(credentials.certificate_path, credentials.private_key_path)
    return context


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/{plural}"
    return f"{base}/{quote(name)}" if name else base


def group_path(group_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/apis/{group_version}/namespaces/{namespace}/{plural}"
    return f"{base}/{quote(name)}" if name else base


class Kube:
    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def _get_session(self) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is None or self._session.closed:
                connector = aiohttp.TCPConnector(ssl=_ssl_context(self.credentials))
                self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        session = await self._get_session()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self.credentials.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = self.credentials.server.rstrip("/") + path
        if method != "GET":
            query = {**(query or {}), "fieldManager": FIELD_MANAGER}
        if query:
            url += "?" + urlencode(query)
        data = json.dumps(body) if body is not None else None
        async with session.request(method, url, data=data, headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                try:
                    status = json.loads(text)
                    causes = tuple(
                        str(cause.get("reason", ""))
                        for cause in (status.get("details") or {}).get("causes") or []
                    )
                    raise KubeError(
                        response.status,
                        str(status.get("reason", "")),
                        str(status.get("message")),
                        causes,
                    )
                except ValueError:
                    raise KubeError(response.status, "", text[:500]) from None
            return json.loads(text) if text else {}

    async def get(self, path: str) -> Json | None:
        try:
            return await self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> list[Json]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, query=query)
        items: list[Json] = result.get("items") or []
        return items

    async def create(self, path: str, body: Json) -> Json:
        return await self.request("POST", path, body)

    async def replace(self, path: str, body: Json) -> Json:
        return await self.request("PUT", path, body)

    async def merge_patch(self, path: str, patch: Json) -> Json:
        return await self.request("PATCH", path, patch, content_type="application/merge-patch+json")


_kube: Kube | None = None


def client() -> Kube:
    if _kube is None:
        raise RuntimeError("the operator's Kubernetes client is not configured")
    return _kube


def set_client(kube: Kube | None) -> None:
    global _kube
    _kube = kube
