"""OAuth 2.0 sessions for the Salesforce connector.

OAuth: refresh-token flow at `{loginUrl}/services/oauth2/token`.
AppParameters: client-credentials flow at `{organizationUrl}/services/oauth2/token` (it only
works on the org's My Domain, and needs a run-as user on the connected/external client app).
Salesforce's token response has no `expires_in`: an access token lives as long as the org's
session timeout, so the session is renewed after `sessionTimeoutMinutes` or on a 401.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from datasync.api.models import AuthType
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    RetriableError,
)
from datasync.http import ApiClient, HostPolicy, UntrustedServerError

log = logging.getLogger(__name__)

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a URL path, not a secret


@dataclass
class Session:
    access_token: str = field(repr=False)
    instance_url: str
    obtained_at: float


class TokenManager:
    """Obtains and renews the access token; one per connector."""

    def __init__(
        self,
        http: ApiClient,
        auth_type: AuthType,
        credentials: Mapping[str, str],
        token_url: str,
        url_setting: str,
        hosts: HostPolicy,
        session_seconds: float,
    ) -> None:
        self._http = http
        self._auth_type = auth_type
        self._credentials = credentials
        self.token_url = token_url
        self.url_setting = url_setting
        self._hosts = hosts
        self._session_seconds = session_seconds
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self.token_calls = 0

    @property
    def secret_key(self) -> str:
        """The Secret key most likely at fault when a session is refused."""
        return "refreshToken" if self._auth_type == AuthType.OAUTH else "clientSecret"

    async def session(self, force: bool = False) -> Session:
        async with self._lock:
            current = self._session
            stale = (
                current is None or time.monotonic() - current.obtained_at >= self._session_seconds
            )
            if force or stale:
                self._session = await self._fetch()
            assert self._session is not None
            return self._session

    async def auth_headers(self, force: bool) -> Mapping[str, str]:
        session = await self.session(force)
        return {"Authorization": f"Bearer {session.access_token}"}

    async def _fetch(self) -> Session:
        form = {
            "client_id": self._credentials["clientId"],
            "client_secret": self._credentials["clientSecret"],
        }
        if self._auth_type == AuthType.OAUTH:
            form |= {
                "grant_type": "refresh_token",
                "refresh_token": self._credentials["refreshToken"],
            }
        else:
            form["grant_type"] = "client_credentials"
        self.token_calls += 1
        try:
            response = await self._http.request(
                "POST",
                self.token_url,
                authenticated=False,
                idempotent=True,  # a token request changes nothing in the org
                data=form,
                headers={"Accept": "application/json"},
            )
        except UntrustedServerError:
            raise
        except AppUnreachableError:
            raise AppUnreachableError(
                f"Salesforce's token endpoint could not be reached; check the {self.url_setting} "
                "setting and the network path to it"
            ) from None
        except AuthenticationError:
            raise AuthenticationError(
                "Salesforce refused the client credentials (HTTP 401); check clientId and "
                "clientSecret (the app's Consumer Key and Consumer Secret)",
                credential="clientSecret",
            ) from None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RetriableError(
                f"Salesforce's token endpoint answered HTTP {response.status_code} with a body "
                "that is not JSON",
                reason="AppUnavailable",
            ) from None
        if response.status_code >= 400 or not isinstance(body, dict) or "access_token" not in body:
            raise self._token_error(response.status_code, body)
        instance_url = str(body.get("instance_url") or "").rstrip("/")
        parts = urlsplit(instance_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RetriableError("Salesforce's token response had no usable instance_url")
        if not self._hosts.permits(instance_url):
            raise ConfigurationError(
                f"the token response's instance_url host {parts.hostname!r} is not an allowed "
                "Salesforce host; add it to the operator's allowedHosts if it is your org",
                field=self.url_setting,
            )
        log.debug("obtained a Salesforce access token (%s flow)", form["grant_type"])
        return Session(str(body["access_token"]), instance_url, time.monotonic())

    def _token_error(self, status: int, body: object) -> Exception:
        code = str(body.get("error", "")) if isinstance(body, dict) else ""
        if code == "invalid_client_id":
            return AuthenticationError(
                "Salesforce does not know this client (invalid_client_id); check clientId (the "
                "app's Consumer Key)",
                credential="clientId",
            )
        if code == "invalid_client":
            return AuthenticationError(
                "Salesforce refused the client secret (invalid_client); check clientSecret (the "
                "app's Consumer Secret)",
                credential="clientSecret",
            )
        if code == "invalid_grant" and self._auth_type == AuthType.OAUTH:
            return AuthenticationError(
                "Salesforce refused the refresh token (invalid_grant): it expired, was revoked, "
                "or belongs to another app; authorize again and update refreshToken",
                credential="refreshToken",
            )
        if code == "invalid_grant":
            return AuthenticationError(
                "Salesforce refused the client credentials flow (invalid_grant): enable the "
                "client credentials flow and set a run-as user on the app, then check clientId",
                credential="clientId",
            )
        if code in ("unsupported_grant_type", "invalid_request") or status == 404:
            return ConfigurationError(
                f"Salesforce's token endpoint refused the request ({code or f'HTTP {status}'}); "
                f"check the {self.url_setting} setting (the client credentials flow needs the "
                "org's My Domain URL)",
                field=self.url_setting,
            )
        if status >= 500 or status == 429:
            return RetriableError(f"Salesforce's token endpoint answered HTTP {status}")
        return AuthenticationError(
            f"Salesforce refused the login ({code or f'HTTP {status}'}); check clientId, "
            f"clientSecret and the {self.url_setting} setting",
            credential=self.secret_key,
        )
