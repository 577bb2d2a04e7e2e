"""HubSpot contacts through the CRM v3 APIs (see README.md for the documentation used)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datasync.api.models import AuthType
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    AuthSpec,
    ConfigurationError,
    Connector,
    FieldSchema,
    FieldType,
    ListChanges,
    ObjectSchema,
    ReadPage,
    Record,
    RecordError,
    RetriableError,
    SecretKey,
    WriteResult,
    parse_settings,
)
from datasync.http import (
    ApiClient,
    HostPolicy,
    MalformedJsonError,
    RetryPolicy,
    UntrustedServerError,
    base_url_setting,
    fetch_json,
    json_body,
)

log = logging.getLogger(__name__)

CONTACTS = "contacts"
CONTACT_OBJECT_TYPE_ID = "0-1"
TOKEN_PATHS: Mapping[str, str] = {"v1": "/oauth/v1/token", "dated": "/oauth/2026-03/token"}
SEARCH_PAGE_SIZE = 200  # the search API's largest page
SEARCH_WINDOW = 10_000  # a search returns at most this many results in total
# read_changed hands the engine up to this many records a page (several searches): the
# engine writes a page's changes in full batches, so small pages would cost extra calls.
READ_PAGE_RECORDS = 10_000
MEMBERSHIP_PAGE_SIZE = 250
MODIFIED = "lastmodifieddate"
OBJECT_ID = "hs_object_id"
# Refresh an access token this long before it expires (capped at a tenth of its lifetime),
# instead of waiting for a 401: HubSpot says a 401 is no sign that a token needs refreshing.
TOKEN_REFRESH_MARGIN = 300.0

_REASONS_BY_CODE: Mapping[str, str] = {
    "INVALID_EMAIL": "InvalidEmail",
    "INVALID_OPTION": "InvalidOption",
}


class HubSpotSettings(BaseModel):
    """Non-secret settings of the HubSpot connector."""

    model_config = ConfigDict(extra="forbid")

    baseUrl: str = Field(
        default="https://api.hubapi.com",
        description="API root; change only for a sandbox or an allowed proxy.",
    )
    tokenEndpoint: Literal["v1", "dated"] = Field(
        default="v1",
        description="OAuth token endpoint: v1 (/oauth/v1/token) or dated (/oauth/2026-03/token).",
    )
    portalId: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,20}$",
        description="HubSpot account (portal) id, for messages and links only.",
    )

    @field_validator("baseUrl")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return base_url_setting(value, "https://api.hubapi.com")


class HubSpotConnector(Connector):
    name: ClassVar[str] = "hubspot"
    title: ClassVar[str] = "HubSpot"
    auth: ClassVar[tuple[AuthSpec, ...]] = (
        AuthSpec(
            type=AuthType.OAUTH,
            description=(
                "A HubSpot public app installed in the account: its client id and secret and "
                "a refresh token from the install (scopes crm.objects.contacts.read, "
                "crm.objects.contacts.write, crm.lists.read)."
            ),
            keys=(
                SecretKey("clientId", "The app's client ID."),
                SecretKey("clientSecret", "The app's client secret."),
                SecretKey("refreshToken", "A refresh token obtained when the app was installed."),
            ),
        ),
        AuthSpec(
            type=AuthType.APP_PARAMETERS,
            description=(
                "An access token of a private app (or a service key) with the scopes "
                "crm.objects.contacts.read, crm.objects.contacts.write and crm.lists.read."
            ),
            keys=(SecretKey("accessToken", "The private app's access token (pat-...)."),),
        ),
    )
    settings_model: ClassVar[type[BaseModel]] = HubSpotSettings
    standard_fields: ClassVar[Mapping[str, Mapping[str, str]]] = {
        CONTACTS: {
            "email": "email",
            "firstName": "firstname",
            "lastName": "lastname",
            "phone": "phone",
            "jobTitle": "jobtitle",
            "company": "company",
            "city": "city",
            "country": "country",
            "lifecycleStage": "lifecyclestage",
            "emailOptOut": "hs_email_optout",
        }
    }
    max_batch_size: ClassVar[int] = 100
    default_allowed_hosts: ClassVar[tuple[str, ...]] = ("api.hubapi.com", "api.hubspot.com")
    accepts_ca_bundle: ClassVar[bool] = True

    def __init__(
        self,
        settings: Mapping[str, str],
        credentials: Mapping[str, str],
        auth_type: AuthType,
        *,
        retry: RetryPolicy | None = None,
        search_window: int = SEARCH_WINDOW,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(settings, credentials, auth_type)
        self.config = parse_settings(HubSpotSettings, settings, "HubSpot")
        self.auth_type = AuthType(auth_type)
        self.require_credentials()
        hosts = HostPolicy.from_environment(self.default_allowed_hosts)
        hosts.check(self.config.baseUrl)
        self.search_window = search_window
        self._api = ApiClient(
            base_url=self.config.baseUrl,
            auth_headers=self._auth_headers,
            hosts=hosts,
            retry=retry or RetryPolicy(),
            app="HubSpot",
            verify=tls_context or True,
        )
        self._access_token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self._pause_until = 0.0
        # When recent answers arrived (never before the app counted the request).
        self._answered: deque[float] = deque(maxlen=1_000)
        self._schemas: dict[str, ObjectSchema] = {}
        self._list_ids: dict[str, str] = {}

    # ------------------------------------------------------------ plumbing

    @property
    def api_calls(self) -> int:
        return self._api.calls

    async def aclose(self) -> None:
        await self._api.aclose()

    @property
    def _credential_to_check(self) -> str:
        return "refreshToken" if self.auth_type == AuthType.OAUTH else "accessToken"

    async def _auth_headers(self, force: bool) -> Mapping[str, str]:
        if self.auth_type == AuthType.APP_PARAMETERS:
            return {"Authorization": f"Bearer {self.credentials['accessToken']}"}
        async with self._token_lock:
            if force or self._access_token is None or time.monotonic() >= self._token_expires_at:
                await self._refresh_token()
            return {"Authorization": f"Bearer {self._access_token}"}

    async def _refresh_token(self) -> None:
        try:
            response = await self._api.request(
                "POST",
                TOKEN_PATHS[self.config.tokenEndpoint],
                authenticated=False,
                idempotent=True,
                data={
                    "grant_type": "refresh_token",
                    "client_id": self.credentials["clientId"],
                    "client_secret": self.credentials["clientSecret"],
                    "refresh_token": self.credentials["refreshToken"],
                },
            )
        except UntrustedServerError:
            raise
        except AppUnreachableError:
            raise self._unreachable() from None
        body = _json_or_none(response)
        if response.status_code == 200 and not isinstance(body, dict):
            # A garbled answer says nothing about the credentials: try again next run.
            raise RetriableError("HubSpot's token endpoint answered HTTP 200 with invalid JSON")
        if response.status_code != 200 or not isinstance(body, dict):
            raise _token_error(response.status_code, body)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                "HubSpot's token endpoint answered without an access token; check the "
                "tokenEndpoint setting",
                credential="refreshToken",
            )
        lifetime = float(body.get("expires_in") or 1800)
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
        self._access_token = token
        self._token_expires_at = time.monotonic() + lifetime - margin
        log.debug("HubSpot access token refreshed; valid for %.0fs", lifetime)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call: waits out an exhausted rate-limit window first, and turns the
        policy's generic errors into ones that name the setting or credential to check."""
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            response = await self._api.request(method, path, **kwargs)
        except AuthenticationError as error:
            if error.credential is not None:
                raise
            raise AuthenticationError(
                f"HubSpot rejected the credentials (HTTP 401); check the Secret's "
                f"{self._credential_to_check} key",
                credential=self._credential_to_check,
            ) from None
        except UntrustedServerError:
            raise
        except AppUnreachableError:
            raise self._unreachable() from None
        self._answered.append(time.monotonic())
        self._note_rate_limit(response)
        if response.status_code == 403:
            raise AuthenticationError(
                "HubSpot refused the request (HTTP 403): the app lacks a scope; grant "
                "crm.objects.contacts.read, crm.objects.contacts.write and crm.lists.read to "
                f"the app behind the Secret's {self._credential_to_check} key",
                credential=self._credential_to_check,
            )
        return response

    def _unreachable(self) -> AppUnreachableError:
        return AppUnreachableError(
            f"HubSpot could not be reached at {self.config.baseUrl}; check the baseUrl "
            "setting and the network path to it"
        )

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = response.headers.get("X-HubSpot-RateLimit-Remaining")
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining == "0" and interval and interval.isdigit():
            # The window holds the last Max requests: it has room again once the oldest of
            # ours among them is an interval old. Waiting a whole interval from now instead
            # wastes most of it when the requests were spread over the window.
            start = time.monotonic()
            limit = response.headers.get("X-HubSpot-RateLimit-Max", "")
            if limit.isdigit() and int(limit) > 0:
                start = self._answered[-min(int(limit), len(self._answered))]
            self._pause_until = start + int(interval) / 1000

    async def _read_json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """A read call's status and JSON body; malformed bodies are fetched again."""
        response, body = await fetch_json(
            # Searches and batch reads are POSTs, but repeating them changes nothing.
            lambda: self._request(method, path, idempotent=True, **kwargs),
            "HubSpot",
            repeatable=True,
        )
        return response.status_code, body

    async def _write_json(self, path: str, payload: Any) -> tuple[int, Any]:
        response, body = await fetch_json(
            lambda: self._request("POST", path, json=payload), "HubSpot", repeatable=False
        )
        return response.status_code, body

    def _fail(self, status: int, body: Any, what: str) -> RetriableError | ConfigurationError:
        category = body.get("category") if isinstance(body, dict) else None
        detail = f"{what}: HubSpot answered HTTP {status}" + (f" ({category})" if category else "")
        if status >= 500 or status == 429:
            return RetriableError(detail)
        return ConfigurationError(detail)

    # ------------------------------------------------------------ check / describe

    async def check(self) -> None:
        if self.auth_type == AuthType.OAUTH:
            async with self._token_lock:
                await self._refresh_token()
        status, body = await self._read_json(
            "GET", "/crm/v3/objects/contacts", params={"limit": "1", "properties": "email"}
        )
        if status != 200:
            raise self._fail(status, body, "reading one contact")

    async def describe(self, object_type: str) -> ObjectSchema:
        _contacts_only(object_type)
        if object_type in self._schemas:
            return self._schemas[object_type]
        status, body = await self._read_json("GET", f"/crm/v3/properties/{object_type}")
        if status != 200 or not isinstance(body, dict):
            raise self._fail(status, body, "reading contact properties")
        fields = {}
        for item in body.get("results") or []:
            schema = _field_schema(item)
            if schema is not None:
                fields[schema.name] = schema
        described = ObjectSchema(object_type=object_type, fields=fields)
        self._schemas[object_type] = described
        return described

    # ------------------------------------------------------------ reads

    async def read_changed(
        self, object_type: str, since: datetime | None, fields: Sequence[str]
    ) -> AsyncIterator[ReadPage]:
        """Keyset paging over `lastmodifieddate`: every page is a fresh search for records
        modified at or after the last one seen, so records edited mid-read move *ahead* of
        the cursor instead of shifting an offset (which would skip others), and no search
        ever nears the 10,000-result window. Records already returned at the cursor's exact
        millisecond are skipped; a full page of them is drained by record id."""
        _contacts_only(object_type)
        schema = await self.describe(object_type)
        properties = _with_bookkeeping(fields)
        cursor = _to_ms(since) if since is not None else None
        strict = False  # GT instead of GTE after the cursor's millisecond was drained
        seen_at_cursor: set[str] = set()
        # Records of the page being gathered, by id: one edited while the page is gathered
        # is read again further on, and only that later version is kept.
        pending: dict[str, Record] = {}
        while True:
            filters = []
            if cursor is not None:
                operator = "GT" if strict else "GTE"
                filters = [{"propertyName": MODIFIED, "operator": operator, "value": str(cursor)}]
            results = await self._search(
                filters, [{"propertyName": MODIFIED, "direction": "ASCENDING"}], properties
            )
            fresh: list[Record] = []
            for item in results:
                record = _record(item, fields, schema)
                stamp = _to_ms(record.modified_at)
                if stamp == cursor and record.id in seen_at_cursor:
                    continue
                if stamp != cursor:
                    cursor, strict, seen_at_cursor = stamp, False, set()
                seen_at_cursor.add(record.id)
                fresh.append(record)
            for record in fresh:
                pending.pop(record.id, None)
                pending[record.id] = record
            done = len(results) < SEARCH_PAGE_SIZE
            drain = not done and not fresh and cursor is not None
            if pending and (done or drain or len(pending) >= READ_PAGE_RECORDS):
                records = list(pending.values())
                yield ReadPage(records=records, watermark=records[-1].modified_at)
                pending = {}
            if done:
                return
            if drain:
                assert cursor is not None
                async for page in self._drain_millisecond(
                    cursor, seen_at_cursor, properties, fields, schema
                ):
                    yield page
                strict, seen_at_cursor = True, set()

    async def _drain_millisecond(
        self,
        stamp: int,
        seen: set[str],
        properties: list[str],
        fields: Sequence[str],
        schema: ObjectSchema,
    ) -> AsyncIterator[ReadPage]:
        """More than a page of records share one millisecond: page through them by id."""
        last_id = 0
        while True:
            filters = [
                {"propertyName": MODIFIED, "operator": "EQ", "value": str(stamp)},
                {"propertyName": OBJECT_ID, "operator": "GT", "value": str(last_id)},
            ]
            results = await self._search(
                filters, [{"propertyName": OBJECT_ID, "direction": "ASCENDING"}], properties
            )
            records = [_record(item, fields, schema) for item in results]
            if records:
                last_id = max(int(record.id) for record in records)
            fresh = [record for record in records if record.id not in seen]
            seen.update(record.id for record in fresh)
            if fresh:
                yield ReadPage(records=fresh, watermark=fresh[-1].modified_at)
            if len(results) < SEARCH_PAGE_SIZE:
                return

    async def _search(
        self,
        filters: list[dict[str, Any]],
        sorts: list[dict[str, str]],
        properties: list[str],
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": sorts,
            "properties": properties,
            "limit": SEARCH_PAGE_SIZE,
        }
        if after is not None:
            payload["after"] = after
        status, body = await self._read_json(
            "POST", "/crm/v3/objects/contacts/search", json=payload
        )
        if status != 200 or not isinstance(body, dict):
            raise self._fail(status, body, "searching contacts")
        return list(body.get("results") or [])

    async def read(
        self, object_type: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        _contacts_only(object_type)
        return await self._batch_read(object_type, list(ids), fields, id_property=None)

    async def lookup(
        self, object_type: str, field: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        _contacts_only(object_type)
        wanted = list(dict.fromkeys(value.strip() for value in values if value.strip()))
        if field == "email":
            return await self._batch_read(
                object_type, [value.lower() for value in wanted], fields, id_property="email"
            )
        if field == OBJECT_ID:
            return await self.read(object_type, wanted, fields)
        schema = await self.describe(object_type)
        if field not in schema.fields:
            raise ConfigurationError(
                f"HubSpot contacts have no property {field!r}; check the identity mapping",
                field=field,
            )
        found: dict[str, Record] = {}
        properties = _with_bookkeeping([*fields, field])
        for chunk in _chunks(wanted, self.max_batch_size):
            after: str | None = None
            while True:
                condition = {"propertyName": field, "operator": "IN", "values": chunk}
                payload_results = await self._search_page([condition], properties, after=after)
                results, after = payload_results
                for item in results:
                    record = _record(item, fields, schema)
                    found[record.id] = record
                if after is None:
                    break
        return list(found.values())

    async def _search_page(
        self, filters: list[dict[str, Any]], properties: list[str], after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        payload: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": OBJECT_ID, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": SEARCH_PAGE_SIZE,
        }
        if after is not None:
            payload["after"] = after
        status, body = await self._read_json(
            "POST", "/crm/v3/objects/contacts/search", json=payload
        )
        if status != 200 or not isinstance(body, dict):
            raise self._fail(status, body, "searching contacts")
        return list(body.get("results") or []), _next_after(body)

    async def _batch_read(
        self,
        object_type: str,
        keys: list[str],
        fields: Sequence[str],
        id_property: str | None,
    ) -> list[Record]:
        schema = await self.describe(object_type)
        properties = _with_bookkeeping(fields)
        found: dict[str, Record] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), self.max_batch_size):
            payload: dict[str, Any] = {
                "properties": properties,
                "inputs": [{"id": key} for key in chunk],
            }
            if id_property is not None:
                payload["idProperty"] = id_property
            status, body = await self._read_json(
                "POST", f"/crm/v3/objects/{object_type}/batch/read", json=payload
            )
            if status not in (200, 207) or not isinstance(body, dict):
                raise self._fail(status, body, "reading contacts by id")
            for item in body.get("results") or []:
                record = _record(item, fields, schema)
                found[record.id] = record
        return list(found.values())

    # ------------------------------------------------------------ lists

    async def _list_id(self, list_ref: str) -> str:
        reference = list_ref.strip()
        if reference.isdigit():
            return reference
        if reference not in self._list_ids:
            await self._list_object(reference)  # remembers the id of a list named so
        return self._list_ids[reference]

    async def iter_list_members(self, list_ref: str) -> AsyncIterator[list[str]]:
        list_id = await self._list_id(list_ref)
        after: str | None = None
        while True:
            params = {"limit": str(MEMBERSHIP_PAGE_SIZE)}
            if after is not None:
                params["after"] = after
            status, body = await self._read_json(
                "GET", f"/crm/v3/lists/{list_id}/memberships", params=params
            )
            if status == 404:
                raise ConfigurationError(
                    f"HubSpot list {list_id} does not exist; check inclusionList.list",
                    field="inclusionList.list",
                )
            if status != 200 or not isinstance(body, dict):
                raise self._fail(status, body, "reading list memberships")
            ids = [_member_id(item) for item in body.get("results") or []]
            if ids:
                yield ids
            after = _next_after(body)
            if after is None:
                return

    async def list_changes(self, list_ref: str, since: datetime | None) -> ListChanges | None:
        """The list's `size`, then its join order newest first (`before` = the size: the
        offset past the last membership) down to the first membership older than `since`.
        None when the size is not final (a list still processing) or HubSpot refuses the
        offset: the engine then reads the whole list."""
        found, as_of = await self._list_object(list_ref)
        list_id, size = str(found.get("listId", "")), found.get("size")
        status_of_processing = found.get("processingStatus")
        if not isinstance(size, int) or status_of_processing not in (None, "COMPLETE"):
            return None
        if since is None and as_of is not None:
            # HubSpot's clock says where the join order stands: no membership to read.
            return ListChanges(size=size, joined=[], latest=None, as_of=as_of)
        joined: list[str] = []
        latest: datetime | None = None
        before: str | None = str(size) if size else None
        while before is not None:
            params = {"limit": "1" if since is None else str(MEMBERSHIP_PAGE_SIZE)}
            params["before"] = before
            status, body = await self._read_json(
                "GET", f"/crm/v3/lists/{list_id}/memberships/join-order", params=params
            )
            if status == 400:
                log.info("HubSpot refused a join-order offset; reading the whole list")
                return None
            if status != 200 or not isinstance(body, dict):
                raise self._fail(status, body, "reading list memberships by join order")
            before = _prev_before(body) if since is not None else None
            results = body.get("results") or []
            times = [_parse_datetime(item.get("membershipTimestamp")) for item in results]
            if None in times or times != sorted(times, reverse=True):  # type: ignore[type-var]
                # No usable times, or not newest first: only a full read is safe.
                log.info("HubSpot's join order was not usable; reading the whole list")
                return None
            for item, added in zip(results, times, strict=True):
                assert added is not None
                latest = added if latest is None else max(latest, added)
                if since is None or added < since:
                    before = None  # older than wanted: the rest is older still
                    break
                joined.append(_member_id(item))
        return ListChanges(size=size, joined=joined, latest=latest, as_of=as_of)

    async def _list_object(self, list_ref: str) -> tuple[dict[str, Any], datetime | None]:
        """The list as HubSpot describes it (`GET /crm/v3/lists/{listId}` or by name), and
        HubSpot's clock then (the HTTP `Date` header, whole seconds: never ahead)."""
        reference = list_ref.strip()
        if reference.isdigit():
            path = f"/crm/v3/lists/{reference}"
        else:
            path = f"/crm/v3/lists/object-type-id/{CONTACT_OBJECT_TYPE_ID}/name/" + quote(
                reference, safe=""
            )
        response = await self._request("GET", path, idempotent=True)
        status, body = response.status_code, _json_or_none(response)
        if status == 200 and body is None:
            raise RetriableError("HubSpot answered a list lookup with malformed JSON")
        if status == 404:
            raise ConfigurationError(
                f"HubSpot has no contact list {reference!r}; check inclusionList.list "
                "(a list id or the exact list name)",
                field="inclusionList.list",
            )
        if status != 200 or not isinstance(body, dict):
            raise self._fail(status, body, "reading a list")
        found = body.get("list")
        if not isinstance(found, dict) or not found.get("listId"):
            raise RetriableError("HubSpot answered a list lookup without a list id")
        if not reference.isdigit():
            self._list_ids[reference] = str(found["listId"])
        return found, _http_date(response.headers.get("Date"))

    async def list_members(self, list_ref: str, ids: Sequence[str]) -> set[str]:
        list_id = await self._list_id(list_ref)
        members: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(ids)), self.max_batch_size):
            payload = {
                "inputs": [
                    {"objectTypeId": CONTACT_OBJECT_TYPE_ID, "recordId": record_id}
                    for record_id in chunk
                ]
            }
            status, body = await self._read_json(
                "POST", "/crm/v3/lists/records/memberships/batch/read", json=payload
            )
            if status not in (200, 207) or not isinstance(body, dict):
                raise self._fail(status, body, "reading list memberships of records")
            for item in body.get("results") or []:
                memberships = item.get("recordListMemberships") or []
                if any(str(entry.get("listId")) == list_id for entry in memberships):
                    members.add(str(item.get("recordId")))
        return members

    # ------------------------------------------------------------ writes

    async def create(
        self, object_type: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        _contacts_only(object_type)
        schema = await self.describe(object_type)
        results: list[WriteResult] = []
        for offset in range(0, len(records), self.max_batch_size):
            chunk = records[offset : offset + self.max_batch_size]
            inputs = [
                {"properties": _to_hubspot(record, schema), "objectWriteTraceId": str(index)}
                for index, record in enumerate(chunk)
            ]
            results.extend(
                await self._write(f"/crm/v3/objects/{object_type}/batch/create", inputs, None)
            )
        return results

    async def update(
        self, object_type: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[WriteResult]:
        _contacts_only(object_type)
        schema = await self.describe(object_type)
        results: list[WriteResult] = []
        for chunk in _chunks_without_repeats(list(updates), self.max_batch_size):
            inputs = [
                {
                    "id": str(record_id),
                    "properties": _to_hubspot(fields, schema),
                    "objectWriteTraceId": str(index),
                }
                for index, (record_id, fields) in enumerate(chunk)
            ]
            ids = [str(record_id) for record_id, _ in chunk]
            results.extend(
                await self._write(f"/crm/v3/objects/{object_type}/batch/update", inputs, ids)
            )
        return results

    async def _write(
        self, path: str, inputs: list[dict[str, Any]], ids: list[str] | None
    ) -> list[WriteResult]:
        """One batch write; results in input order, matched by objectWriteTraceId (or id)."""
        status, body = await self._write_json(path, {"inputs": inputs})
        if status >= 500 or status == 429:
            raise RetriableError(f"HubSpot batch write failed (HTTP {status})")
        if status not in (200, 201, 207) or not isinstance(body, dict):
            # The whole batch was refused: every record carries the reason.
            error = _record_error(body if isinstance(body, dict) else {})
            return [
                WriteResult(record_id=None if ids is None else ids[i], error=error)
                for i in range(len(inputs))
            ]
        outcome: dict[int, WriteResult] = {}
        by_id = {record_id: index for index, record_id in enumerate(ids or [])}
        for item in body.get("results") or []:
            index = _input_index(item.get("objectWriteTraceId"), str(item.get("id")), by_id)
            if index is not None:
                outcome[index] = WriteResult(record_id=str(item.get("id")))
        for error_body in body.get("errors") or []:
            context = error_body.get("context") or {}
            error = _record_error(error_body)
            traces = context.get("objectWriteTraceId") or []
            error_ids = context.get("ids") or []
            indexes = [_input_index(trace, None, by_id) for trace in traces] or [
                by_id.get(str(record_id)) for record_id in error_ids
            ]
            for index in indexes:
                if index is not None:
                    record_id = None if ids is None else ids[index]
                    outcome[index] = WriteResult(record_id=record_id, error=error)
        missing = RecordError(
            reason="AppRejected",
            message="HubSpot returned no result for this record",
            code="NO_RESULT",
        )
        return [
            outcome.get(index)
            or WriteResult(record_id=None if ids is None else ids[index], error=missing)
            for index in range(len(inputs))
        ]


# ---------------------------------------------------------------- helpers


def _contacts_only(object_type: str) -> None:
    if object_type != CONTACTS:
        raise ConfigurationError(
            f"the HubSpot connector syncs contacts, not {object_type!r}", field="objectType"
        )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return json_body(response)
    except MalformedJsonError:
        return None


def _token_error(status: int, body: Any) -> AuthenticationError:
    code = ""
    if isinstance(body, dict):
        code = str(body.get("status") or body.get("error") or "")
    credential = {
        "BAD_CLIENT_ID": "clientId",
        "BAD_CLIENT_SECRET": "clientSecret",
        "invalid_client": "clientSecret",
    }.get(code, "refreshToken")
    hint = {
        "clientId": "the app's client ID",
        "clientSecret": "the app's client secret",
        "refreshToken": "a refresh token from installing the app (it is revoked when the "
        "app is uninstalled)",
    }[credential]
    return AuthenticationError(
        f"HubSpot refused to refresh the access token (HTTP {status}"
        + (f", {code}" if code else "")
        + f"); check the Secret's {credential} key: it must hold {hint}",
        credential=credential,
    )


def _with_bookkeeping(fields: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*fields, MODIFIED, OBJECT_ID]))


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _parse_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(item: Mapping[str, Any], fields: Sequence[str], schema: ObjectSchema) -> Record:
    properties = item.get("properties") or {}
    modified = (
        _parse_datetime(properties.get(MODIFIED))
        or _parse_datetime(item.get("updatedAt"))
        or datetime.fromtimestamp(0, tz=UTC)
    )
    return Record(
        id=str(item.get("id")),
        fields={
            name: _from_hubspot(properties.get(name), schema.fields.get(name)) for name in fields
        },
        modified_at=modified,
    )


def _from_hubspot(value: Any, field: FieldSchema | None) -> Any:
    """HubSpot sends every property value as a string; give JSON types back."""
    if value is None or value == "":
        return None
    if field is None or not isinstance(value, str):
        return value
    if field.type == FieldType.BOOLEAN:
        return value.lower() == "true"
    if field.type == FieldType.NUMBER:
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    return value


def _to_hubspot(record: Mapping[str, Any], schema: ObjectSchema) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in record.items():
        if value is None:
            values[name] = ""  # HubSpot clears a property given an empty string
        elif isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            values[name] = str(_to_ms(value))
        else:
            values[name] = str(value)
    return values


def _field_schema(item: Mapping[str, Any]) -> FieldSchema | None:
    name = item.get("name")
    if not isinstance(name, str) or item.get("archived"):
        return None
    hubspot_type = str(item.get("type", "string"))
    field_type = str(item.get("fieldType", ""))
    if name == "email":
        kind = FieldType.EMAIL
    elif field_type == "phonenumber":
        kind = FieldType.PHONE
    elif hubspot_type == "bool" or field_type == "booleancheckbox":
        kind = FieldType.BOOLEAN
    elif hubspot_type == "enumeration":
        kind = FieldType.ENUMERATION
    else:
        kind = {
            "number": FieldType.NUMBER,
            "date": FieldType.DATE,
            "datetime": FieldType.DATETIME,
        }.get(hubspot_type, FieldType.STRING)
    metadata = item.get("modificationMetadata") or {}
    options = None
    if kind == FieldType.ENUMERATION:
        options = tuple(
            str(option.get("value"))
            for option in item.get("options") or []
            if not option.get("hidden")
        )
    return FieldSchema(
        name=name,
        type=kind,
        label=str(item.get("label") or name),
        required=False,  # HubSpot requires no contact property on create
        read_only=bool(metadata.get("readOnlyValue") or item.get("calculated")),
        options=options,
        max_length=65_536 if kind in (FieldType.STRING, FieldType.EMAIL) else None,
    )


def _record_error(body: Mapping[str, Any]) -> RecordError:
    """A HubSpot error as a RecordError. HubSpot's messages quote the rejected values, so
    only its codes, categories and property names are kept."""
    category = str(body.get("category") or "UNKNOWN")
    details = [detail for detail in body.get("errors") or [] if isinstance(detail, dict)]
    code: str | None = None
    field: str | None = None
    for detail in details:
        code = code or (str(detail["code"]) if detail.get("code") else None)
        names = (detail.get("context") or {}).get("propertyName") or []
        field = field or (str(names[0]) if names else None)
    if code is None or field is None:
        embedded = _embedded_property_errors(str(body.get("message") or ""))
        if embedded:
            code = code or embedded[0].get("error")
            field = field or embedded[0].get("name")
    code = code or category
    reason = _REASONS_BY_CODE.get(code, "AppRejected")
    message = f"HubSpot rejected the record ({category}, {code})"
    if field:
        message = f"HubSpot rejected property {field!r} ({category}, {code})"
    if category == "CONFLICT":
        existing = (body.get("context") or {}).get("existingId") or []
        message = "a contact with this email already exists in HubSpot"
        if existing:
            message += f" (id {existing[0]})"
        field = field or "email"
    elif category == "OBJECT_NOT_FOUND":
        message = "the contact does not exist in HubSpot (deleted or merged)"
    return RecordError(reason=reason, message=message, field=field, code=code)


def _embedded_property_errors(message: str) -> list[dict[str, str]]:
    """HubSpot puts property errors as a JSON array inside the message text."""
    start = message.find("[")
    if start < 0:
        return []
    try:
        parsed = json.loads(message[start:])
    except json.JSONDecodeError:
        return []
    if not isinstance(parsed, list):
        return []
    return [
        {key: str(value) for key, value in entry.items() if key in {"error", "name"}}
        for entry in parsed
        if isinstance(entry, dict)
    ]


def _input_index(trace: Any, record_id: str | None, by_id: Mapping[str, int]) -> int | None:
    if trace is not None and str(trace).isdigit():
        return int(str(trace))
    if record_id is not None:
        return by_id.get(record_id)
    return None


def _member_id(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("recordId"))
    return str(item)


def _next_after(body: Mapping[str, Any]) -> str | None:
    after = ((body.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after not in (None, "") else None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _prev_before(body: Mapping[str, Any]) -> str | None:
    before = ((body.get("paging") or {}).get("prev") or {}).get("before")
    return str(before) if before not in (None, "") else None


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for offset in range(0, len(values), size):
        yield values[offset : offset + size]


def _chunks_without_repeats(
    updates: list[tuple[str, Mapping[str, Any]]], size: int
) -> Iterable[list[tuple[str, Mapping[str, Any]]]]:
    """Batches of at most `size` updates, never with one id twice (HubSpot refuses that)."""
    chunk: list[tuple[str, Mapping[str, Any]]] = []
    ids: set[str] = set()
    for record_id, fields in updates:
        if len(chunk) == size or str(record_id) in ids:
            yield chunk
            chunk, ids = [], set()
        chunk.append((record_id, fields))
        ids.add(str(record_id))
    if chunk:
        yield chunk
