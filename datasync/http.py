"""The HTTP policy every API connector shares.

One table decides what each response status means (succeed, retry, wait for the rate
limit, refresh credentials once, or hand the response to the connector), so that
connectors only deal with the API's meaning. Transport errors and timeouts are retried
with exponential backoff and full jitter; `Retry-After` and rate-limit headers are honoured.
Every request is checked against the host allow-list first, so a DataSyncConnection cannot
point Datasync at an address it should not reach.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx

from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    RetriableError,
)

log = logging.getLogger(__name__)

ALLOWED_HOSTS_ENV = "DATASYNC_ALLOWED_HOSTS"
ALLOW_LOCAL_ENV = "DATASYNC_ALLOW_SANDBOX_URLS"
CA_BUNDLE_ENV = "DATASYNC_CA_BUNDLE"


class UntrustedServerError(AppUnreachableError):
    """The server's TLS certificate is not trusted: its message names the CA bundle setting,
    so connectors pass it on rather than rewording it as a network problem."""


class Action(Enum):
    SUCCEED = "succeed"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REAUTHENTICATE = "reauthenticate"
    RETURN = "return"  # the connector reads the error body (per-record errors, 404 ...)


STATUS_ACTIONS: Mapping[int, Action] = {
    401: Action.REAUTHENTICATE,
    408: Action.RETRY,
    425: Action.RETRY,
    429: Action.RATE_LIMITED,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}


def action_for(status: int) -> Action:
    if 200 <= status < 300:
        return Action.SUCCEED
    return STATUS_ACTIONS.get(status, Action.RETURN)


@dataclass(frozen=True)
class Verdict:
    """A connector's reading of a response that the status table cannot judge alone (an
    app that answers its rate limit with a 403 and an error code, for instance)."""

    action: Action
    # The RetriableError's message when the policy gives up on this answer.
    message: str | None = None
    # How often to ask again (None: as the RetryPolicy says). Counted apart from the
    # policy's attempts, and sent again even when not idempotent, so only for answers that
    # say the app did not act; a missing Retry-After, or one beyond the policy's longest
    # wait, is replaced by backoff.
    retries: int | None = None


Classifier = Callable[[httpx.Response], Verdict | None]
"""Maps a response to a Verdict before the status table applies; None leaves it to the
table. It sees every answer, retried ones included."""


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A Retry-After longer than this is not waited for: the records are reported as
    # RateLimited and picked up by the next run instead of holding the Job.
    max_rate_limit_wait: float = 120.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


@dataclass
class HostPolicy:
    """Which hosts outbound requests may reach."""

    allowed: tuple[str, ...] = ()
    allow_local: bool = False

    @classmethod
    def from_environment(cls, defaults: tuple[str, ...]) -> HostPolicy:
        extra = tuple(
            host.strip().lower()
            for host in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",")
            if host.strip()
        )
        allow_local = os.environ.get(ALLOW_LOCAL_ENV, "").lower() in {"1", "true", "yes"}
        return cls(allowed=defaults + extra, allow_local=allow_local)

    def permits(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" and not self.allow_local:
            return False  # credentials never travel in clear text to a real app
        if self.allow_local and host in {"localhost", "127.0.0.1", "::1"}:
            return True
        return any(_host_matches(host, pattern) for pattern in self.allowed)

    def check(self, url: str, setting: str = "baseUrl") -> None:
        if not self.permits(url):
            parts = urlsplit(url)  # only scheme and host are named: a URL may hold a password
            host, scheme = parts.hostname or "(no host)", parts.scheme
            if scheme != "https" and not self.allow_local:
                raise ConfigurationError(
                    f"{scheme}://{host} is not https: plain http is only for sandbox apps "
                    f"and needs {ALLOW_LOCAL_ENV}=true (chart value operator.allowSandboxUrls)",
                    field=setting,
                )
            raise ConfigurationError(
                f"host {host!r} is not allowed for this connector; use the app's official "
                f"API host, or add it to the operator's allowedHosts ({ALLOWED_HOSTS_ENV}); "
                f"local sandbox URLs need {ALLOW_LOCAL_ENV}=true",
                field=setting,
            )


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def tls_verification(verify: bool | str) -> bool | ssl.SSLContext:
    """What httpx verifies the server with: the system CAs, or a CA bundle file given as
    a path (loaded here: httpx deprecates `verify=<path>`)."""
    if not isinstance(verify, str):
        return verify
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(
            f"the CA bundle {verify!r} cannot be used ({type(error).__name__}); "
            f"{CA_BUNDLE_ENV} must name a readable PEM file of CA certificates",
            field=CA_BUNDLE_ENV,
        ) from None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds to wait, from Retry-After or the app's rate-limit headers."""
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    remaining = response.headers.get("X-HubSpot-RateLimit-Remaining")
    if interval and remaining == "0":
        try:
            return int(interval) / 1000
        except ValueError:
            return None
    return None


def base_url_setting(value: str, example: str, *, path_allowed: bool = True) -> str:
    """A base-URL setting (a settings model's validator calls this), without a trailing
    slash. The ValueError says what to fix and never repeats the value: a URL may carry a
    password, and parse_settings turns the error into a ConfigurationError naming the
    setting."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError:
        raise ValueError(f"must be a URL such as {example} (host and port unreadable)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as {example}")
    if "@" in parts.netloc:
        raise ValueError(
            "must not contain a user name or password (user:password@host): remove it from "
            "the URL and keep credentials in the connection's Secret"
        )
    if "?" in text:
        raise ValueError(
            f"must not contain a query string (?...); give the bare URL, e.g. {example}"
        )
    if "#" in text:
        raise ValueError(f"must not contain a fragment (#...); give the bare URL, e.g. {example}")
    if not path_allowed and parts.path.strip("/"):
        raise ValueError(f"must be the bare URL without a path, e.g. {example}")
    return text.rstrip("/")


MALFORMED_JSON_ATTEMPTS = 3  # a read answered with a body that is not JSON is fetched again


class MalformedJsonError(ValueError):
    """An answer's body is not JSON."""


def json_body(response: httpx.Response) -> Any:
    """The parsed body; {} for 204 No Content. Raises MalformedJsonError otherwise."""
    if response.status_code == 204:
        return {}
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedJsonError(f"HTTP {response.status_code} body is not JSON") from None


async def fetch_json(
    send: Callable[[], Awaitable[httpx.Response]],
    app: str,
    *,
    repeatable: bool,
    check: Callable[[httpx.Response], None] | None = None,
) -> tuple[httpx.Response, Any]:
    """Send a request (through the connector's own wrapper of ApiClient.request) and parse
    its JSON body. A malformed body is fetched again when the request is `repeatable`;
    a write is never sent twice (it may have been applied): it fails as AppUnavailable and
    the next run matches by identity. `check` may raise for error answers first."""
    for attempt in range(MALFORMED_JSON_ATTEMPTS if repeatable else 1):
        response = await send()
        if check is not None:
            check(response)
        try:
            return response, json_body(response)
        except MalformedJsonError:
            log.debug("%s %s: malformed JSON (attempt %d)", app, _path(str(response.url)), attempt)
    if repeatable:
        raise RetriableError(f"{app} kept answering with malformed JSON")
    raise RetriableError(
        f"{app} answered a write with malformed JSON; it is not sent again because it may "
        "have been applied, and the next run matches the records by identity"
    )


TokenProvider = Callable[[bool], Awaitable[Mapping[str, str]]]
"""Returns auth headers; called with True to force a fresh token after a 401."""


@dataclass
class ApiClient:
    """An httpx client with the shared policy. One per connector instance."""

    base_url: str
    auth_headers: TokenProvider | None = None
    hosts: HostPolicy = field(default_factory=HostPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 30.0
    calls: int = 0
    app: str = "the app"
    # True (system CAs, or DATASYNC_CA_BUNDLE), a CA bundle path, or the context of this
    # app's own CA bundle (spec.<side>.tls.caBundle), which wins over the process-wide one.
    verify: bool | str | ssl.SSLContext = True
    # The connector's own reading of responses, consulted before the status table.
    classify: Classifier | None = None
    _client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            verify = self.verify
            if not isinstance(verify, ssl.SSLContext):
                verify = tls_verification(os.environ.get(CA_BUNDLE_ENV) or verify)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
                verify=verify,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request under the policy; returns a 2xx response or one the policy
        hands back (Action.RETURN). Raises RetriableError, AuthenticationError or
        AppUnreachableError when the policy gives up.

        A request that is not `idempotent` (default: POST is not) is sent again only when
        the app cannot have acted on it (no connection, 429, 503): a write that timed out
        or got a 500/502/504 may have been applied, and repeating it could create a record
        twice. It fails as RetriableError instead, and the next run matches by identity."""
        repeatable = method.upper() != "POST" if idempotent is None else idempotent
        url = self.url(path)
        self.hosts.check(url)
        reached = False
        refreshed = False
        last_problem = "no response"
        attempt = 0
        own_retries = 0
        gave_up_on: Verdict | None = None  # the last answer retried under the policy
        extra_headers = dict(kwargs.pop("headers", {}) or {})
        while attempt < self.retry.attempts:
            headers = dict(extra_headers)
            if authenticated and self.auth_headers is not None:
                headers.update(await self.auth_headers(False))
            try:
                self.calls += 1
                response = await self.client().request(method, url, headers=headers, **kwargs)
            except (httpx.TimeoutException, httpx.TransportError) as error:
                untrusted = _certificate_problem(error)
                if untrusted is not None:  # not transient: asking again cannot help
                    raise UntrustedServerError(
                        f"TLS verification of {urlsplit(url).hostname} failed ({untrusted}); "
                        f"if {self.app} uses a private CA, give its CA certificate in "
                        "tls.caBundle (a Secret key) of this app in the spec, or in "
                        f"{CA_BUNDLE_ENV} for every app; verification is never turned off"
                    ) from None
                last_problem, gave_up_on = type(error).__name__, None
                if not repeatable and not isinstance(error, NOT_SENT):
                    raise RetriableError(_maybe_applied(self.app, last_problem)) from None
                log.debug("%s %s: %s (attempt %d)", method, _path(url), last_problem, attempt)
                await asyncio.sleep(self.retry.backoff(attempt))
                attempt += 1
                continue
            reached = True
            verdict = self.verdict(response)
            action = verdict.action
            if action in (Action.SUCCEED, Action.RETURN):
                return response
            if verdict.retries is not None:
                # The connector's own budget for this answer, apart from the policy's.
                if own_retries >= verdict.retries:
                    raise RetriableError(
                        verdict.message or f"{self.app} refused the request", reason=_reason(action)
                    )
                own_retries += 1
                wait = retry_after_seconds(response)
                if wait is None or wait > self.retry.max_rate_limit_wait:
                    wait = self.retry.backoff(own_retries)
                log.debug("%s %s: %s, waiting %.2fs", method, _path(url), action.value, wait)
                await asyncio.sleep(wait)
                continue
            if action is Action.REAUTHENTICATE:
                if not authenticated or self.auth_headers is None or refreshed:
                    raise AuthenticationError(f"{self.app} rejected the credentials (HTTP 401)")
                refreshed = True
                await self.auth_headers(True)
                continue
            wait = retry_after_seconds(response)
            last_problem, gave_up_on = f"HTTP {response.status_code}", verdict
            if not repeatable and action is Action.RETRY and response.status_code != 503:
                raise RetriableError(_maybe_applied(self.app, last_problem))
            if action is Action.RATE_LIMITED:
                if wait is not None and wait > self.retry.max_rate_limit_wait:
                    raise RetriableError(
                        verdict.message or f"{self.app} rate limit: asked to wait {wait:.0f}s",
                        reason="RateLimited",
                    )
                delay = wait if wait is not None else self.retry.backoff(attempt)
            else:
                delay = wait if wait is not None else self.retry.backoff(attempt)
            log.debug("%s %s: %s, waiting %.2fs", method, _path(url), last_problem, delay)
            await asyncio.sleep(delay)
            attempt += 1
        if not reached:
            raise AppUnreachableError(
                f"{self.app} could not be reached ({last_problem}); check the URL setting "
                "and the network path"
            )
        message = gave_up_on.message if gave_up_on is not None else None
        raise RetriableError(
            message
            or f"{self.app} kept failing ({last_problem}) after {self.retry.attempts} attempts",
            reason=_reason(gave_up_on.action if gave_up_on is not None else Action.RETRY),
        )

    def verdict(self, response: httpx.Response) -> Verdict:
        """The connector's classification of a response, or else the status table's."""
        if self.classify is not None:
            classified = self.classify(response)
            if classified is not None:
                return classified
        return Verdict(action_for(response.status_code))


# The request never reached the app: sending it again cannot apply it twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _reason(action: Action) -> str:
    return "RateLimited" if action is Action.RATE_LIMITED else "AppUnavailable"


def _maybe_applied(app: str, problem: str) -> str:
    return (
        f"{app} did not confirm a write ({problem}); it is not sent again because it may "
        "have been applied, and the next run matches the records by identity"
    )


def _certificate_problem(error: BaseException) -> str | None:
    """The verification failure behind a transport error, if the server's certificate was
    not trusted."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "certificate verify failed")
        seen = seen.__cause__ or seen.__context__
    return None


def _path(url: str) -> str:
    """The path of a URL for logs: no query string (it may carry tokens or emails)."""
    return urlsplit(url).path
