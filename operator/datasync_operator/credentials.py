"""Resolve a connection's Secrets and log in to each app with its connector's check.

Generic over the connector registry: the operator knows no app. Messages name the Secret
and the key to fix, never a value.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from datasync import registry
from datasync.api.models import AuthType, DataSyncConnectionSpec, Side, StateStoreType
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    ConfigurationError,
    Connector,
)
from datasync.http import CA_BUNDLE_ENV, tls_verification
from datasync.secrets import Secret, SecretError, credentials_for, parse_secret
from datasync.tls import ca_bundle_dir, connector_options

from .kube import Json, Kube, core_path

log = logging.getLogger(__name__)

SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a condition reason
SECRET_KEY_MISSING = "SecretKeyMissing"  # noqa: S105
SECRET_KEY_INVALID = "SecretKeyInvalid"  # noqa: S105
AUTHENTICATION_FAILED = "AuthenticationFailed"
APP_UNREACHABLE = "AppUnreachable"
INVALID_SETTINGS = "InvalidSettings"
UNKNOWN_CONNECTOR = "UnknownConnector"
CHECK_FAILED = "CheckFailed"


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass
class Resolution:
    """The Secrets a connection references, as found in its namespace."""

    # directory under the secrets mount -> (Secret name, keys present)
    mounts: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    credentials: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    fingerprints: dict[str, str] = field(default_factory=dict)  # Secret -> hash of its data
    # Every referenced Secret -> the hash of the data read ("" when it does not exist), so
    # a Secret watch event can tell whether this resolution saw that data already.
    seen: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fingerprint(self) -> str:
        text = "|".join(f"{name}={digest}" for name, digest in sorted(self.fingerprints.items()))
        return hashlib.sha256(text.encode()).hexdigest()


def connector_class(app: str) -> type[Connector]:
    try:
        return registry.get(app)
    except registry.UnknownConnectorError:
        raise
    except Exception as error:  # a connector package that fails to import
        raise registry.UnknownConnectorError(
            f"connector {app!r} could not be loaded ({type(error).__name__})"
        ) from error


def spec_problems(spec: DataSyncConnectionSpec) -> list[Problem]:
    """What the models cannot know: connectors exist and support the chosen auth type."""
    problems: list[Problem] = []
    for side in Side:
        endpoint = spec.endpoint(side)
        try:
            cls = connector_class(endpoint.app)
        except registry.UnknownConnectorError as error:
            problems.append(Problem(UNKNOWN_CONNECTOR, f"spec.{side.value}.app: {error}"))
            continue
        if endpoint.tls and endpoint.tls.caBundle and not cls.accepts_ca_bundle:
            problems.append(
                Problem(
                    INVALID_SETTINGS,
                    f"spec.{side.value}.tls.caBundle: the {endpoint.app} connector does not use "
                    "it; remove it (postgres takes the CA in its Secret key `sslrootcert`)",
                )
            )
        if cls.auth_spec(endpoint.auth.type) is None:
            supported = ", ".join(spec.type for spec in cls.auth)
            problems.append(
                Problem(
                    "UnsupportedAuthType",
                    f"spec.{side.value}.auth.type: the {endpoint.app} connector does not support "
                    f"{endpoint.auth.type}; use one of: {supported}",
                )
            )
    return problems


def secret_data_hash(data: Mapping[str, str] | None) -> str:
    canonical = "\n".join(f"{key}={value}" for key, value in sorted((data or {}).items()))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def resolve(kube: Kube, namespace: str, spec: DataSyncConnectionSpec) -> Resolution:
    """Read every referenced Secret once (several references may name the same Secret) and
    parse it as `datasync sync` does: strict base64, UTF-8 text, empty values missing."""
    resolution = Resolution()
    read: dict[str, Json | None] = {}
    for wanted in _references(spec):
        if wanted.name not in read:
            read[wanted.name] = await kube.get(core_path(namespace, "secrets", wanted.name))
        _resolve_one(resolution, namespace, wanted, read[wanted.name])
    return resolution


@dataclass(frozen=True)
class _Reference:
    directory: str  # under the sync pod's secrets mount
    where: str  # the spec field naming the Secret
    name: str
    required: tuple[str, ...]
    purpose: str
    connector: type[Connector] | None = None  # auth Secrets: checked as `datasync sync` does
    auth_type: str = ""


def _references(spec: DataSyncConnectionSpec) -> list[_Reference]:
    wanted: list[_Reference] = []
    for side in Side:
        endpoint = spec.endpoint(side)
        try:
            cls = connector_class(endpoint.app)
        except registry.UnknownConnectorError:
            continue  # reported by spec_problems
        auth = cls.auth_spec(endpoint.auth.type)
        wanted.append(
            _Reference(
                side.value,
                f"spec.{side.value}.auth.secretRef",
                endpoint.auth.secretRef.name,
                auth.required_keys if auth else (),
                f"the {endpoint.app} connector's {endpoint.auth.type} auth",
                cls,
                str(endpoint.auth.type),
            )
        )
        bundle = endpoint.tls.caBundle if endpoint.tls else None
        if bundle is not None:
            wanted.append(
                _Reference(
                    ca_bundle_dir(side.value),
                    f"spec.{side.value}.tls.caBundle.secretRef",
                    bundle.secretRef.name,
                    (bundle.key,),
                    f"the {endpoint.app} connector's CA bundle (tls.caBundle.key)",
                )
            )
    if spec.state.type == StateStoreType.POSTGRESQL and spec.state.secretRef is not None:
        wanted.append(
            _Reference(
                "state",
                "spec.state.secretRef",
                spec.state.secretRef.name,
                ("dsn",),
                "the PostgreSQL state store",
            )
        )
    return wanted


def _resolve_one(
    resolution: Resolution, namespace: str, wanted: _Reference, stored: Json | None
) -> None:
    name, where, required = wanted.name, wanted.where, wanted.required
    if stored is None:
        resolution.seen[name] = ""
        keys = ", ".join(required) or "the connector's keys"
        resolution.problems.append(
            Problem(
                SECRET_NOT_FOUND,
                f"Secret {name!r} ({where}) was not found in namespace {namespace!r}; "
                f"create it with keys: {keys}",
            )
        )
        return
    raw: dict[str, str] = stored.get("data") or {}
    resolution.seen[name] = resolution.fingerprints[name] = secret_data_hash(raw)
    if wanted.directory.endswith("-ca"):  # only the CA key is mounted: the Secret may hold more
        raw = {key: value for key, value in raw.items() if key in required}
    resolution.mounts[wanted.directory] = (name, sorted(raw))
    try:
        secret = parse_secret({"metadata": {"name": name}, "data": raw}, where)
    except SecretError as error:  # names the Secret and the key, never the value
        resolution.problems.append(Problem(SECRET_KEY_INVALID, f"{where}: {error}"))
        return
    resolution.credentials[wanted.directory] = _usable(resolution, wanted, secret)


def _usable(resolution: Resolution, wanted: _Reference, secret: Secret) -> dict[str, str]:
    """The keys the sync pod will use; a missing or empty required key is a problem."""
    if wanted.connector is not None:
        try:
            return credentials_for(wanted.connector, wanted.auth_type, secret, wanted.where)
        except SecretError as error:
            resolution.problems.append(Problem(SECRET_KEY_MISSING, str(error)))
            return {}
    missing = [key for key in wanted.required if not secret.data.get(key)]
    if missing:
        resolution.problems.append(
            Problem(
                SECRET_KEY_MISSING,
                f"Secret {wanted.name!r} ({wanted.where}) has no key {', '.join(missing)}, "
                f"needed by {wanted.purpose}; add the key to the Secret",
            )
        )
    return dict(secret.data)


# The shared context is rebuilt this often, so a rotated CA file is picked up.
SHARED_TLS_SECONDS = 300.0
_shared_tls: tuple[float, str, ssl.SSLContext] | None = None


def shared_tls_context() -> ssl.SSLContext:
    """What httpx would verify an app without its own CA bundle with (DATASYNC_CA_BUNDLE,
    else httpx's default CAs), built once and shared by every check. Loading the CA file
    costs ~20 ms of CPU per HTTP client, two per check: at hundreds of connections that was
    the operator's largest single cost."""
    global _shared_tls
    bundle = os.environ.get(CA_BUNDLE_ENV, "")
    now = time.monotonic()
    if _shared_tls is None or _shared_tls[1] != bundle or now - _shared_tls[0] > SHARED_TLS_SECONDS:
        verify = tls_verification(bundle or True)  # ConfigurationError names the variable
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context()
        _shared_tls = (now, bundle, context)
    return _shared_tls[2]


async def _check_side(
    spec: DataSyncConnectionSpec,
    side: Side,
    credentials: Mapping[str, str],
    limit: float,
    ca_bundle: str | None = None,
) -> Problem | None:
    endpoint = spec.endpoint(side)
    secret = endpoint.auth.secretRef.name
    try:
        cls = connector_class(endpoint.app)
        options = connector_options(cls, endpoint, side.value, ca_bundle)
        if not options and cls.accepts_ca_bundle:
            options = {"tls_context": shared_tls_context()}
        connector = cls(endpoint.settings, credentials, AuthType(endpoint.auth.type), **options)
        async with connector:
            await asyncio.wait_for(connector.check(), limit)
    except AuthenticationError as error:
        key = f" (check key {error.credential!r})" if error.credential else ""
        return Problem(
            AUTHENTICATION_FAILED,
            f"{endpoint.app} rejected the credentials in Secret {secret!r}{key}: {error}",
        )
    except AppUnreachableError as error:
        return Problem(APP_UNREACHABLE, f"{endpoint.app} could not be reached: {error}")
    except TimeoutError:
        return Problem(
            APP_UNREACHABLE, f"{endpoint.app} did not answer the login check within {limit:g}s"
        )
    except ConfigurationError as error:
        where = f"spec.{side.value}.settings.{error.field}: " if error.field else ""
        if error.field == "tls.caBundle":
            where = ""  # the message names the spec field and the Secret key
        return Problem(INVALID_SETTINGS, f"{where}{error}")
    except registry.UnknownConnectorError as error:
        return Problem(UNKNOWN_CONNECTOR, str(error))
    except Exception as error:  # a connector bug must not stop the operator
        log.warning("credentials check of %s failed: %s", endpoint.app, type(error).__name__)
        return Problem(CHECK_FAILED, f"{endpoint.app} check failed ({type(error).__name__})")
    return None


async def check(
    spec: DataSyncConnectionSpec, resolution: Resolution, limit: float
) -> Problem | None:
    """Log in to both apps; the first problem found, or None when both accept."""
    if resolution.problems:
        return resolution.problems[0]
    for side in Side:
        endpoint = spec.endpoint(side)
        bundle = endpoint.tls.caBundle if endpoint.tls else None
        ca_bundle = (
            resolution.credentials.get(ca_bundle_dir(side.value), {}).get(bundle.key)
            if bundle is not None
            else None
        )
        problem = await _check_side(
            spec, side, resolution.credentials.get(side.value, {}), limit, ca_bundle
        )
        if problem is not None:
            return Problem(problem.reason, f"spec.{side.value}: {problem.message}")
    return None
