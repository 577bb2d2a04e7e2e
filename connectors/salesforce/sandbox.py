"""An in-memory Salesforce org serving the documented REST API paths over real HTTP.

Endpoints (same paths as a real org, see README.md for the documentation each follows):
- POST /services/oauth2/token: refresh_token and client_credentials grants;
- GET  /services/data/: API versions (no authentication, no API usage);
- GET  /services/data/vXX.X/limits: DailyApiRequests;
- GET  /services/data/vXX.X/query?q=SOQL and /query/<locator>-<offset> (nextRecordsUrl);
- GET  /services/data/vXX.X/sobjects/<sObject>/describe;
- GET  /services/data/vXX.X/sobjects/<sObject>/<id>;
- POST/PATCH /services/data/vXX.X/composite/sobjects: sObject Collections create/update.

Objects: Contact, Lead, Campaign, CampaignMember. Every write moves the record's
SystemModstamp (millisecond precision, strictly later than its previous one; records written
in one call share a stamp, as in one Salesforce transaction). Every data API response carries
`Sforce-Limit-Info: api-usage=N/M`; past the daily limit requests get 403
REQUEST_LIMIT_EXCEEDED, as does a burst beyond `rate_limit` when one is configured.
"""

from __future__ import annotations

import asyncio
import copy
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from datasync.api.models import AuthType
from datasync.sandbox import Fault, SandboxApp

from . import soql
from .schema import (
    ID_PREFIXES,
    SandboxField,
    campaign_fields,
    campaign_member_fields,
    contact_fields,
    lead_fields,
)

API_VERSIONS = ("58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0", "65.0", "66.0")
VERSION_LABELS = {
    "58.0": "Summer '23",
    "59.0": "Winter '24",
    "60.0": "Spring '24",
    "61.0": "Summer '24",
    "62.0": "Winter '25",
    "63.0": "Spring '25",
    "64.0": "Summer '25",
    "65.0": "Winter '26",
    "66.0": "Spring '26",
}
MAX_COLLECTION_SIZE = 200
MAX_SOQL_LENGTH = 100_000
MAX_URI_LENGTH = 16_384
MAX_OPEN_CURSORS = 100
ID_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
STRING_TYPES = {"string", "email", "phone", "textarea", "picklist", "url", "reference", "id"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ValidationRule:
    """A custom validation rule: records whose `field` equals `value` are rejected."""

    field: str
    value: str
    message: str


class _RequestError(Exception):
    """A whole-request error, answered as Salesforce's error array."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response([{"message": message, "errorCode": code}], status=status)


def format_datetime(moment: datetime) -> str:
    """Salesforce's wire format: 2024-01-01T00:00:00.000+0000."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def id_with_suffix(id15: str) -> str:
    """The 18-character, case-insensitive-safe form of a 15-character id."""
    suffix = ""
    for chunk_start in range(0, 15, 5):
        chunk = id15[chunk_start : chunk_start + 5]
        bits = sum(1 << position for position, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += ID_SUFFIX_CHARS[bits]
    return id15 + suffix


def _base62(number: int, width: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = alphabet[remainder] + digits
    return digits.rjust(width, "0")


@dataclass
class _SObject:
    name: str
    fields: list[SandboxField]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Record ids by casefolded Email, so the duplicate rule looks a record up instead of
    # scanning the table on every write. Every change of a row's Email goes through
    # `reindex_email`.
    by_email: dict[str, dict[str, None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_lower = {item.name.lower(): item for item in self.fields}

    def field(self, name: str) -> SandboxField | None:
        return self.by_lower.get(name.lower())

    def reindex_email(self, record_id: str, before: Any, after: Any) -> None:
        old, new = _email_key(before), _email_key(after)
        if old == new:
            return
        if old is not None:
            ids = self.by_email.get(old, {})
            ids.pop(record_id, None)
            if not ids:
                self.by_email.pop(old, None)
        if new is not None:
            self.by_email.setdefault(new, {})[record_id] = None


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]
    batch_size: int
    touched: float


@dataclass
class SalesforceSandbox(SandboxApp):
    """A Salesforce org in memory. `SalesforceSandbox(port=N)` then `await start()`."""

    app_name: ClassVar[str] = "salesforce"

    session_timeout: float = 7200.0  # seconds an access token lives (Session Settings)
    daily_api_limit: int = 5_000_000  # generous; real orgs start at 100,000 a day
    query_batch_size: int = 2000
    cursor_timeout: float = 900.0  # seconds a query locator lives without being used
    duplicate_rule: bool = False  # like Salesforce: duplicate Emails are allowed by default
    status_required: bool = False  # make Status__c a required custom field
    client_credentials_enabled: bool = True  # a run-as user is set on the app
    validation_rules: list[ValidationRule] = field(default_factory=list)
    client_id: str = field(default_factory=lambda: "3MVG9" + secrets.token_urlsafe(30))
    client_secret: str = field(default_factory=lambda: secrets.token_hex(32).upper())
    refresh_token: str = field(default_factory=lambda: "5Aep861" + secrets.token_urlsafe(48))
    api_requests_used: int = 0
    token_requests: int = 0

    _objects: dict[str, _SObject] = field(default_factory=dict, init=False, repr=False)
    _tokens: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _refresh_revoked: bool = field(default=False, init=False, repr=False)
    _cursors: dict[str, _Cursor] = field(default_factory=dict, init=False, repr=False)
    _counter: int = field(default=0, init=False, repr=False)
    _last_stamp: datetime = field(
        default_factory=lambda: datetime(2000, 1, 1, tzinfo=UTC), init=False, repr=False
    )
    _recent: deque[float] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        self._objects = {
            "Contact": _SObject("Contact", contact_fields(self.status_required)),
            "Lead": _SObject("Lead", lead_fields(self.status_required)),
            "Campaign": _SObject("Campaign", campaign_fields()),
            "CampaignMember": _SObject("CampaignMember", campaign_member_fields()),
        }

    # ------------------------------------------------------------ SandboxApp

    def build_app(self) -> web.Application:
        # Salesforce accepts a URI plus headers of up to 16,384 bytes; aiohttp's default
        # request line limit is smaller, so raise it and answer 414 ourselves.
        app = web.Application(
            middlewares=[self._middleware],
            handler_args={"max_line_size": MAX_URI_LENGTH * 2, "max_field_size": 16_384},
        )
        app.router.add_post("/services/oauth2/token", self._token)
        app.router.add_get("/services/data", self._versions)
        app.router.add_get("/services/data/", self._versions)
        data = "/services/data/{version}"
        app.router.add_get(data + "/limits", self._limits)
        app.router.add_get(data + "/query", self._query)
        app.router.add_get(data + "/query/", self._query)
        app.router.add_get(data + "/query/{locator}", self._query_more)
        app.router.add_get(data + "/sobjects/{sobject}/describe", self._describe)
        app.router.add_get(data + "/sobjects/{sobject}/describe/", self._describe)
        app.router.add_get(data + "/sobjects/{sobject}/{record_id}", self._get_record)
        app.router.add_post(data + "/composite/sobjects", self._collections)
        app.router.add_patch(data + "/composite/sobjects", self._collections)
        return app

    def load(self, records: Iterable[Mapping[str, Any]]) -> int:
        count = 0
        for record in records:
            self.insert(record)
            count += 1
        return count

    def credentials(self, auth_type: AuthType | str) -> dict[str, str]:
        if AuthType(auth_type) == AuthType.OAUTH:
            return {
                "clientId": self.client_id,
                "clientSecret": self.client_secret,
                "refreshToken": self.refresh_token,
            }
        return {"clientId": self.client_id, "clientSecret": self.client_secret}

    def connector_settings(self) -> dict[str, str]:
        return {"organizationUrl": self.base_url, "loginUrl": self.base_url}

    def inject(self, fault: Fault) -> None:
        if fault.kind == "revoke_refresh_token":
            self.revoke_refresh_token()
            return
        super().inject(fault)

    # ------------------------------------------------------------ test helpers

    def insert(self, fields: Mapping[str, Any], sobject: str = "Contact") -> str:
        """Add a record directly (no validation beyond field names); returns its Id."""
        values = dict(fields)
        campaigns = values.pop("campaigns", None) or []
        table = self._objects[sobject]
        record_id = values.pop("Id", None) or self._new_id(sobject)
        if len(record_id) == 15:
            record_id = id_with_suffix(record_id)
        row = self._new_row(table, record_id)
        for name, value in values.items():
            definition = table.field(name)
            if definition is None:
                raise ValueError(f"{sobject} has no field {name!r}")
            row[definition.name] = None if value == "" else value
        replaced = table.rows.get(record_id)
        table.rows[record_id] = row
        table.reindex_email(record_id, replaced and replaced.get("Email"), row.get("Email"))
        for campaign in campaigns:
            self.add_to_campaign(campaign, record_id)
        return record_id

    def records(self, sobject: str = "Contact") -> list[dict[str, Any]]:
        return [_rendered(row) for row in self._objects[sobject].rows.values()]

    def get(self, record_id: str) -> dict[str, Any] | None:
        found = self._find(record_id)
        return None if found is None else _rendered(found[1])

    def set_fields(self, record_id: str, fields: Mapping[str, Any]) -> None:
        """A user's edit in the Salesforce UI: no API usage, SystemModstamp moves."""
        found = self._find(record_id)
        if found is None:
            raise KeyError(record_id)
        table, row = found
        before = row.get("Email")
        for name, value in fields.items():
            definition = table.field(name)
            if definition is None:
                raise ValueError(f"{table.name} has no field {name!r}")
            row[definition.name] = None if value == "" else value
        table.reindex_email(row["Id"], before, row.get("Email"))
        self._touch(row)

    def set_modstamp(self, record_id: str, moment: datetime) -> None:
        """Force a record's LastModifiedDate and SystemModstamp (to stage exact ties);
        later writes still get later stamps."""
        found = self._find(record_id)
        if found is None:
            raise KeyError(record_id)
        stamp = moment.astimezone(UTC)
        stamp = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)
        found[1]["LastModifiedDate"] = found[1]["SystemModstamp"] = stamp
        self._last_stamp = max(self._last_stamp, stamp)

    def delete(self, record_id: str) -> None:
        found = self._find(record_id)
        if found is not None:
            del found[0].rows[found[1]["Id"]]
            found[0].reindex_email(found[1]["Id"], found[1].get("Email"), None)

    def create_campaign(self, name: str) -> str:
        return self.insert({"Name": name, "IsActive": True}, sobject="Campaign")

    def campaign_id(self, campaign: str) -> str | None:
        table = self._objects["Campaign"]
        if campaign in table.rows:
            return campaign
        for row in table.rows.values():
            if row["Name"] == campaign or str(row["Id"])[:15] == campaign[:15]:
                return str(row["Id"])
        return None

    def add_to_campaign(self, campaign: str, record_id: str) -> str:
        """Add a Contact or Lead to a campaign (by name or id; created when missing)."""
        campaign_id = self.campaign_id(campaign) or self.create_campaign(campaign)
        member_field = "LeadId" if record_id.startswith(ID_PREFIXES["Lead"]) else "ContactId"
        for row in self._objects["CampaignMember"].rows.values():
            if row["CampaignId"] == campaign_id and row.get(member_field) == record_id:
                return str(row["Id"])
        return self.insert(
            {"CampaignId": campaign_id, member_field: record_id, "Status": "Sent"},
            sobject="CampaignMember",
        )

    def remove_from_campaign(self, campaign: str, record_id: str) -> None:
        campaign_id = self.campaign_id(campaign)
        members = self._objects["CampaignMember"].rows
        for member_id, row in list(members.items()):
            if row["CampaignId"] == campaign_id and record_id in (
                row.get("ContactId"),
                row.get("LeadId"),
            ):
                del members[member_id]

    def expire_sessions(self) -> None:
        """Every issued access token stops working (as when the session times out)."""
        self._tokens.clear()

    def revoke_refresh_token(self) -> None:
        """Revoking a refresh token also revokes the access tokens issued from it."""
        self._refresh_revoked = True
        self._tokens.clear()

    def add_validation_rule(self, field_name: str, value: str, message: str) -> None:
        self.validation_rules.append(ValidationRule(field_name, value, message))

    # ------------------------------------------------------------ plumbing

    def _new_id(self, sobject: str) -> str:
        self._counter += 1
        return id_with_suffix(ID_PREFIXES[sobject] + "Dn0" + _base62(self._counter, 9))

    def _next_stamp(self, previous: datetime | None = None) -> datetime:
        """Now, in milliseconds, never before an earlier stamp (so the clock cannot run
        backwards) and, for a record written again, strictly after its previous stamp.
        Records written in one transaction share a stamp, as in Salesforce; the stamp does
        not run ahead of the wall clock under bursts."""
        now = datetime.now(UTC)
        stamp = max(now.replace(microsecond=now.microsecond // 1000 * 1000), self._last_stamp)
        if previous is not None and stamp <= previous:
            stamp = previous + timedelta(milliseconds=1)
        self._last_stamp = max(self._last_stamp, stamp)
        return stamp

    def _new_row(
        self, table: _SObject, record_id: str, stamp: datetime | None = None
    ) -> dict[str, Any]:
        stamp = stamp or self._next_stamp()
        row: dict[str, Any] = {item.name: item.default for item in table.fields}
        row.update(
            {
                "Id": record_id,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        )
        return row

    def _touch(self, row: dict[str, Any], stamp: datetime | None = None) -> None:
        previous = row.get("SystemModstamp")
        if stamp is None or (isinstance(previous, datetime) and stamp <= previous):
            stamp = self._next_stamp(previous if isinstance(previous, datetime) else None)
        row["LastModifiedDate"] = stamp
        row["SystemModstamp"] = stamp

    def _find(self, record_id: str) -> tuple[_SObject, dict[str, Any]] | None:
        if not soql.SALESFORCE_ID.match(record_id or ""):
            return None
        full = record_id if len(record_id) == 18 else id_with_suffix(record_id)
        for table in self._objects.values():
            if full in table.rows:
                return table, table.rows[full]
        return None

    def _limit_header(self) -> str:
        return f"api-usage={self.api_requests_used}/{self.daily_api_limit}"

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests_served += 1
        fault = self._take_fault(request.path)
        if fault is not None:
            answer = await self._apply_fault(request, fault)
            if answer is not None:
                return answer
        if len(str(request.rel_url)) > MAX_URI_LENGTH:
            return web.Response(status=414, text="URI Too Long")
        counted = request.path.startswith("/services/data/v")
        if counted:
            refusal = self._count_api_request()
            if refusal is not None:
                refusal.headers["Sforce-Limit-Info"] = self._limit_header()
                return refusal
        try:
            response = await handler(request)
        except _RequestError as error:
            response = error_response(error.status, error.code, error.message)
        except web.HTTPNotFound:
            response = error_response(404, "NOT_FOUND", "The requested resource does not exist")
        except web.HTTPMethodNotAllowed as error:
            response = error_response(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{error.method}' not allowed."
            )
        if counted:
            response.headers["Sforce-Limit-Info"] = self._limit_header()
        return response

    def _count_api_request(self) -> web.Response | None:
        if self.api_requests_used >= self.daily_api_limit:
            return error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        if self.rate_limit is not None:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= self.rate_limit.per_seconds:
                self._recent.popleft()
            if len(self._recent) >= self.rate_limit.requests:
                refusal = error_response(
                    403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
                )
                # Not a Salesforce header: tells clients of the sandbox when to try again.
                oldest = self._recent[0] if self._recent else now
                wait = self.rate_limit.per_seconds - (now - oldest)
                refusal.headers["Retry-After"] = f"{max(wait, 0.01):.2f}"
                return refusal
            self._recent.append(now)
        self.api_requests_used += 1
        return None

    def _take_fault(self, path: str) -> Fault | None:
        for fault in list(self.faults):
            if fault.count <= 0:
                self.faults.remove(fault)
                continue
            if not path.startswith(fault.path_prefix):
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            return fault
        return None

    async def _apply_fault(self, request: web.Request, fault: Fault) -> web.Response | None:
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if fault.kind == "malformed":
            return web.Response(
                status=200, text='{"records": [{"Id": ', content_type="application/json"
            )
        if fault.kind == "status":
            response = error_response(fault.status, *_fault_error(fault.status))
            if fault.retry_after is not None:
                response.headers["Retry-After"] = f"{fault.retry_after:g}"
            return response
        return None

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return False
        expires = self._tokens.get(token.strip())
        if expires is None:
            return False
        if time.monotonic() >= expires:
            del self._tokens[token.strip()]
            return False
        return True

    def _check(self, request: web.Request) -> str:
        """Authenticate and validate the API version; returns the path's version."""
        if not self._authorized(request):
            raise _RequestError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        version = request.match_info["version"]
        if not version.startswith("v") or version[1:] not in API_VERSIONS:
            raise _RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        return version

    # ------------------------------------------------------------ OAuth

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "client_credentials"):
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        if form.get("client_id") != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant == "refresh_token":
            if self._refresh_revoked or form.get("refresh_token") != self.refresh_token:
                return _oauth_error("invalid_grant", "expired access/refresh token")
        elif not self.client_credentials_enabled:
            return _oauth_error("invalid_grant", "no client credentials user enabled")
        token = "00DDn000000Sandbox!" + secrets.token_urlsafe(72)
        self._tokens[token] = time.monotonic() + self.session_timeout
        issued = str(int(time.time() * 1000))
        return web.json_response(
            {
                "access_token": token,
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/00DDn000000Sandbox/005Dn000000Runner",
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": secrets.token_urlsafe(32),
                "scope": "api refresh_token" if grant == "refresh_token" else "api",
            }
        )

    # ------------------------------------------------------------ REST resources

    async def _versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"label": VERSION_LABELS[v], "url": f"/services/data/v{v}", "version": v}
                for v in API_VERSIONS
            ]
        )

    async def _limits(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response(
            {
                "DailyApiRequests": {
                    "Max": self.daily_api_limit,
                    "Remaining": max(0, self.daily_api_limit - self.api_requests_used),
                }
            }
        )

    async def _describe(self, request: web.Request) -> web.Response:
        self._check(request)
        table = self._table(request.match_info["sobject"])
        return web.json_response(
            {
                "name": table.name,
                "label": table.name,
                "custom": False,
                "createable": True,
                "updateable": True,
                "queryable": True,
                "keyPrefix": ID_PREFIXES[table.name],
                "fields": [item.describe() for item in table.fields],
            }
        )

    async def _get_record(self, request: web.Request) -> web.Response:
        version = self._check(request)
        table = self._table(request.match_info["sobject"])
        found = self._find(request.match_info["record_id"])
        if found is None or found[0] is not table:
            raise _RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        row = found[1]
        body = {"attributes": _attributes(table.name, version, row["Id"])} | _rendered(row)
        return web.json_response(body)

    def _table(self, name: str) -> _SObject:
        for table in self._objects.values():
            if table.name.lower() == name.lower():
                return table
        raise _RequestError(
            404 if name else 400, "NOT_FOUND", "The requested resource does not exist"
        )

    # ------------------------------------------------------------ query

    async def _query(self, request: web.Request) -> web.Response:
        version = self._check(request)
        text = request.query.get("q", "")
        if not text.strip():
            raise _RequestError(400, "MALFORMED_QUERY", "A query string is required")
        if len(text) > MAX_SOQL_LENGTH:
            raise _RequestError(
                400, "MALFORMED_QUERY", "SOQL statements cannot be longer than 100,000 characters"
            )
        try:
            query = soql.parse(text)
        except soql.SoqlError as error:
            raise _RequestError(400, "MALFORMED_QUERY", str(error)) from None
        rows = self._run(query, version)
        batch_size = _batch_size(request.headers.get("Sforce-Query-Options"), self.query_batch_size)
        if len(rows) <= batch_size:
            return web.json_response({"totalSize": len(rows), "done": True, "records": rows})
        locator = "01g" + secrets.token_hex(6).upper()
        self._cursors[locator] = _Cursor(rows, batch_size, time.monotonic())
        while len(self._cursors) > MAX_OPEN_CURSORS:
            del self._cursors[next(iter(self._cursors))]
        return web.json_response(_query_page(rows, 0, batch_size, version, locator))

    async def _query_more(self, request: web.Request) -> web.Response:
        version = self._check(request)
        locator, _, offset_text = request.match_info["locator"].rpartition("-")
        cursor = self._cursors.get(locator)
        if cursor is not None and time.monotonic() - cursor.touched >= self.cursor_timeout:
            del self._cursors[locator]
            cursor = None
        if cursor is None or not offset_text.isdigit():
            raise _RequestError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.touched = time.monotonic()
        offset = int(offset_text)
        return web.json_response(
            _query_page(cursor.rows, offset, cursor.batch_size, version, locator)
        )

    def _run(self, query: soql.Query, version: str) -> list[dict[str, Any]]:
        table = self._objects.get(_canonical(self._objects, query.sobject) or "")
        if table is None:
            raise _RequestError(
                400,
                "INVALID_TYPE",
                f"sObject type '{query.sobject}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name.",
            )
        selected = [self._query_field(table, name) for name in query.fields]
        conditions: list[tuple[SandboxField, str, list[Any] | set[Any]]] = []
        for condition in query.conditions:
            definition = self._query_field(table, condition.field)
            literals = [_literal(value, definition) for value in condition.values]
            if condition.operator in ("IN", "NOT IN"):
                conditions.append((definition, condition.operator, set(literals)))
            else:
                conditions.append((definition, condition.operator, literals))
        order = [(self._query_field(table, name), desc) for name, desc in query.order_by]
        matches = [
            row
            for row in table.rows.values()
            if all(
                _matches(_comparable(row.get(item.name), item), operator, literals)
                for item, operator, literals in conditions
            )
        ]
        for item, descending in reversed(order):
            matches.sort(key=_sort_by(item), reverse=descending)
        if query.limit is not None:
            matches = matches[: query.limit]
        return [
            {"attributes": _attributes(table.name, version, row["Id"])}
            | {item.name: _wire(row.get(item.name)) for item in selected}
            for row in matches
        ]

    @staticmethod
    def _query_field(table: _SObject, name: str) -> SandboxField:
        definition = table.field(name)
        if definition is None:
            raise _RequestError(
                400,
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{table.name}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name.",
            )
        return definition

    # ------------------------------------------------------------ sObject Collections

    async def _collections(self, request: web.Request) -> web.Response:
        self._check(request)
        creating = request.method == "POST"
        try:
            body = await request.json()
        except ValueError:
            raise _RequestError(
                400, "JSON_PARSER_ERROR", "The request body is not valid JSON"
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise _RequestError(400, "JSON_PARSER_ERROR", "The request body needs a 'records' list")
        records: list[Any] = body["records"]
        if len(records) > MAX_COLLECTION_SIZE:
            raise _RequestError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = bool(body.get("allOrNone", False))
        prepared = [self._prepare(record) for record in records]  # whole-request errors
        snapshot = copy.deepcopy(self._objects) if all_or_none else None
        stamp = self._next_stamp()  # one transaction: one SystemModstamp
        results = [self._save(table, values, creating, stamp) for table, values in prepared]
        if snapshot is not None and any(not result["success"] for result in results):
            self._objects = snapshot
            results = [
                result
                if not result["success"]
                else {
                    "success": False,
                    "errors": [
                        {
                            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "message": "Record rolled back because not all records were valid "
                            "and the request was using AllOrNone header",
                            "fields": [],
                        }
                    ],
                }
                for result in results
            ]
        return web.json_response(results)

    def _prepare(self, record: Any) -> tuple[_SObject, dict[str, Any]]:
        """Checks that fail a whole sObject Collections request: type, columns, JSON types."""
        if not isinstance(record, dict):
            raise _RequestError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
        attributes = record.get("attributes")
        if not isinstance(attributes, dict) or not attributes.get("type"):
            raise _RequestError(
                400, "INVALID_TYPE", "Each record in the collection needs attributes.type"
            )
        name = _canonical(self._objects, str(attributes["type"]))
        if name is None or name in ("CampaignMember",):
            raise _RequestError(
                400, "INVALID_TYPE", f"sObject type '{attributes['type']}' is not supported."
            )
        table = self._objects[name]
        values: dict[str, Any] = {}
        for key, value in record.items():
            if key == "attributes":
                continue
            definition = table.field(key)
            if definition is None:
                raise _RequestError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.name}"
                )
            if isinstance(value, dict | list) or (
                definition.type == "boolean" and value is not None and not isinstance(value, bool)
            ):
                raise _RequestError(
                    400,
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of {definition.type} from "
                    f"{type(value).__name__} value {value!s} for field {definition.name}",
                )
            if definition.type in STRING_TYPES and isinstance(value, bool | int | float):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            values[definition.name] = None if value == "" else value
        return table, values

    def _save(
        self, table: _SObject, values: dict[str, Any], creating: bool, stamp: datetime
    ) -> dict[str, Any]:
        errors: list[dict[str, Any]] = []
        existing: dict[str, Any] | None = None
        record_id = values.pop("Id", None)
        if creating:
            if record_id is not None:
                errors.append(
                    _record_error(
                        "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call"
                    )
                )
        else:
            if record_id is None:
                return _failure("MISSING_ARGUMENT", "Id not specified in an update call", [])
            if not soql.SALESFORCE_ID.match(str(record_id)):
                return _failure(
                    "MALFORMED_ID", f"Contact ID: id value of incorrect type: {record_id}", ["Id"]
                )
            found = self._find(str(record_id))
            if found is None or found[0] is not table:
                return _failure("ENTITY_IS_DELETED", "entity is deleted", [])
            existing = found[1]
        read_only = [
            name
            for name in values
            if not (table.field(name).createable if creating else table.field(name).updateable)  # type: ignore[union-attr]
        ]
        if read_only:
            errors.append(
                _record_error(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
                    "security settings of this field and verify that it is read/write for your "
                    "profile or permission set.",
                    read_only,
                )
            )
        for name, value in values.items():
            errors.extend(_value_errors(table.by_lower[name.lower()], value))
        merged = ({} if existing is None else dict(existing)) | values
        missing = [
            item.name
            for item in table.fields
            if not item.nillable
            and item.createable
            and not item.defaulted_on_create
            and merged.get(item.name) in (None, "")
        ]
        if missing:
            errors.append(
                _record_error(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            )
        for rule in self.validation_rules:
            current = merged.get(rule.field)
            if isinstance(current, str) and current.casefold() == rule.value.casefold():
                errors.append(
                    _record_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.field])
                )
        if not errors and self.duplicate_rule and merged.get("Email"):
            duplicate = self._duplicate_of(table, str(merged["Email"]), merged.get("Id"))
            if duplicate is not None:
                errors.append(
                    _record_error(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: Email duplicates value on record with id: "
                        f"{duplicate}",
                        [],
                    )
                )
        if errors:
            return {"success": False, "errors": errors}
        if existing is None:
            new_id = self._new_id(table.name)
            row = self._new_row(table, new_id, stamp)
            row.update(values)
            table.rows[new_id] = row
            table.reindex_email(new_id, None, row.get("Email"))
            return {"id": new_id, "success": True, "errors": []}
        before = existing.get("Email")
        existing.update(values)
        table.reindex_email(existing["Id"], before, existing.get("Email"))
        self._touch(existing, stamp)
        return {"id": existing["Id"], "success": True, "errors": []}

    def _duplicate_of(self, table: _SObject, email: str, own_id: Any) -> str | None:
        for record_id in table.by_email.get(_email_key(email) or "", {}):
            if record_id != own_id:
                return record_id
        return None


# ---------------------------------------------------------------- helpers


def _email_key(value: Any) -> str | None:
    """How the duplicate rule compares Emails: case-insensitively; no Email, no key."""
    return str(value).casefold() if value not in (None, "") else None


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)


def _fault_error(status: int) -> tuple[str, str]:
    if status == 401:
        return "INVALID_SESSION_ID", "Session expired or invalid"
    if status == 403:
        return "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
    if status >= 500:
        return "SERVER_UNAVAILABLE", "The server is temporarily unavailable"
    return "BAD_REQUEST", f"HTTP {status}"


def _record_error(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields or []}


def _failure(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {"success": False, "errors": [_record_error(code, message, fields)]}


def _value_errors(definition: SandboxField, value: Any) -> list[dict[str, Any]]:
    """Salesforce's own messages, which quote the value (the connector scrubs them)."""
    if value is None or value == "":
        return []
    label = definition.label
    if (
        definition.type in STRING_TYPES
        and definition.length
        and len(str(value)) > definition.length
    ):
        return [
            _record_error(
                "STRING_TOO_LONG",
                f"{label}: data value too large: {value} (max length={definition.length})",
                [definition.name],
            )
        ]
    if definition.type == "email" and not EMAIL_PATTERN.match(str(value)):
        return [
            _record_error(
                "INVALID_EMAIL_ADDRESS",
                f"{label}: invalid email address: {value}",
                [definition.name],
            )
        ]
    if definition.type == "picklist" and definition.restricted and value not in definition.options:
        return [
            _record_error(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{label}: bad value for restricted picklist field: {value}",
                [definition.name],
            )
        ]
    return []


def _canonical(objects: Mapping[str, _SObject], name: str) -> str | None:
    for key in objects:
        if key.lower() == name.lower():
            return key
    return None


def _attributes(sobject: str, version: str, record_id: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/{version}/sobjects/{sobject}/{record_id}"}


def _wire(value: Any) -> Any:
    return format_datetime(value) if isinstance(value, datetime) else value


def _rendered(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _wire(value) for name, value in row.items()}


def _batch_size(header: str | None, default: int) -> int:
    """Sforce-Query-Options: batchSize=N (200 to 2,000)."""
    if header:
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "batchsize" and value.strip().isdigit():
                return max(200, min(2000, int(value)))
    return default


def _query_page(
    rows: list[dict[str, Any]], offset: int, batch_size: int, version: str, locator: str
) -> dict[str, Any]:
    end = offset + batch_size
    page: dict[str, Any] = {
        "totalSize": len(rows),
        "done": end >= len(rows),
        "records": rows[offset:end],
    }
    if end < len(rows):
        page["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
    return page


def _type_error(definition: SandboxField, kind: str, quoted: bool) -> _RequestError:
    quoting = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return _RequestError(
        400,
        "INVALID_FIELD",
        f"value of filter criterion for field '{definition.name}' must be of type {kind} "
        f"and {quoting}",
    )


def _literal(value: Any, definition: SandboxField) -> Any:
    """A query literal, checked against the field's type like Salesforce does."""
    if value is None:
        return None
    if definition.type == "datetime":
        if not isinstance(value, datetime):
            raise _type_error(definition, "dateTime", quoted=False)
        return value
    if definition.type == "boolean":
        if not isinstance(value, bool):
            raise _type_error(definition, "boolean", quoted=False)
        return value
    if definition.type in ("double", "currency", "int", "percent"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(definition, "number", quoted=False)
        return value
    if not isinstance(value, str):
        raise _type_error(definition, "string", quoted=True)
    return _comparable(value, definition)


def _comparable(value: Any, definition: SandboxField) -> Any:
    """A stored value in comparable form: ids by their 15-character form, text casefolded."""
    if value is None or definition.type in ("datetime", "boolean"):
        return value
    if definition.type in ("double", "currency", "int", "percent"):
        return value
    text = str(value)
    if definition.type in ("id", "reference"):
        return text[:15] if len(text) in (15, 18) else text
    return text.casefold()


def _matches(left: Any, operator: str, rights: list[Any] | set[Any]) -> bool:
    if isinstance(rights, set):
        hit = left in rights
        return hit if operator == "IN" else not hit
    right = rights[0]
    if operator == "=":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    if left is None or right is None:
        return False
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    if operator == ">":
        return bool(left > right)
    return bool(left >= right)


def _sort_by(definition: SandboxField) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def key(row: dict[str, Any]) -> tuple[int, Any]:
        return _sort_key(row.get(definition.name), definition)

    return key


def _sort_key(value: Any, definition: SandboxField) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if definition.type in ("id", "reference"):
        return (1, str(value))
    return (1, _comparable(value, definition))
