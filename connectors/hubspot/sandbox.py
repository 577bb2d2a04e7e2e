"""A local, in-memory HubSpot: the documented CRM v3 endpoints for contacts, over real HTTP.

Serves the same paths and JSON shapes as api.hubapi.com (see README.md for the sources):
OAuth token endpoints (v1 and the dated 2026-03 one), bearer auth for private-app tokens,
contact search with filters, sorts, `after` paging and the 10,000-result window, batch
read/create/update (100 inputs, 207 multi-status with per-record errors), the properties
API, v3 lists and their memberships, `X-HubSpot-RateLimit-*` headers with the 429 body,
and the fault injection shared by all sandboxes (`datasync.sandbox.Fault`).

Rate limiting is OFF unless `rate_limit` is given (`--rate-limit 100/10s` on the command
line): tests then run at full speed, and rate-limit behaviour is tested on purpose.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from datasync.api.models import AuthType
from datasync.sandbox import Fault, SandboxApp

CONTACTS = "contacts"
CONTACT_OBJECT_TYPE_ID = "0-1"
BATCH_LIMIT = 100
SEARCH_PAGE_LIMIT = 200
MEMBERSHIP_PAGE_LIMIT = 250
DEFAULT_SEARCH_PROPERTIES = (
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
)
TOKEN_PATHS = ("/oauth/v1/token", "/oauth/2026-03/token")
LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
LEAD_STATUSES = (
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PropertyDefinition:
    name: str
    label: str
    type: str  # string, number, date, datetime, enumeration, bool
    field_type: str  # text, phonenumber, number, date, radio, select, booleancheckbox ...
    options: tuple[str, ...] = ()
    read_only: bool = False
    unique: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": "",
            "groupName": "contactinformation",
            "options": [
                {
                    "label": option.replace("_", " ").title(),
                    "value": option,
                    "displayOrder": index,
                    "hidden": False,
                }
                for index, option in enumerate(self.options)
            ],
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": self.unique,
            "hidden": False,
            "formField": not self.read_only,
            "modificationMetadata": {
                "archivable": not self.read_only,
                "readOnlyDefinition": True,
                "readOnlyValue": self.read_only,
            },
            "archived": False,
        }


def _text(name: str, label: str) -> PropertyDefinition:
    return PropertyDefinition(name, label, "string", "text")


CONTACT_PROPERTIES: tuple[PropertyDefinition, ...] = (
    _text("email", "Email"),
    _text("firstname", "First Name"),
    _text("lastname", "Last Name"),
    PropertyDefinition("phone", "Phone Number", "string", "phonenumber"),
    PropertyDefinition("mobilephone", "Mobile Phone Number", "string", "phonenumber"),
    _text("jobtitle", "Job Title"),
    _text("company", "Company Name"),
    _text("website", "Website URL"),
    _text("address", "Street Address"),
    _text("city", "City"),
    _text("state", "State/Region"),
    _text("zip", "Postal Code"),
    _text("country", "Country/Region"),
    PropertyDefinition(
        "lifecyclestage", "Lifecycle Stage", "enumeration", "radio", LIFECYCLE_STAGES
    ),
    PropertyDefinition("hs_lead_status", "Lead Status", "enumeration", "select", LEAD_STATUSES),
    PropertyDefinition(
        "hs_email_optout",
        "Unsubscribed from all email",
        "bool",
        "booleancheckbox",
        ("true", "false"),
    ),
    PropertyDefinition("annualrevenue", "Annual Revenue", "number", "number"),
    PropertyDefinition("date_of_birth", "Date of birth", "date", "date"),
    PropertyDefinition("createdate", "Create Date", "datetime", "date", read_only=True),
    PropertyDefinition(
        "lastmodifieddate", "Last Modified Date", "datetime", "date", read_only=True
    ),
    PropertyDefinition(
        "hs_object_id", "Record ID", "number", "number", read_only=True, unique=True
    ),
)


def iso_ms(milliseconds: int) -> str:
    """HubSpot's datetime format: ISO 8601, millisecond precision, Z."""
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{milliseconds % 1000:03d}Z"


def parse_time_ms(value: Any) -> int | None:
    """Epoch milliseconds from epoch-ms numbers/strings, ISO datetimes or ISO dates."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


class ModifiedIndex:
    """Contact ids ordered by (lastmodifieddate, id): the order of an incremental read,
    so a search on a lastmodifieddate range reads a slice instead of every contact."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, tuple[int, str], str]] = []

    def add(self, modified_ms: int, record_id: str) -> None:
        bisect.insort(self.keys, (modified_ms, _id_key(record_id), record_id))

    def remove(self, modified_ms: int, record_id: str) -> None:
        key = (modified_ms, _id_key(record_id), record_id)
        index = bisect.bisect_left(self.keys, key)
        if index < len(self.keys) and self.keys[index] == key:
            del self.keys[index]

    def between(self, low: float, high: float) -> list[str]:
        """Ids modified in [low, high] (milliseconds), oldest first, ties by id."""
        start = bisect.bisect_left(self.keys, (low,))
        end = bisect.bisect_right(self.keys, (high, (1 << 63, "")))
        return [key[2] for key in self.keys[start:end]]


@dataclass
class Contact:
    id: str
    properties: dict[str, str]
    created_ms: int
    modified_ms: int
    # The sandbox's index, kept in step however modified_ms is set (tests set it too).
    index: ModifiedIndex | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "modified_ms" and self.__dict__.get("index") is not None:
            self.index.remove(self.__dict__["modified_ms"], self.id)  # type: ignore[union-attr]
            self.index.add(value, self.id)  # type: ignore[union-attr]
        object.__setattr__(self, name, value)

    def to_json(self, names: Iterable[str]) -> dict[str, Any]:
        values = self.all_properties()
        return {
            "id": self.id,
            "properties": {name: values.get(name) for name in names},
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.modified_ms),
            "archived": False,
        }

    def all_properties(self) -> dict[str, str]:
        values = dict(self.properties)
        values["hs_object_id"] = self.id
        values["createdate"] = iso_ms(self.created_ms)
        values["lastmodifieddate"] = iso_ms(self.modified_ms)
        return values


@dataclass
class HubSpotList:
    id: str
    name: str
    created_ms: int
    members: dict[str, int] = field(default_factory=dict)  # record id -> added at (ms)
    updated_ms: int = 0  # moves with every membership change

    def join_order(self) -> list[tuple[str, int]]:
        """Members sorted by when they were (last) added, oldest first."""
        return sorted(self.members.items(), key=lambda item: (item[1], _id_key(item[0])))

    def to_json(self) -> dict[str, Any]:
        return {
            "listId": self.id,
            "name": self.name,
            "objectTypeId": CONTACT_OBJECT_TYPE_ID,
            "processingType": "MANUAL",
            "processingStatus": "COMPLETE",
            "listVersion": 1,
            "size": len(self.members),
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(max(self.created_ms, self.updated_ms)),
        }


class ApiError(Exception):
    """An error answered with HubSpot's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str = "VALIDATION_ERROR",
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.errors = errors or []
        self.context = context or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
        }
        if self.errors:
            body["errors"] = self.errors
        if self.context:
            body["context"] = self.context
        return body


@dataclass
class RecordProblem:
    """Why one input of a batch write was refused (HubSpot's per-record error)."""

    category: str
    message: str
    code: str | None = None
    property_name: str | None = None
    context: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self, extra_context: Mapping[str, list[str]]) -> dict[str, Any]:
        context = dict(self.context)
        context.update(extra_context)
        error: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": context,
        }
        if self.code is not None:
            detail_context = {"propertyName": [self.property_name]} if self.property_name else {}
            error["errors"] = [
                {"message": self.message, "code": self.code, "context": detail_context}
            ]
        return error


def _validation_problem(name: str, code: str, detail: str) -> RecordProblem:
    # HubSpot embeds a JSON array of property errors in the message; so does the sandbox.
    embedded = json.dumps(
        [{"isValid": False, "message": detail, "error": code, "name": name}],
        separators=(",", ":"),
    )
    return RecordProblem(
        category="VALIDATION_ERROR",
        message=f"Property values were not valid: {embedded}",
        code=code,
        property_name=name,
    )


@dataclass
class HubSpotSandbox(SandboxApp):
    """An in-memory HubSpot account serving the documented contacts APIs."""

    app_name: ClassVar[str] = "hubspot"

    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_secret: str = field(default_factory=lambda: str(uuid.uuid4()))
    refresh_token: str = field(default_factory=lambda: "na1-" + secrets.token_hex(16))
    private_app_token: str = field(default_factory=lambda: "pat-na1-" + str(uuid.uuid4()))
    token_ttl: int = 1800  # expires_in of issued access tokens, seconds
    search_window: int = 10_000  # HubSpot's total-result limit of one search
    portal_id: int = 24_680_135
    # State (tests may read it; change it through the helper methods).
    contacts: dict[str, Contact] = field(default_factory=dict)
    lists: dict[str, HubSpotList] = field(default_factory=dict)
    tokens_issued: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    path_counts: dict[str, int] = field(default_factory=dict)
    refresh_token_revoked: bool = False
    _access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    _modified: ModifiedIndex = field(default_factory=ModifiedIndex)
    _by_email: dict[str, str] = field(default_factory=dict)
    _next_id: int = 1001
    _next_list_id: int = 1
    _last_ms: int = 0
    _window_started: float = 0.0
    _window_count: int = 0
    _daily_count: int = 0

    # ------------------------------------------------------------ SandboxApp API

    def credentials(self, auth_type: AuthType | str) -> dict[str, str]:
        if AuthType(auth_type) == AuthType.OAUTH:
            return {
                "clientId": self.client_id,
                "clientSecret": self.client_secret,
                "refreshToken": self.refresh_token,
            }
        return {"accessToken": self.private_app_token}

    def connector_settings(self) -> dict[str, str]:
        return {"baseUrl": self.base_url}

    def inject(self, fault: Fault) -> None:
        if fault.kind == "revoke_refresh_token":
            self.revoke_refresh_token()
            return
        super().inject(fault)

    def load(self, records: Iterable[Mapping[str, Any]]) -> int:
        count = 0
        for record in records:
            values = dict(record)
            list_names = values.pop("lists", None) or []
            record_id = values.pop("id", None)
            contact = self._insert(
                {key: _as_text(value) for key, value in values.items()},
                record_id=str(record_id) if record_id is not None else None,
            )
            for name in list_names:
                self.add_to_list(self._list_named(name, create=True).id, [contact.id])
            count += 1
        return count

    # ------------------------------------------------------------ helpers for tests

    def records(self) -> list[dict[str, Any]]:
        return [contact.to_json(contact.all_properties()) for contact in self.contacts.values()]

    def get(self, record_id: str) -> dict[str, Any] | None:
        contact = self.contacts.get(str(record_id))
        return contact.to_json(contact.all_properties()) if contact else None

    def set_properties(self, record_id: str, properties: Mapping[str, Any]) -> None:
        """An edit by a user in HubSpot's UI: bumps lastmodifieddate."""
        contact = self.contacts[str(record_id)]
        self._apply(contact, {key: _as_text(value) for key, value in properties.items()})

    def create_list(self, name: str) -> str:
        return self._list_named(name, create=True).id

    def add_to_list(self, list_id: str, record_ids: Iterable[str]) -> None:
        hubspot_list = self.lists[str(list_id)]
        for record_id in record_ids:
            if str(record_id) not in hubspot_list.members:
                # Joining again after leaving is a new membershipTimestamp.
                hubspot_list.members[str(record_id)] = self._tick()
                hubspot_list.updated_ms = hubspot_list.members[str(record_id)]

    def remove_from_list(self, list_id: str, record_ids: Iterable[str]) -> None:
        hubspot_list = self.lists[str(list_id)]
        for record_id in record_ids:
            if hubspot_list.members.pop(str(record_id), None) is not None:
                hubspot_list.updated_ms = self._tick()

    def revoke_refresh_token(self) -> None:
        """The user uninstalled the app: the refresh token and its access tokens die."""
        self.refresh_token_revoked = True
        self._access_tokens.clear()

    def exhaust_rate_limit(self) -> None:
        """Another integration used up the current rate-limit window."""
        assert self.rate_limit is not None, "set rate_limit first"
        self._window_started = time.monotonic()
        self._window_count = self.rate_limit.requests

    def expire_access_tokens(self) -> None:
        self._access_tokens = {token: 0.0 for token in self._access_tokens}

    # ------------------------------------------------------------ state

    def _tick(self) -> int:
        """Strictly increasing millisecond clock: every write gets its own timestamp."""
        now = int(time.time() * 1000)
        self._last_ms = max(now, self._last_ms + 1)
        return self._last_ms

    def _insert(self, properties: dict[str, str], record_id: str | None = None) -> Contact:
        if record_id is None:
            record_id = str(self._next_id)
        if record_id.isdigit():
            self._next_id = max(self._next_id, int(record_id) + 1)
        now = self._tick()
        properties = {key: value for key, value in properties.items() if key not in _DERIVED}
        if "email" in properties:
            properties["email"] = properties["email"].strip().lower()
        contact = Contact(id=record_id, properties=properties, created_ms=now, modified_ms=now)
        replaced = self.contacts.get(record_id)
        if replaced is not None:
            self._modified.remove(replaced.modified_ms, record_id)
            replaced.index = None
        self.contacts[record_id] = contact
        self._modified.add(now, record_id)
        contact.index = self._modified
        if properties.get("email"):
            self._by_email[properties["email"]] = record_id
        return contact

    def _apply(self, contact: Contact, properties: Mapping[str, str]) -> None:
        for name, value in properties.items():
            if name in _DERIVED:
                continue
            if name == "email":
                old = contact.properties.get("email")
                if old:
                    self._by_email.pop(old, None)
                value = value.strip().lower()
                if value:
                    self._by_email[value] = contact.id
            if value == "":
                contact.properties.pop(name, None)
            else:
                contact.properties[name] = value
        contact.modified_ms = self._tick()

    def _list_named(self, name: str, create: bool = False) -> HubSpotList:
        for hubspot_list in self.lists.values():
            if hubspot_list.name.lower() == name.lower():
                return hubspot_list
        if not create:
            raise ApiError(404, f"List with name {name} does not exist", "OBJECT_NOT_FOUND")
        list_id = str(self._next_list_id)
        self._next_list_id += 1
        created = HubSpotList(id=list_id, name=name, created_ms=self._tick())
        self.lists[list_id] = created
        return created

    # ------------------------------------------------------------ application

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._accounting, self._faults, self._rate_limit, self._errors],
            client_max_size=8 * 1024 * 1024,
        )
        for path in TOKEN_PATHS:
            app.router.add_post(path, self._token)
        base = "/crm/v3/objects/{objectType}"
        app.router.add_get(base, self._list_objects)
        app.router.add_post(base + "/search", self._search)
        app.router.add_post(base + "/batch/read", self._batch_read)
        app.router.add_post(base + "/batch/create", self._batch_create)
        app.router.add_post(base + "/batch/update", self._batch_update)
        app.router.add_get(base + "/{recordId}", self._get_object)
        app.router.add_get("/crm/v3/properties/{objectType}", self._properties)
        app.router.add_post("/crm/v3/lists", self._create_list_handler)
        app.router.add_post("/crm/v3/lists/records/memberships/batch/read", self._memberships_batch)
        app.router.add_get(
            "/crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}", self._list_by_name
        )
        app.router.add_get("/crm/v3/lists/{listId}", self._get_list)
        app.router.add_get("/crm/v3/lists/{listId}/memberships", self._memberships)
        app.router.add_get(
            "/crm/v3/lists/{listId}/memberships/join-order", self._memberships_join_order
        )
        app.router.add_put("/crm/v3/lists/{listId}/memberships/add", self._memberships_add)
        app.router.add_put("/crm/v3/lists/{listId}/memberships/remove", self._memberships_remove)
        return app

    # ------------------------------------------------------------ middlewares

    @web.middleware
    async def _accounting(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests_served += 1
        self.path_counts[request.path] = self.path_counts.get(request.path, 0) + 1
        response = await handler(request)
        self.status_counts[response.status] = self.status_counts.get(response.status, 0) + 1
        return response

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = self._take_fault(request.path)
        if fault is None:
            return await handler(request)
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return await handler(request)
        if fault.kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            # The client already saw the connection drop; this answer goes nowhere.
            return web.Response(status=500)
        if fault.kind == "malformed":
            return web.Response(
                status=200, text='{"results": [{"id": ', content_type="application/json"
            )
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.status == 429:
            body = _rate_limit_body("TEN_SECONDLY_ROLLING")
        else:
            body = ApiError(fault.status, "Injected fault", "INTERNAL_ERROR").body()
        return web.json_response(body, status=fault.status, headers=headers)

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and path.startswith(fault.path_prefix):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @web.middleware
    async def _rate_limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.rate_limit is None or request.path in TOKEN_PATHS:
            return await handler(request)
        now = time.monotonic()
        if now - self._window_started >= self.rate_limit.per_seconds:
            self._window_started = now
            self._window_count = 0
        private_app = _bearer(request) == self.private_app_token
        interval_ms = int(self.rate_limit.per_seconds * 1000)
        if self._window_count >= self.rate_limit.requests:
            headers = self._rate_headers(0, interval_ms, private_app)
            return web.json_response(
                _rate_limit_body("TEN_SECONDLY_ROLLING"), status=429, headers=headers
            )
        self._window_count += 1
        self._daily_count += 1
        remaining = self.rate_limit.requests - self._window_count
        response = await handler(request)
        response.headers.update(self._rate_headers(remaining, interval_ms, private_app))
        return response

    def _rate_headers(self, remaining: int, interval_ms: int, private_app: bool) -> dict[str, str]:
        assert self.rate_limit is not None
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.rate_limit.requests),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(interval_ms),
        }
        if private_app:  # OAuth calls carry no daily headers: OAuth apps have no daily limit
            headers["X-HubSpot-RateLimit-Daily"] = "250000"
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, 250_000 - self._daily_count)
            )
        return headers

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in TOKEN_PATHS:
                self._authenticate(request)
            return await handler(request)
        except ApiError as error:
            return web.json_response(error.body(), status=error.status)

    def _authenticate(self, request: web.Request) -> None:
        token = _bearer(request)
        if token is None:
            raise ApiError(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        if token == self.private_app_token:
            return
        expiry = self._access_tokens.get(token)
        if expiry is None:
            raise ApiError(
                401,
                "Authentication credentials not found.",
                "INVALID_AUTHENTICATION",
            )
        if expiry <= time.monotonic():
            raise ApiError(
                401,
                "The OAuth token used to make this call expired.",
                "EXPIRED_AUTHENTICATION",
            )

    # ------------------------------------------------------------ OAuth

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        if grant_type != "refresh_token":
            return _oauth_error(
                "BAD_GRANT_TYPE", "unsupported_grant_type", "grant_type must be refresh_token"
            )
        if str(form.get("client_id", "")) != self.client_id:
            return _oauth_error("BAD_CLIENT_ID", "invalid_client", "missing or unknown client id")
        if str(form.get("client_secret", "")) != self.client_secret:
            return _oauth_error(
                "BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret"
            )
        if self.refresh_token_revoked or str(form.get("refresh_token", "")) != self.refresh_token:
            return _oauth_error(
                "BAD_REFRESH_TOKEN", "invalid_grant", "missing or unknown refresh token"
            )
        access_token = "CN" + secrets.token_urlsafe(48)
        self._access_tokens[access_token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        return web.json_response(
            {
                "token_type": "bearer",
                "refresh_token": self.refresh_token,
                "access_token": access_token,
                "expires_in": self.token_ttl,
                "hub_id": self.portal_id,
            }
        )

    # ------------------------------------------------------------ objects

    async def _list_objects(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        limit = _int_param(request.query.get("limit", "10"), "limit", maximum=100)
        after = _int_param(request.query.get("after", "0"), "after")
        names = _csv(request.query.get("properties")) or list(DEFAULT_SEARCH_PROPERTIES)
        ordered = sorted(self.contacts.values(), key=lambda contact: _id_key(contact.id))
        page = ordered[after : after + limit]
        body: dict[str, Any] = {"results": [contact.to_json(names) for contact in page]}
        if after + limit < len(ordered):
            body["paging"] = {"next": {"after": str(after + limit)}}
        return web.json_response(body)

    async def _get_object(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        record_id = request.match_info["recordId"]
        names = _csv(request.query.get("properties")) or list(DEFAULT_SEARCH_PROPERTIES)
        if request.query.get("idProperty") == "email":
            record_id = self._by_email.get(record_id.lower(), "")
        contact = self.contacts.get(record_id)
        if contact is None:
            raise ApiError(404, "Object not found.", "OBJECT_NOT_FOUND")
        return web.json_response(contact.to_json(names))

    async def _search(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        body = await _json_body(request)
        limit = _int_param(body.get("limit", 10), "limit", maximum=SEARCH_PAGE_LIMIT)
        after = _int_param(body.get("after", 0) or 0, "after")
        if after >= self.search_window:
            raise ApiError(
                400,
                f"Paging past {self.search_window} total results is not supported by the "
                "search API; narrow the search with filters.",
            )
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list):
            raise ApiError(400, "filterGroups must be an array")
        sorts = body.get("sorts") or []
        in_range = self._modified_range(groups)
        if in_range is not None and in_range[1] and sorts == [MODIFIED_ASCENDING]:
            # Only a lastmodifieddate range, in its own order: the index slice is the answer.
            matches = [self.contacts[record_id] for record_id in in_range[0]]
        else:
            pool: Iterable[Contact] = (
                self.contacts.values()
                if in_range is None
                else [self.contacts[record_id] for record_id in in_range[0]]
            )
            matches = [
                contact
                for contact in pool
                if not groups or any(self._matches_group(contact, group) for group in groups)
            ]
            matches = self._sorted(matches, sorts)
        names = [str(name) for name in body.get("properties") or DEFAULT_SEARCH_PROPERTIES]
        page = matches[after : after + limit]
        response: dict[str, Any] = {
            "total": len(matches),
            "results": [contact.to_json(names) for contact in page],
        }
        if after + limit < len(matches):
            response["paging"] = {"next": {"after": str(after + limit)}}
        return web.json_response(response)

    def _modified_range(self, groups: list[Any]) -> tuple[list[str], bool] | None:
        """For no filter group or one, the ids within its lastmodifieddate bounds (every
        match is among them) and whether those bounds are its only conditions; None when
        the index cannot narrow the search (several groups, a value that is no time)."""
        if len(groups) > 1 or (groups and not isinstance(groups[0], dict)):
            return None
        filters = (groups[0].get("filters") or []) if groups else []
        low, high, only_range = float("-inf"), float("inf"), True
        for condition in filters:
            if not isinstance(condition, dict):
                return None
            operator = str(condition.get("operator", "EQ")).upper()
            if condition.get("propertyName") != MODIFIED or operator not in _RANGE:
                only_range = False
                continue
            # Compared as _matches compares them; times are whole milliseconds.
            value = _compare_value(condition.get("value"), _PROPERTIES[MODIFIED])
            top = value
            if operator == "BETWEEN":
                top = _compare_value(condition.get("highValue"), _PROPERTIES[MODIFIED])
            if value is None or top is None:
                return None
            if operator in ("GT", "GTE", "EQ", "BETWEEN"):
                low = max(low, math.floor(value) + 1 if operator == "GT" else math.ceil(value))
            if operator in ("LT", "LTE", "EQ", "BETWEEN"):
                high = min(high, math.ceil(top) - 1 if operator == "LT" else math.floor(top))
        return self._modified.between(low, high), only_range

    def _sorted(self, contacts: Iterable[Contact], sorts: list[Any]) -> list[Contact]:
        """HubSpot applies one sort rule; the sandbox breaks ties by record id."""
        ordered = sorted(contacts, key=lambda contact: _id_key(contact.id))
        if not sorts:
            return ordered
        first = sorts[0]
        if isinstance(first, str):
            name, descending = first.lstrip("-"), first.startswith("-")
        else:
            name = str(first.get("propertyName", ""))
            descending = str(first.get("direction", "ASCENDING")).upper() == "DESCENDING"
        definition = _PROPERTIES.get(name)
        if definition is None:
            raise ApiError(400, f"There was a problem with the request: unknown property {name}")
        values = {
            contact.id: _compare_value(contact.all_properties().get(name), definition)
            for contact in ordered
        }
        present = [contact for contact in ordered if values[contact.id] not in (None, "")]
        missing = [contact for contact in ordered if values[contact.id] in (None, "")]
        present.sort(key=lambda contact: values[contact.id], reverse=descending)
        return present + missing

    def _matches_group(self, contact: Contact, group: Mapping[str, Any]) -> bool:
        filters = group.get("filters") or []
        return all(self._matches(contact, condition) for condition in filters)

    def _matches(self, contact: Contact, condition: Mapping[str, Any]) -> bool:
        name = str(condition.get("propertyName", ""))
        operator = str(condition.get("operator", "EQ")).upper()
        definition = _PROPERTIES.get(name)
        if definition is None:
            raise ApiError(400, f"There was a problem with the request: unknown property {name}")
        actual = contact.all_properties().get(name)
        if operator == "HAS_PROPERTY":
            return actual not in (None, "")
        if operator == "NOT_HAS_PROPERTY":
            return actual in (None, "")
        if operator in {"IN", "NOT_IN"}:
            wanted = {_compare_value(value, definition) for value in condition.get("values", [])}
            found = actual is not None and _compare_value(actual, definition) in wanted
            return found if operator == "IN" else not found
        if actual is None:
            return operator == "NEQ"
        left = _compare_value(actual, definition)
        right = _compare_value(condition.get("value"), definition)
        if operator == "EQ":
            return bool(left == right)
        if operator == "NEQ":
            return bool(left != right)
        if operator == "BETWEEN":
            high = _compare_value(condition.get("highValue"), definition)
            return _ordered(right, left) and _ordered(left, high)
        if operator == "LT":
            return _ordered(left, right) and left != right
        if operator == "LTE":
            return _ordered(left, right)
        if operator == "GT":
            return _ordered(right, left) and left != right
        if operator == "GTE":
            return _ordered(right, left)
        raise ApiError(400, f"Unsupported filter operator {operator}")

    async def _batch_read(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        body = await _json_body(request)
        inputs = _batch_inputs(body)
        names = [str(name) for name in body.get("properties") or DEFAULT_SEARCH_PROPERTIES]
        id_property = body.get("idProperty")
        if id_property not in (None, "", "hs_object_id", "email"):
            raise ApiError(400, f"{id_property} is not a unique property")
        results: list[dict[str, Any]] = []
        missing: list[str] = []
        seen: set[str] = set()
        for item in inputs:
            key = str(item.get("id", ""))
            if id_property == "email":
                record_id = self._by_email.get(key.strip().lower())
            else:
                record_id = key if key in self.contacts else None
            if record_id is None:
                missing.append(key)
                continue
            if record_id in seen:
                continue
            seen.add(record_id)
            results.append(self.contacts[record_id].to_json(names))
        errors = []
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": missing},
                }
            )
        return _batch_response(results, errors)

    async def _batch_create(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        body = await _json_body(request)
        inputs = _batch_inputs(body)
        multi_status = all(item.get("objectWriteTraceId") for item in inputs)
        planned: list[tuple[Mapping[str, Any], dict[str, str] | RecordProblem]] = []
        batch_emails: dict[str, int] = {}
        for index, item in enumerate(inputs):
            checked = self._validate(item.get("properties") or {}, None)
            if isinstance(checked, dict) and checked.get("email"):
                email = checked["email"].strip().lower()
                existing = self._by_email.get(email)
                if existing is not None or email in batch_emails:
                    checked = RecordProblem(
                        category="CONFLICT",
                        message=f"Contact already exists. Existing ID: {existing or ''}".strip(),
                        context={"existingId": [existing]} if existing else {},
                    )
                else:
                    batch_emails[email] = index
            planned.append((item, checked))
        problems = [checked for _, checked in planned if isinstance(checked, RecordProblem)]
        if problems and not multi_status:
            first = problems[0]
            status = 409 if first.category == "CONFLICT" else 400
            raise ApiError(status, first.message, first.category, context=first.context)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item, checked in planned:
            trace = item.get("objectWriteTraceId")
            trace_context = {"objectWriteTraceId": [str(trace)]} if trace else {}
            if isinstance(checked, RecordProblem):
                errors.append(checked.to_json(trace_context))
                continue
            contact = self._insert(checked)
            result = contact.to_json(contact.all_properties())
            if trace:
                result["objectWriteTraceId"] = str(trace)
            results.append(result)
        return _batch_response(results, errors, created=True)

    async def _batch_update(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        body = await _json_body(request)
        inputs = _batch_inputs(body)
        ids = [str(item.get("id", "")) for item in inputs]
        duplicates = sorted({value for value in ids if ids.count(value) > 1})
        if duplicates:
            raise ApiError(400, f"Duplicate IDs found in batch input: {duplicates}")
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        missing: list[str] = []
        for record_id, item in zip(ids, inputs, strict=True):
            trace = item.get("objectWriteTraceId")
            context: dict[str, list[str]] = {"ids": [record_id]}
            if trace:
                context["objectWriteTraceId"] = [str(trace)]
            contact = self.contacts.get(record_id)
            if contact is None:
                missing.append(record_id)
                continue
            checked = self._validate(item.get("properties") or {}, contact)
            if isinstance(checked, dict) and checked.get("email"):
                email = checked["email"].strip().lower()
                owner = self._by_email.get(email)
                if owner is not None and owner != record_id:
                    checked = RecordProblem(
                        category="CONFLICT",
                        message=f"Contact already exists. Existing ID: {owner}",
                        context={"existingId": [owner]},
                    )
            if isinstance(checked, RecordProblem):
                errors.append(checked.to_json(context))
                continue
            self._apply(contact, checked)
            result = contact.to_json(contact.all_properties())
            if trace:
                result["objectWriteTraceId"] = str(trace)
            results.append(result)
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": missing},
                }
            )
        return _batch_response(results, errors)

    def _validate(
        self, properties: Mapping[str, Any], contact: Contact | None
    ) -> dict[str, str] | RecordProblem:
        """The properties as stored strings, or the first problem HubSpot would report."""
        if not isinstance(properties, Mapping):
            return RecordProblem("VALIDATION_ERROR", "properties must be an object")
        checked: dict[str, str] = {}
        for name, raw in properties.items():
            definition = _PROPERTIES.get(name)
            if definition is None:
                return _validation_problem(
                    name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                )
            if definition.read_only:
                return _validation_problem(
                    name,
                    "READ_ONLY_VALUE",
                    f"{name} is a read only property; its value cannot be set.",
                )
            value = _as_text(raw)
            if value == "":
                checked[name] = ""
                continue
            problem = _check_value(definition, value)
            if problem is not None:
                return problem
            if definition.type == "bool":
                value = value.lower()
            if definition.type == "date":
                milliseconds = parse_time_ms(value)
                assert milliseconds is not None
                value = iso_ms(milliseconds)[:10]
            checked[name] = value
        return checked

    # ------------------------------------------------------------ properties

    async def _properties(self, request: web.Request) -> web.StreamResponse:
        _contacts_only(request)
        return web.json_response(
            {"results": [definition.to_json() for definition in CONTACT_PROPERTIES]}
        )

    # ------------------------------------------------------------ lists

    async def _create_list_handler(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        name = str(body.get("name", "")).strip()
        if not name:
            raise ApiError(400, "name is required")
        if body.get("objectTypeId") not in (None, CONTACT_OBJECT_TYPE_ID):
            raise ApiError(400, "only contact lists (objectTypeId 0-1) exist in the sandbox")
        if any(existing.name.lower() == name.lower() for existing in self.lists.values()):
            raise ApiError(400, f"A list named {name} already exists", "CONFLICT")
        return web.json_response({"list": self._list_named(name, create=True).to_json()})

    def _list(self, request: web.Request) -> HubSpotList:
        hubspot_list = self.lists.get(request.match_info["listId"])
        if hubspot_list is None:
            raise ApiError(404, "List does not exist", "OBJECT_NOT_FOUND")
        return hubspot_list

    async def _get_list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"list": self._list(request).to_json()})

    async def _list_by_name(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["objectTypeId"] != CONTACT_OBJECT_TYPE_ID:
            raise ApiError(404, "List does not exist", "OBJECT_NOT_FOUND")
        hubspot_list = self._list_named(request.match_info["listName"])
        return web.json_response({"list": hubspot_list.to_json()})

    async def _memberships(self, request: web.Request) -> web.StreamResponse:
        hubspot_list = self._list(request)
        limit = _int_param(
            request.query.get("limit", "100"), "limit", maximum=MEMBERSHIP_PAGE_LIMIT
        )
        after = _int_param(request.query.get("after", "0") or "0", "after")
        ordered = sorted(hubspot_list.members.items(), key=lambda item: _id_key(item[0]))
        page = ordered[after : after + limit]
        body: dict[str, Any] = {
            "results": [
                {"recordId": record_id, "membershipTimestamp": iso_ms(added)}
                for record_id, added in page
            ],
            "total": len(ordered),
        }
        if after + limit < len(ordered):
            body["paging"] = {"next": {"after": str(after + limit)}}
        return web.json_response(body)

    async def _memberships_join_order(self, request: web.Request) -> web.StreamResponse:
        """Memberships sorted by when the records were added: ascending from the `after`
        offset (or the start), descending from the `before` offset when only `before` is
        given (HubSpot: "If only a before offset is provided, then the records are sorted
        in descending order"; `after` takes precedence)."""
        hubspot_list = self._list(request)
        limit = _int_param(
            request.query.get("limit", "100"), "limit", maximum=MEMBERSHIP_PAGE_LIMIT
        )
        ordered = hubspot_list.join_order()
        paging: dict[str, Any] = {}
        if "after" in request.query or "before" not in request.query:
            start = _int_param(request.query.get("after", "0") or "0", "after")
            page = ordered[start : start + limit]
            if start + limit < len(ordered):
                paging["next"] = {"after": str(start + limit)}
            if start > 0:
                paging["prev"] = {"before": str(min(start, len(ordered)))}
        else:
            end = min(_int_param(request.query["before"], "before"), len(ordered))
            first = max(0, end - limit)
            page = list(reversed(ordered[first:end]))
            if first > 0:
                paging["prev"] = {"before": str(first)}
            if end < len(ordered):
                paging["next"] = {"after": str(end)}
        body: dict[str, Any] = {
            "results": [
                {"recordId": record_id, "membershipTimestamp": iso_ms(added)}
                for record_id, added in page
            ],
            "total": len(ordered),
        }
        if paging:
            body["paging"] = paging
        return web.json_response(body)

    async def _memberships_add(self, request: web.Request) -> web.StreamResponse:
        hubspot_list = self._list(request)
        record_ids = [str(value) for value in await _json_body(request, array=True)]
        added = [value for value in record_ids if value not in hubspot_list.members]
        self.add_to_list(hubspot_list.id, added)
        return web.json_response({"recordIdsAdded": added, "recordIdsMissing": []})

    async def _memberships_remove(self, request: web.Request) -> web.StreamResponse:
        hubspot_list = self._list(request)
        record_ids = [str(value) for value in await _json_body(request, array=True)]
        removed = [value for value in record_ids if value in hubspot_list.members]
        self.remove_from_list(hubspot_list.id, removed)
        return web.json_response({"recordIdsRemoved": removed, "recordIdsMissing": []})

    async def _memberships_batch(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        inputs = _batch_inputs(body)
        results = []
        for item in inputs:
            record_id = str(item.get("recordId", ""))
            memberships = [
                {
                    "listId": hubspot_list.id,
                    "listVersion": 1,
                    "firstAddedTimestamp": iso_ms(hubspot_list.members[record_id]),
                    "lastAddedTimestamp": iso_ms(hubspot_list.members[record_id]),
                }
                for hubspot_list in self.lists.values()
                if record_id in hubspot_list.members
            ]
            results.append(
                {
                    "objectTypeId": str(item.get("objectTypeId", CONTACT_OBJECT_TYPE_ID)),
                    "recordId": record_id,
                    "recordListMemberships": memberships,
                }
            )
        return _batch_response(results, [])


# ---------------------------------------------------------------- module helpers

_PROPERTIES: dict[str, PropertyDefinition] = {
    definition.name: definition for definition in CONTACT_PROPERTIES
}
_DERIVED = frozenset({"hs_object_id", "createdate", "lastmodifieddate"})
_RANGE = frozenset({"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"})
MODIFIED = "lastmodifieddate"
MODIFIED_ASCENDING = {"propertyName": MODIFIED, "direction": "ASCENDING"}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _id_key(record_id: str) -> tuple[int, str]:
    return (int(record_id), "") if record_id.isdigit() else (1 << 62, record_id)


def _number(raw: str, definition: PropertyDefinition | None) -> float | None:
    if definition is not None and definition.type in {"date", "datetime"}:
        milliseconds = parse_time_ms(raw)
        return None if milliseconds is None else float(milliseconds)
    try:
        return float(raw)
    except ValueError:
        return None


def _compare_value(value: Any, definition: PropertyDefinition) -> Any:
    if definition.type in {"number", "date", "datetime"}:
        return _number(_as_text(value), definition)
    return _as_text(value).strip().lower()


def _ordered(low: Any, high: Any) -> bool:
    if low is None or high is None:
        return False
    return bool(low <= high)


def _check_value(definition: PropertyDefinition, value: str) -> RecordProblem | None:
    name = definition.name
    if name == "email":
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            return _validation_problem(name, "INVALID_EMAIL", f"Email address {value} is invalid")
    elif definition.type == "enumeration" and value not in definition.options:
        return _validation_problem(
            name,
            "INVALID_OPTION",
            f"{value} was not one of the allowed options: {list(definition.options)}",
        )
    elif definition.type == "bool" and value.lower() not in {"true", "false"}:
        return _validation_problem(
            name, "INVALID_BOOLEAN", f"{value} is not a valid boolean; use true or false"
        )
    elif definition.type == "number":
        try:
            float(value)
        except ValueError:
            return _validation_problem(name, "INVALID_INTEGER", f"{value} is not a valid number")
    elif definition.type == "date":
        milliseconds = parse_time_ms(value)
        if milliseconds is None or milliseconds % 86_400_000 != 0:
            return _validation_problem(
                name, "INVALID_DATE", f"{value} is not a valid date at midnight UTC"
            )
    return None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    return None


def _contacts_only(request: web.Request) -> None:
    if request.match_info.get("objectType") not in (CONTACTS, CONTACT_OBJECT_TYPE_ID):
        raise ApiError(
            400,
            f"Unable to infer object type from: {request.match_info.get('objectType')} "
            "(the sandbox serves contacts only)",
        )


async def _json_body(request: web.Request, array: bool = False) -> Any:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, "Invalid input JSON on line 1") from error
    expected = list if array else dict
    if not isinstance(body, expected):
        raise ApiError(400, f"Invalid input JSON: expected a JSON {'array' if array else 'object'}")
    return body


def _batch_inputs(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
        raise ApiError(400, "inputs must be an array of objects")
    if len(inputs) > BATCH_LIMIT:
        raise ApiError(
            400,
            f"Batch input limit exceeded: {len(inputs)} inputs, at most {BATCH_LIMIT} allowed",
            errors=[
                {
                    "message": f"size must be between 0 and {BATCH_LIMIT}",
                    "code": "INVALID_INPUT_SIZE",
                    "in": "inputs",
                }
            ],
        )
    return inputs


def _batch_response(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], created: bool = False
) -> web.Response:
    now = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    }
    if errors:
        body["errors"] = errors
        body["numErrors"] = len(errors)
        return web.json_response(body, status=207)
    return web.json_response(body, status=201 if created else 200)


def _int_param(value: Any, name: str, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"{name} must be an integer") from error
    if number < 0 or (maximum is not None and number > maximum):
        raise ApiError(
            400,
            f"{name} must be between 0 and {maximum}" if maximum else f"{name} must be >= 0",
        )
    return number


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _rate_limit_body(policy: str) -> dict[str, Any]:
    return {
        "status": "error",
        "message": f"You have reached your {policy.lower()} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }


def _oauth_error(status: str, error: str, description: str) -> web.Response:
    # HubSpot's status/message fields, plus the RFC 6749 error/error_description pair.
    return web.json_response(
        {
            "status": status,
            "message": description,
            "error": error,
            "error_description": description,
            "correlationId": str(uuid.uuid4()),
        },
        status=400,
    )
