"""The Salesforce connector: Contacts (or Leads) over the REST API.

Reads page through SOQL queries (`/query` + `nextRecordsUrl`), writes go through sObject
Collections (200 records a call, allOrNone false), campaigns stand in for lists. See
README.md for the Salesforce documentation behind each choice.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote_plus, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datasync.api.models import AuthType
from datasync.connector import (
    AppUnreachableError,
    AuthenticationError,
    AuthSpec,
    ConfigurationError,
    Connector,
    FatalError,
    FieldSchema,
    FieldType,
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
    Action,
    ApiClient,
    HostPolicy,
    UntrustedServerError,
    Verdict,
    base_url_setting,
    fetch_json,
)

from . import soql
from .auth import TOKEN_PATH, TokenManager
from .errors import record_error, record_errors

log = logging.getLogger(__name__)

# httpx logs each request URL at INFO, and SOQL query strings carry emails and names:
# keep it quiet unless the application configured the httpx logger itself.
_httpx_log = logging.getLogger("httpx")
if _httpx_log.level == logging.NOTSET:
    _httpx_log.setLevel(logging.WARNING)

CONTACT_FIELDS: Mapping[str, str] = {
    "email": "Email",
    "firstName": "FirstName",
    "lastName": "LastName",
    "phone": "Phone",
    "jobTitle": "Title",
    "city": "MailingCity",
    "country": "MailingCountry",
    "emailOptOut": "HasOptedOutOfEmail",
}
LEAD_FIELDS: Mapping[str, str] = {
    "email": "Email",
    "firstName": "FirstName",
    "lastName": "LastName",
    "phone": "Phone",
    "jobTitle": "Title",
    "company": "Company",
    "city": "City",
    "country": "Country",
    "emailOptOut": "HasOptedOutOfEmail",
}
STANDARD_FIELDS_BY_SOBJECT: Mapping[str, Mapping[str, str]] = {
    "Contact": CONTACT_FIELDS,
    "Lead": LEAD_FIELDS,
}
MEMBER_FIELD = {"Contact": "ContactId", "Lead": "LeadId"}


class _StandardFields(Mapping[str, Mapping[str, str]]):
    """`standard_fields` that follows the `sobject` setting.

    Read on the class it is Contact's mapping; read on a connector it is the mapping of the
    connector's sObject, so default mappings use Lead's City/Country/Company for Leads.
    """

    def __init__(self, sobject: str = "Contact") -> None:
        self._fields = {"contacts": STANDARD_FIELDS_BY_SOBJECT[sobject]}

    def __getitem__(self, key: str) -> Mapping[str, str]:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __get__(self, instance: object, owner: type | None = None) -> _StandardFields:
        sobject = getattr(getattr(instance, "config", None), "sobject", "Contact")
        return self if sobject == "Contact" else _StandardFields(sobject)


MAX_BATCH = 200  # sObject Collections: up to 200 records per call
READ_PAGE_RECORDS = 10_000  # records handed to the engine per page (several query pages)
# A URI plus headers may be 16,384 bytes; our headers take well under 1 KB, so 12,000
# leaves ample room while letting a 200-value IN list of typical emails fit in one query.
MAX_QUERY_URL = 12_000
MAX_LITERAL = 4_000  # SOQL: strings in a WHERE clause are at most 4,000 characters
LIMIT_RETRIES = 3  # retries of the concurrent long-running request limit
LIMIT_EXCEEDED = (
    "Salesforce refused the request: the org's API request limit is exceeded "
    "(REQUEST_LIMIT_EXCEEDED)"
)
CAMPAIGN_ID = re.compile(r"^701[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")

_TYPES: Mapping[str, FieldType] = {
    "string": FieldType.STRING,
    "textarea": FieldType.STRING,
    "url": FieldType.STRING,
    "id": FieldType.STRING,
    "reference": FieldType.STRING,
    "combobox": FieldType.STRING,
    "encryptedstring": FieldType.STRING,
    "email": FieldType.EMAIL,
    "phone": FieldType.PHONE,
    "picklist": FieldType.ENUMERATION,
    "multipicklist": FieldType.ENUMERATION,
    "boolean": FieldType.BOOLEAN,
    "double": FieldType.NUMBER,
    "currency": FieldType.NUMBER,
    "int": FieldType.NUMBER,
    "long": FieldType.NUMBER,
    "percent": FieldType.NUMBER,
    "date": FieldType.DATE,
    "datetime": FieldType.DATETIME,
}
_LENGTH_TYPES = {FieldType.STRING, FieldType.EMAIL, FieldType.PHONE}


class SalesforceSettings(BaseModel):
    """Non-secret settings of the Salesforce connector (all values arrive as strings)."""

    model_config = ConfigDict(extra="forbid")

    organizationUrl: str | None = Field(
        default=None,
        description="The org's My Domain URL, e.g. https://acme.my.salesforce.com "
        "(required for AppParameters).",
    )
    loginUrl: str = Field(
        default="https://login.salesforce.com",
        description="Where the refresh-token flow logs in: https://login.salesforce.com, "
        "https://test.salesforce.com for sandboxes, or the My Domain URL.",
    )
    apiVersion: str = Field(default="v62.0", description="REST API version, e.g. v62.0.")
    sobject: Literal["Contact", "Lead"] = Field(
        default="Contact", description="Which object `contacts` means: Contact or Lead."
    )
    sessionTimeoutMinutes: int = Field(
        default=120,
        ge=5,
        le=1440,
        description="The org's session timeout; the access token is renewed after it.",
    )
    apiUsageReserve: int = Field(
        default=500,
        ge=0,
        description="Stop (RateLimited) when fewer daily API requests than this remain.",
    )

    @field_validator("organizationUrl", "loginUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return base_url_setting(value, "https://acme.my.salesforce.com", path_allowed=False)

    @field_validator("apiVersion")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("v"):
            value = "v" + value
        if not re.fullmatch(r"v\d{2,3}\.0", value):
            raise ValueError("must look like v62.0")
        return value


class SalesforceConnector(Connector):
    name: ClassVar[str] = "salesforce"
    title: ClassVar[str] = "Salesforce"
    auth: ClassVar[tuple[AuthSpec, ...]] = (
        AuthSpec(
            type=AuthType.OAUTH,
            description="Refresh-token flow of a connected app / external client app with the "
            "OAuth scopes `api refresh_token`.",
            keys=(
                SecretKey("clientId", "The app's Consumer Key."),
                SecretKey("clientSecret", "The app's Consumer Secret."),
                SecretKey("refreshToken", "A refresh token issued to the app for the sync user."),
            ),
        ),
        AuthSpec(
            type=AuthType.APP_PARAMETERS,
            description="Client-credentials flow on the org's My Domain (setting "
            "organizationUrl); the app needs the flow enabled and a run-as user.",
            keys=(
                SecretKey("clientId", "The app's Consumer Key."),
                SecretKey("clientSecret", "The app's Consumer Secret."),
            ),
        ),
    )
    settings_model: ClassVar[type[BaseModel]] = SalesforceSettings
    standard_fields: ClassVar[Mapping[str, Mapping[str, str]]] = _StandardFields()
    max_batch_size: ClassVar[int] = MAX_BATCH
    default_allowed_hosts: ClassVar[tuple[str, ...]] = (
        "login.salesforce.com",
        "test.salesforce.com",
        "*.my.salesforce.com",
        "*.salesforce.com",
    )
    accepts_ca_bundle: ClassVar[bool] = True

    def __init__(
        self,
        settings: Mapping[str, str],
        credentials: Mapping[str, str],
        auth_type: AuthType | str,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        auth_type = AuthType(auth_type)
        super().__init__(settings, credentials, auth_type)
        self.config = parse_settings(SalesforceSettings, settings, "Salesforce")
        self.require_credentials()
        if auth_type == AuthType.APP_PARAMETERS:
            if not self.config.organizationUrl:
                raise ConfigurationError(
                    "AppParameters (client credentials flow) needs the organizationUrl setting: "
                    "the org's My Domain URL, e.g. https://acme.my.salesforce.com",
                    field="organizationUrl",
                )
            token_base, url_setting = self.config.organizationUrl, "organizationUrl"
        else:
            token_base, url_setting = self.config.loginUrl, "loginUrl"
        self.hosts = HostPolicy.from_environment(self.default_allowed_hosts)
        for setting in ("organizationUrl", "loginUrl"):
            url = getattr(self.config, setting)
            if url:
                try:
                    self.hosts.check(url, setting=setting)
                except ConfigurationError as error:
                    raise ConfigurationError(f"setting {setting}: {error}", field=setting) from None
        self.http = ApiClient(
            base_url=token_base,
            hosts=self.hosts,
            app="Salesforce",
            verify=tls_context or True,
            classify=self._classify,
        )
        self.tokens = TokenManager(
            self.http,
            auth_type,
            {key: str(value) for key, value in credentials.items()},
            token_base + TOKEN_PATH,
            url_setting,
            self.hosts,
            session_seconds=self.config.sessionTimeoutMinutes * 60 - 60,
        )
        self.http.auth_headers = self.tokens.auth_headers
        self.api_usage: tuple[int, int] | None = None  # last Sforce-Limit-Info api-usage
        self._campaigns: dict[str, str] = {}

    # ------------------------------------------------------------ plumbing

    @property
    def api_calls(self) -> int:
        return self.http.calls

    @property
    def sobject(self) -> str:
        return self.config.sobject

    @property
    def field_map(self) -> Mapping[str, str]:
        """Canonical name -> field of the configured sObject (Lead differs from Contact)."""
        return STANDARD_FIELDS_BY_SOBJECT[self.sobject]

    async def aclose(self) -> None:
        await self.http.aclose()

    def _object(self, object_type: str) -> str:
        if object_type != "contacts":
            raise ConfigurationError(
                f"Salesforce supports object type 'contacts' (not {object_type!r})",
                field="objectType",
            )
        return self.sobject

    def _data_path(self, path: str) -> str:
        return f"/services/data/{self.config.apiVersion}/{path.lstrip('/')}"

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A data API call on the instance URL, after the API usage reserve check."""
        if self.api_usage is not None:
            used, limit = self.api_usage
            if limit - used < self.config.apiUsageReserve:
                raise RetriableError(
                    f"Salesforce's daily API requests are nearly used up ({used} of {limit}); "
                    f"stopping to keep {self.config.apiUsageReserve} in reserve "
                    "(setting apiUsageReserve)",
                    reason="RateLimited",
                )
        session = await self.tokens.session()
        url = path if path.startswith("http") else session.instance_url + path
        try:
            return await self.http.request(method, url, **kwargs)
        except AuthenticationError as error:
            if error.credential is not None:
                raise
            raise AuthenticationError(
                "Salesforce refused a freshly issued session (HTTP 401); check that the "
                "user behind the credentials is active and has the API Enabled permission",
                credential=self.tokens.secret_key,
            ) from None
        except UntrustedServerError:
            raise
        except AppUnreachableError:
            raise AppUnreachableError(
                "Salesforce's instance URL (from the token response) could not be reached; "
                f"check the {self.tokens.url_setting} setting and the network path"
            ) from None

    def _classify(self, response: httpx.Response) -> Verdict | None:
        """Every answer, refusals included, carries the API usage; a 403
        REQUEST_LIMIT_EXCEEDED is Salesforce's rate limit, not a permission problem: the
        daily allocation (TotalRequests) is not asked again, the concurrent long-running
        request limit is, LIMIT_RETRIES times with backoff."""
        self._note_usage(response)
        if response.status_code != 403 or "REQUEST_LIMIT_EXCEEDED" not in _error_codes(response):
            return None
        daily = "TotalRequests" in response.text
        return Verdict(Action.RATE_LIMITED, LIMIT_EXCEEDED, retries=0 if daily else LIMIT_RETRIES)

    def _note_usage(self, response: httpx.Response) -> None:
        header = response.headers.get("Sforce-Limit-Info", "")
        match = re.search(r"api-usage=(\d+)/(\d+)", header)
        if match:
            self.api_usage = (int(match.group(1)), int(match.group(2)))
            log.debug("Salesforce API usage %s/%s", *self.api_usage)

    async def _get_json(self, path: str, **kwargs: Any) -> Any:
        """GET a data resource; a malformed body is fetched again (GETs are idempotent)."""
        _, body = await fetch_json(
            lambda: self._send("GET", path, **kwargs),
            "Salesforce",
            repeatable=True,
            check=self._raise_for_error,
        )
        return body

    def _raise_for_error(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        errors = _error_list(response)
        code = str(errors[0].get("errorCode", "")) if errors else ""
        field_error = record_error(errors[0]) if errors else None
        if code == "INVALID_FIELD":
            name = field_error.field if field_error and field_error.field else None
            raise ConfigurationError(
                f"Salesforce {self.sobject} has no field {name or '(unknown)'} the sync asked "
                "for; fix the field mapping (API names such as MailingCity, Status__c)",
                field=name,
            )
        if code in ("INVALID_TYPE", "NOT_FOUND") and status in (400, 404):
            raise ConfigurationError(
                f"Salesforce answered {code} for {urlsplit(str(response.url)).path}; check the "
                "sobject and apiVersion settings",
                field="apiVersion" if code == "NOT_FOUND" else "sobject",
            )
        if code == "INVALID_QUERY_LOCATOR":
            raise RetriableError(
                "Salesforce's query locator expired before all pages were read (they live "
                "about 15 minutes); the next run resumes from the stored watermark",
                reason="AppUnavailable",
            )
        if code in ("API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED", "INSUFFICIENT_ACCESS"):
            raise FatalError(
                f"Salesforce refused API access ({code}): the user needs the API Enabled "
                "permission and access to the object"
            )
        if status >= 500:
            raise RetriableError(f"Salesforce answered HTTP {status} ({code or 'no code'})")
        raise FatalError(f"Salesforce answered HTTP {status} ({code or 'no error code'})")

    # ------------------------------------------------------------ Connector API

    async def check(self) -> None:
        await self.tokens.session(force=True)
        body = await self._get_json(self._data_path("limits"))
        daily = body.get("DailyApiRequests") if isinstance(body, dict) else None
        if isinstance(daily, dict) and "Max" in daily and "Remaining" in daily:
            self.api_usage = (int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))

    async def describe(self, object_type: str) -> ObjectSchema:
        sobject = self._object(object_type)
        body = await self._get_json(self._data_path(f"sobjects/{sobject}/describe"))
        fields: dict[str, FieldSchema] = {}
        for item in body.get("fields", []):
            kind = _TYPES.get(str(item.get("type")))
            if kind is None:
                continue  # compound (address, location), base64, anyType: not synced
            options = None
            if kind is FieldType.ENUMERATION:
                options = tuple(
                    str(value["value"])
                    for value in item.get("picklistValues") or []
                    if value.get("active", True)
                )
            createable = bool(item.get("createable"))
            length = int(item.get("length") or 0)
            fields[item["name"]] = FieldSchema(
                name=item["name"],
                type=kind,
                label=str(item.get("label") or item["name"]),
                required=createable
                and not item.get("nillable", True)
                and not item.get("defaultedOnCreate", False),
                read_only=not (createable or item.get("updateable")),
                options=options,
                max_length=length if kind in _LENGTH_TYPES and length > 0 else None,
            )
        return ObjectSchema(object_type=object_type, fields=fields)

    async def read_changed(
        self, object_type: str, since: datetime | None, fields: Sequence[str]
    ) -> AsyncIterator[ReadPage]:
        sobject = self._object(object_type)
        where = f" WHERE SystemModstamp >= {soql.datetime_literal(since)}" if since else ""
        query = f"SELECT {_select_list(fields)} FROM {sobject}{where} ORDER BY SystemModstamp, Id"  # noqa: S608 - SOQL: API names validated, literals quoted
        # Query pages (up to 2,000 rows) are handed on in pages of READ_PAGE_RECORDS: the
        # engine writes each page in full batches, so fewer pages leave fewer partial ones.
        records: list[Record] = []
        async for rows in self._query_pages(query):
            records.extend(_record(row, fields) for row in rows)
            if len(records) >= READ_PAGE_RECORDS:
                yield ReadPage(records=records, watermark=max(r.modified_at for r in records))
                records = []
        if records:  # an empty result is no page at all
            yield ReadPage(records=records, watermark=max(r.modified_at for r in records))

    async def read(
        self, object_type: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        sobject = self._object(object_type)
        wanted = [value for value in dict.fromkeys(ids) if soql.SALESFORCE_ID.match(value)]
        return await self._select_in(sobject, "Id", wanted, fields)

    async def lookup(
        self, object_type: str, field: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        sobject = self._object(object_type)
        _check_field_name(field)
        wanted = [value for value in dict.fromkeys(str(v) for v in values) if value]
        return await self._select_in(sobject, field, wanted, fields)

    async def _select_in(
        self, sobject: str, field: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[Record]:
        prefix = f"SELECT {_select_list(fields)} FROM {sobject} WHERE {field} IN ("  # noqa: S608 - SOQL: API names validated, literals quoted
        records: list[Record] = []
        for chunk in _in_chunks(prefix, ")", values):
            async for rows in self._query_pages(chunk):
                records.extend(_record(row, fields) for row in rows)
        return records

    async def _query_pages(self, query: str) -> AsyncIterator[list[dict[str, Any]]]:
        body = await self._get_json(self._data_path("query"), params={"q": query})
        while True:
            yield list(body.get("records") or [])
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url:
                return
            body = await self._get_json(str(next_url))

    async def _campaign_id(self, list_ref: str) -> str:
        if CAMPAIGN_ID.match(list_ref):
            return list_ref
        if list_ref in self._campaigns:
            return self._campaigns[list_ref]
        query = f"SELECT Id FROM Campaign WHERE Name = {soql.quote(list_ref)} LIMIT 2"  # noqa: S608 - SOQL: API names validated, literals quoted
        rows = [row async for page in self._query_pages(query) for row in page]
        if not rows:
            raise ConfigurationError(
                "no Salesforce Campaign has that name; set inclusionList.list to a Campaign "
                "Name or Id",
                field="inclusionList.list",
            )
        if len(rows) > 1:
            raise ConfigurationError(
                "several Salesforce Campaigns have that name; use the Campaign Id instead",
                field="inclusionList.list",
            )
        self._campaigns[list_ref] = str(rows[0]["Id"])
        return self._campaigns[list_ref]

    async def list_members(self, list_ref: str, ids: Sequence[str]) -> set[str]:
        campaign = await self._campaign_id(list_ref)
        member = MEMBER_FIELD[self.sobject]
        by_prefix = {value[:15]: value for value in ids if soql.SALESFORCE_ID.match(value)}
        prefix = (
            f"SELECT {member} FROM CampaignMember WHERE CampaignId = {soql.quote(campaign)} "  # noqa: S608 - SOQL: API names validated, literals quoted
            f"AND {member} IN ("
        )
        found: set[str] = set()
        for chunk in _in_chunks(prefix, ")", list(by_prefix.values())):
            async for rows in self._query_pages(chunk):
                for row in rows:
                    value = str(row.get(member) or "")
                    if value[:15] in by_prefix:
                        found.add(by_prefix[value[:15]])
        return found

    async def iter_list_members(self, list_ref: str) -> AsyncIterator[list[str]]:
        campaign = await self._campaign_id(list_ref)
        member = MEMBER_FIELD[self.sobject]
        query = (
            f"SELECT {member} FROM CampaignMember WHERE CampaignId = {soql.quote(campaign)} "  # noqa: S608 - SOQL: API names validated, literals quoted
            f"AND {member} != null ORDER BY {member}"
        )
        async for rows in self._query_pages(query):
            yield [str(row[member]) for row in rows if row.get(member)]

    async def create(
        self, object_type: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        sobject = self._object(object_type)
        results: list[WriteResult] = []
        for start in range(0, len(records), MAX_BATCH):
            batch = [
                {"attributes": {"type": sobject}, **dict(fields)}
                for fields in records[start : start + MAX_BATCH]
            ]
            results.extend(await self._collections("POST", batch))
        return results

    async def update(
        self, object_type: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[WriteResult]:
        sobject = self._object(object_type)
        results: list[WriteResult] = []
        for start in range(0, len(updates), MAX_BATCH):
            batch = [
                {"attributes": {"type": sobject}, **dict(fields), "id": record_id}
                for record_id, fields in updates[start : start + MAX_BATCH]
            ]
            results.extend(await self._collections("PATCH", batch))
        return results

    async def _collections(self, method: str, batch: list[dict[str, Any]]) -> list[WriteResult]:
        payload = {"allOrNone": False, "records": batch}
        path = self._data_path("composite/sobjects")

        def check(response: httpx.Response) -> None:
            if response.status_code != 400 or not _error_list(response):
                self._raise_for_error(response)

        # A create is not repeated on a malformed answer: it may have created records.
        response, saved = await fetch_json(
            lambda: self._send(method, path, json=payload),
            "Salesforce",
            repeatable=method == "PATCH",
            check=check,
        )
        if response.status_code == 400:
            return await self._refused_batch(method, batch, record_error(_error_list(response)[0]))
        if not isinstance(saved, list) or len(saved) != len(batch):
            raise RetriableError("Salesforce answered a batch write with an unexpected body")
        return [_saved(method, item, result) for item, result in zip(batch, saved, strict=True)]

    async def _refused_batch(
        self, method: str, batch: list[dict[str, Any]], error: RecordError
    ) -> list[WriteResult]:
        """A whole call refused with 400. When it names a field that does not exist, only
        the records carrying that field fail; the others are sent again without them."""
        failed = [_result(method, item, None, error) for item in batch]
        if error.code != "INVALID_FIELD" or not error.field:
            return failed
        name = error.field.lower()
        carrying = {i for i, item in enumerate(batch) if any(k.lower() == name for k in item)}
        if not carrying or len(carrying) == len(batch):
            return failed
        others = [i for i in range(len(batch)) if i not in carrying]
        retried = await self._collections(method, [batch[i] for i in others])
        for index, result in zip(others, retried, strict=True):
            failed[index] = result
        return failed


# ---------------------------------------------------------------- helpers


def _check_field_name(name: str) -> None:
    if not soql.is_field_name(name):
        raise ConfigurationError(
            f"{name!r} is not a Salesforce field API name (letters, digits and underscores, "
            "e.g. MailingCity or Status__c)",
            field=name,
        )


def _select_list(fields: Sequence[str]) -> str:
    names = ["Id", "SystemModstamp"]
    seen = {name.lower() for name in names}
    for name in fields:
        _check_field_name(name)
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return ", ".join(names)


def _in_chunks(prefix: str, suffix: str, values: Sequence[str]) -> Iterator[str]:
    """`prefix 'a','b' suffix` queries with at most MAX_BATCH values each, keeping the
    encoded query URL under MAX_QUERY_URL characters."""
    base = len(quote_plus(prefix + suffix)) + 200  # path, version, "?q=" and some slack
    chunk: list[str] = []
    size = base
    for value in values:
        literal = soql.quote(value)
        if len(literal) - 2 > MAX_LITERAL:
            continue  # longer than any stored value can be: cannot match
        cost = len(quote_plus(literal + ","))
        if chunk and (len(chunk) >= MAX_BATCH or size + cost > MAX_QUERY_URL):
            yield prefix + ",".join(chunk) + suffix
            chunk, size = [], base
        chunk.append(literal)
        size += cost
    if chunk:
        yield prefix + ",".join(chunk) + suffix


def _parse_stamp(value: Any) -> datetime:
    stamp = datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _record(row: Mapping[str, Any], fields: Sequence[str]) -> Record:
    lowered = {key.lower(): value for key, value in row.items() if key != "attributes"}
    return Record(
        id=str(row["Id"]),
        fields={name: lowered.get(name.lower()) for name in fields},
        modified_at=_parse_stamp(lowered["systemmodstamp"]),
    )


def _error_list(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    if isinstance(body, dict):
        body = [body]
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _error_codes(response: httpx.Response) -> set[str]:
    return {str(item.get("errorCode", "")) for item in _error_list(response)}


def _result(
    method: str, item: Mapping[str, Any], record_id: str | None, error: RecordError
) -> WriteResult:
    own_id = item.get("id") if method == "PATCH" else record_id
    return WriteResult(record_id=str(own_id) if own_id else None, error=error)


def _saved(method: str, item: Mapping[str, Any], result: Any) -> WriteResult:
    if not isinstance(result, dict):
        raise RetriableError("Salesforce answered a batch write with an unexpected body")
    record_id = result.get("id") or (item.get("id") if method == "PATCH" else None)
    if result.get("success"):
        return WriteResult(record_id=str(record_id))
    errors = [error for error in result.get("errors") or [] if isinstance(error, dict)]
    error = record_errors(errors) if errors else record_error({"statusCode": "UNKNOWN_EXCEPTION"})
    return WriteResult(record_id=str(record_id) if record_id else None, error=error)
