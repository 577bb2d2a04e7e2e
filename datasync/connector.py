"""The one interface every connector implements, and the errors it may raise.

The sync engine talks to apps only through `Connector`. A connector is constructed from
its settings (non-secret, from the spec) and credentials (the Secret's data), is used as an
async context manager, and exchanges `Record`s in batches. It never sees the other app.

Errors are split the Singer way:
- `FatalError`: the run cannot go on (bad credentials, app unreachable, misconfiguration);
- `RetriableError`: a transient fault that survived the HTTP policy's retries; the
  affected records are reported (`RateLimited`, `AppUnavailable`) and retried next run;
- per-record problems are never raised: they come back as `RecordError`s in `WriteResult`s.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ValidationError

from datasync.api.models import AuthType


class FieldType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    ENUMERATION = "enumeration"
    EMAIL = "email"
    PHONE = "phone"


@dataclass(frozen=True)
class FieldSchema:
    """One field of an app's object, as the app describes it."""

    name: str
    type: FieldType
    label: str = ""
    required: bool = False  # must have a value when a record is created
    read_only: bool = False
    options: tuple[str, ...] | None = None  # allowed values of an enumeration
    max_length: int | None = None


@dataclass(frozen=True)
class ObjectSchema:
    object_type: str
    fields: Mapping[str, FieldSchema]


@dataclass
class Record:
    """A record as read from an app. `fields` holds JSON-compatible values."""

    id: str
    fields: dict[str, Any]
    modified_at: datetime
    # Per-field last-change times, where the app exposes them (HubSpot property history).
    field_modified_at: dict[str, datetime] | None = None


@dataclass(frozen=True)
class RecordError:
    """Why one record (or one field of it) could not be written. Never carries a value."""

    reason: str  # e.g. InvalidEmail, RequiredFieldMissing, AppRejected, RateLimited
    message: str
    field: str | None = None
    code: str | None = None  # the app's own error code, passed through


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one record in a batch write, in the order of the request."""

    record_id: str | None
    error: RecordError | None = None
    # Fields the app refused while still writing the rest of the record.
    field_errors: tuple[RecordError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ReadPage:
    """A page of changed records and the watermark that is safe once it is processed."""

    records: list[Record]
    watermark: datetime | None


@dataclass(frozen=True)
class ListChanges:
    """What an inclusion list's join-order feed says (see `Connector.list_changes`)."""

    size: int  # how many members the list has now, as the app reports it
    joined: list[str]  # current members whose (latest) joining is at or after `since`
    latest: datetime | None  # when the newest member joined (None: empty list, or not read)
    # The app's clock when it described the list, before the members were read (HTTP Date,
    # say): whoever joins later joins after it. None when the app did not say.
    as_of: datetime | None = None


@dataclass(frozen=True)
class SecretKey:
    name: str
    description: str
    optional: bool = False


@dataclass(frozen=True)
class AuthSpec:
    type: AuthType
    description: str
    keys: tuple[SecretKey, ...] = field(default_factory=tuple)

    @property
    def required_keys(self) -> tuple[str, ...]:
        return tuple(key.name for key in self.keys if not key.optional)


class ConnectorError(Exception):
    """Base of the errors a connector raises. Messages never contain secret values."""


class FatalError(ConnectorError):
    """The run cannot continue."""


class ConfigurationError(FatalError):
    """Settings or credentials are missing or malformed; `field` names what to fix."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AuthenticationError(FatalError):
    """The app refused the credentials; `credential` names the Secret key to check."""

    def __init__(self, message: str, credential: str | None = None) -> None:
        super().__init__(message)
        self.credential = credential


class AppUnreachableError(FatalError):
    """The app could not be reached at all (DNS, TLS, connection refused, timeouts)."""


class RetriableError(ConnectorError):
    """A transient fault that outlived the retry policy."""

    def __init__(self, message: str, reason: str = "AppUnavailable") -> None:
        super().__init__(message)
        self.reason = reason  # AppUnavailable or RateLimited


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def parse_settings(model: type[SettingsT], settings: Mapping[str, str], app: str) -> SettingsT:
    """A connector's settings, or a ConfigurationError naming the first bad setting.
    Messages never repeat the given value."""
    try:
        return model.model_validate(dict(settings))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        if first["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            message = f"unknown {app} setting {name!r}; known settings: {known}"
        elif first["type"] == "missing":
            message = f"{app} setting {name!r} is required"
        else:
            reason = str(first["msg"]).removeprefix("Value error, ")
            message = f"{app} setting {name!r} is invalid: {reason}"
        raise ConfigurationError(message, field=name) from None


class Connector(abc.ABC):
    """An app, seen through its API. Subclasses live in `connectors/<name>/`."""

    name: ClassVar[str]
    title: ClassVar[str]
    auth: ClassVar[tuple[AuthSpec, ...]]
    settings_model: ClassVar[type[BaseModel]]
    # Per object type, the app's field for each canonical field name shared by all
    # connectors (email, firstName, lastName, phone, jobTitle, company, emailOptOut ...).
    # The default mappings of a connector pair join on these names; "email" is the
    # default identity.
    standard_fields: ClassVar[Mapping[str, Mapping[str, str]]]
    # Largest batch the app accepts for create/update/lookup calls.
    max_batch_size: ClassVar[int]
    # Hosts the connector may call unless the operator allows more (see datasync.http).
    default_allowed_hosts: ClassVar[tuple[str, ...]] = ()
    # True when the constructor takes `tls_context=` (an ssl.SSLContext built from
    # spec.<side>.tls.caBundle) for its HTTP client; see datasync.tls.
    accepts_ca_bundle: ClassVar[bool] = False
    # True when `create` is an upsert on the identity field: creating the same record again
    # changes the existing one and never makes a second. The engine may then commit its
    # state less often (see docs/engine.md, "Commits").
    creates_are_upserts: ClassVar[bool] = False

    def __init__(
        self,
        settings: Mapping[str, str],
        credentials: Mapping[str, str],
        auth_type: AuthType,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.auth_type = auth_type

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @property
    def api_calls(self) -> int:
        """How many API requests (or SQL statements) this connector has made."""
        return 0

    @abc.abstractmethod
    async def check(self) -> None:
        """Log in and make one cheap call. Raises AuthenticationError or
        AppUnreachableError with a message that says which credential or setting to check."""

    @abc.abstractmethod
    async def describe(self, object_type: str) -> ObjectSchema:
        """The object's fields: types, required, options, read-only, max length."""

    @abc.abstractmethod
    def read_changed(
        self, object_type: str, since: datetime | None, fields: Sequence[str]
    ) -> AsyncIterator[ReadPage]:
        """Records modified at or after `since` (all records when None), oldest first,
        page by page. Each page's watermark is safe to store once the page is synced."""

    @abc.abstractmethod
    async def read(
        self, object_type: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        """Records by id (missing ids are left out)."""

    @abc.abstractmethod
    async def lookup(
        self, object_type: str, field: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        """Records whose `field` equals one of `values` (case-insensitive for emails)."""

    @abc.abstractmethod
    async def list_members(self, list_ref: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are members of the list named or identified by `list_ref`."""

    @abc.abstractmethod
    def iter_list_members(self, list_ref: str) -> AsyncIterator[list[str]]:
        """All member ids of the list, page by page (ids only: cheap to page through)."""

    async def list_changes(self, list_ref: str, since: datetime | None) -> ListChanges | None:
        """The list's size now and the members who joined it (or joined again after
        leaving) at or after `since`, from the app's feed of memberships ordered by when
        they began; with `since=None`, no members: only the size and where the feed stands
        (`as_of`, or else `latest`). None (the default): the app has no such feed, and the
        engine pages through the whole list every run (`iter_list_members`)."""
        return None

    @abc.abstractmethod
    async def create(
        self, object_type: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        """Create records; one result per input, in order."""

    @abc.abstractmethod
    async def update(
        self, object_type: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[WriteResult]:
        """Update (id, fields) pairs; one result per input, in order."""

    @classmethod
    def identity_field(cls, object_type: str) -> str:
        return cls.standard_fields[object_type]["email"]

    @classmethod
    def auth_spec(cls, auth_type: AuthType | str) -> AuthSpec | None:
        for spec in cls.auth:
            if spec.type == AuthType(auth_type):
                return spec
        return None

    def require_credentials(self) -> AuthSpec:
        """The auth spec of `auth_type`; a ConfigurationError naming the first required
        Secret key that is missing or blank (never a value), or the unsupported auth type."""
        spec = self.auth_spec(self.auth_type)
        if spec is None:
            supported = ", ".join(str(known.type) for known in self.auth)
            raise ConfigurationError(
                f"{self.title} does not support auth type {self.auth_type}; use {supported}",
                field="auth.type",
            )
        for key in spec.required_keys:
            if not str(self.credentials.get(key) or "").strip():
                raise ConfigurationError(
                    f"the {self.title} Secret has no {key!r} key, needed for auth type "
                    f"{spec.type} (which needs {', '.join(spec.required_keys)}); add it to "
                    "the Secret",
                    field=key,
                )
        return spec
