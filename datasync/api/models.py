"""The DataSyncConnection API: the single source of truth for spec and status.

The CRD (`datasync crd`), the API reference in docs/ and `datasync validate` are all
generated from these models. Field descriptions are user documentation: they are what
`kubectl explain datasyncconnection.spec` prints.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GROUP = "datasync.io"
VERSION = "v1alpha1"
KIND = "DataSyncConnection"
PLURAL = "datasyncconnections"
SINGULAR = "datasyncconnection"
SHORT_NAMES = ["dsc"]
API_VERSION = f"{GROUP}/{VERSION}"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONNECTOR_NAME = r"^[a-z][a-z0-9-]{0,62}$"
REASON = r"^[A-Z][A-Za-z0-9]{0,63}$"
FIELD_NAME = r"^[^\x00-\x1f]{1,255}$"
# Five cron fields (each a list of values, ranges and steps, or names), or a macro.
CRON = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    r"([0-9A-Za-z*/,?-]+\s+){4}[0-9A-Za-z*/,?-]+)$"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)


class Direction(StrEnum):
    TWO_WAY = "TwoWay"
    ONE_WAY = "OneWay"


class FieldDirection(StrEnum):
    TWO_WAY = "TwoWay"
    TO_DESTINATION = "ToDestination"
    TO_SOURCE = "ToSource"


class AuthType(StrEnum):
    OAUTH = "OAuth"
    APP_PARAMETERS = "AppParameters"


class Side(StrEnum):
    SOURCE = "source"
    DESTINATION = "destination"


class ConflictResolution(StrEnum):
    MOST_RECENT = "MostRecent"
    SYSTEM_OF_RECORD = "SystemOfRecord"


class ObjectType(StrEnum):
    CONTACTS = "contacts"


class ValueType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    ENUMERATION = "enumeration"


class FilterOperator(StrEnum):
    EQUALS = "Equals"
    NOT_EQUALS = "NotEquals"
    IN = "In"
    NOT_IN = "NotIn"
    IS_SET = "IsSet"
    IS_NOT_SET = "IsNotSet"


class StateStoreType(StrEnum):
    SQLITE = "SQLite"
    POSTGRESQL = "PostgreSQL"


class SyncResult(StrEnum):
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"


class SecretRef(_Model):
    """A Secret in the DataSyncConnection's own namespace."""

    name: Annotated[
        str,
        Field(
            max_length=253,
            pattern=DNS_SUBDOMAIN,
            description="Name of a Secret in the same namespace as the DataSyncConnection.",
        ),
    ]

    @model_validator(mode="before")
    @classmethod
    def _no_namespace(cls, data: Any) -> Any:
        if isinstance(data, dict) and "namespace" in data:
            raise ValueError(
                "secretRef.namespace is not allowed: Secrets are always read from the "
                "DataSyncConnection's own namespace; remove `namespace` and create the "
                "Secret next to the connection"
            )
        return data


class Auth(_Model):
    """How Datasync logs in to an app."""

    type: AuthType = Field(
        description=(
            "OAuth: a refresh token obtained by logging in to the app (Secret keys depend on "
            "the connector, see `datasync connectors`). AppParameters: app-specific parameters "
            "such as an organization URL, client credentials or a private-app access token."
        )
    )
    secretRef: SecretRef = Field(
        description="The Secret holding the credentials. Values are never logged or reported."
    )


class CABundle(_Model):
    """A Secret key holding the PEM CA certificate(s) the app's server is verified with."""

    secretRef: SecretRef = Field(
        description="The Secret holding the CA bundle (in the connection's namespace)."
    )
    key: str = Field(
        default="ca.crt",
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The Secret key whose value is the PEM CA bundle (default ca.crt).",
    )


class TLS(_Model):
    """How Datasync verifies the app's server. Verification is always on."""

    caBundle: CABundle | None = Field(
        default=None,
        description=(
            "CA certificates to trust for this app instead of the system ones (an app "
            "behind a private CA or a TLS-inspecting proxy). API connectors only; the "
            "postgres connector takes `sslrootcert` in its Secret."
        ),
    )


class AppEndpoint(_Model):
    """One side of the connection: an app, how to log in, and its non-secret settings."""

    app: str = Field(
        pattern=CONNECTOR_NAME,
        max_length=63,
        description="Connector name: hubspot, salesforce or postgres (`datasync connectors`).",
    )
    auth: Auth = Field(description="Credentials for this app.")
    settings: dict[Annotated[str, Field(max_length=63)], Annotated[str, Field(max_length=2048)]] = (
        Field(
            default_factory=dict,
            max_length=32,
            description=(
                "Non-secret connector parameters as strings (for example organizationUrl, "
                "baseUrl, table). Each connector documents its settings."
            ),
        )
    )
    tls: TLS | None = Field(
        default=None,
        description="TLS options for outbound requests to this app (verification stays on).",
    )


class Identity(_Model):
    """The fields that match a record in one app to its counterpart in the other."""

    source: str = Field(
        pattern=FIELD_NAME, max_length=255, description="Identity field in the source app."
    )
    destination: str = Field(
        pattern=FIELD_NAME, max_length=255, description="Identity field in the destination app."
    )


class InclusionList(_Model):
    """Only members of this list leave their app: the door between the apps."""

    app: Side = Field(description="Which side the list lives in: source or destination.")
    list: str = Field(
        min_length=1,
        max_length=255,
        description="The list's id or name in that app (a HubSpot list, for example).",
    )


class Filter(_Model):
    """A property condition a record must meet to sync; records failing it are skipped."""

    app: Side = Field(description="Which side's field the condition reads.")
    field: str = Field(pattern=FIELD_NAME, max_length=255, description="Field to test.")
    operator: FilterOperator = Field(description="How the field is compared with `values`.")
    values: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=100,
        description="Values to compare with (compared as trimmed, case-insensitive strings).",
    )
    reason: str = Field(
        default="FilteredOut",
        pattern=REASON,
        description="Reason counted for records this filter skips, e.g. OptedOut.",
    )


class FieldMapping(_Model):
    """One field mapped between the apps."""

    source: str = Field(pattern=FIELD_NAME, max_length=255, description="Field in the source.")
    destination: str = Field(
        pattern=FIELD_NAME, max_length=255, description="Field in the destination."
    )
    direction: FieldDirection | None = Field(
        default=None,
        description=(
            "TwoWay, ToDestination or ToSource. Defaults to TwoWay in a TwoWay connection and "
            "ToDestination in a OneWay one. ToSource and TwoWay need a TwoWay connection."
        ),
    )
    values: dict[Annotated[str, Field(max_length=255)], Annotated[str, Field(max_length=255)]] = (
        Field(
            default_factory=dict,
            max_length=500,
            description=(
                "Value map for picklists, source value to destination value; "
                "reversed for writes to the source."
            ),
        )
    )
    type: ValueType | None = Field(
        default=None,
        description="Coerce values to this type; defaults to the destination field's type.",
    )
    required: bool = Field(
        default=False,
        description=(
            "A non-negotiable field: a record whose value cannot be written here fails. "
            "Other fields that fail are reported and the rest of the record still syncs."
        ),
    )
    blankOverwrites: bool = Field(
        default=False,
        description="Let a blank value erase a non-blank one (off: blanks never erase data).",
    )


class Mappings(_Model):
    """Which fields sync."""

    defaults: bool = Field(
        default=True, description="Include the connector pair's default field mappings."
    )
    fields: list[FieldMapping] = Field(
        default_factory=list,
        max_length=200,
        description="Custom mappings; a custom mapping replaces a default for the same field.",
    )


class StateStore(_Model):
    """Where Datasync remembers watermarks, matched pairs and sync health."""

    type: StateStoreType = Field(
        default=StateStoreType.SQLITE,
        description="SQLite on a PersistentVolumeClaim (default) or a shared PostgreSQL.",
    )
    size: str = Field(
        default="1Gi",
        pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$",
        description="SQLite only: size of the PersistentVolumeClaim.",
    )
    storageClassName: str | None = Field(
        default=None,
        max_length=253,
        description="SQLite only: storage class of the PersistentVolumeClaim.",
    )
    secretRef: SecretRef | None = Field(
        default=None,
        description="PostgreSQL only: a Secret with key `dsn` (a libpq connection string).",
    )


class ResourceList(_Model):
    cpu: str | None = Field(default=None, max_length=32, description="CPU, e.g. 500m.")
    memory: str | None = Field(default=None, max_length=32, description="Memory, e.g. 256Mi.")


class Resources(_Model):
    requests: ResourceList | None = Field(default=None, description="Requested resources.")
    limits: ResourceList | None = Field(default=None, description="Resource limits.")


class JobOptions(_Model):
    """How each sync run is executed in the cluster."""

    resources: Resources | None = Field(
        default=None, description="Resources of the sync container (chart defaults if unset)."
    )
    activeDeadlineSeconds: int = Field(
        default=3600, ge=60, le=86400, description="A run taking longer than this is stopped."
    )
    backoffLimit: int = Field(
        default=1, ge=0, le=10, description="Retries of a failed run before the next schedule."
    )


class DataSyncConnectionSpec(_Model):
    """The desired state of a connection between two apps."""

    goal: str | None = Field(
        default=None,
        max_length=1024,
        description="Why this connection exists, in plain words (shown in status output).",
    )
    objectType: ObjectType = Field(
        default=ObjectType.CONTACTS, description="Which records sync: contacts."
    )
    direction: Direction = Field(
        description="TwoWay: changes flow both ways. OneWay: source writes to destination only."
    )
    schedule: str = Field(
        pattern=CRON,
        max_length=128,
        description="Cron schedule of sync runs, e.g. '*/15 * * * *'.",
    )
    suspend: bool = Field(default=False, description="Pause scheduled runs.")
    source: AppEndpoint = Field(description="The source app.")
    destination: AppEndpoint = Field(description="The destination app.")
    systemOfRecord: Side = Field(
        default=Side.SOURCE,
        description="The source of truth: seeds the first sync and breaks ties.",
    )
    conflictResolution: ConflictResolution = Field(
        default=ConflictResolution.MOST_RECENT,
        description=(
            "TwoWay only. MostRecent: the later change wins, the system of record breaking "
            "ties. SystemOfRecord: the system of record always wins."
        ),
    )
    identity: Identity | None = Field(
        default=None,
        description="Fields that match records; defaults to each connector's email field.",
    )
    inclusionList: InclusionList | None = Field(
        default=None, description="Only this list's members sync."
    )
    filters: list[Filter] = Field(
        default_factory=list,
        max_length=20,
        description="Conditions a record must meet to sync, e.g. exclude opted-out contacts.",
    )
    mappings: Mappings = Field(default_factory=Mappings, description="Field mappings.")
    state: StateStore = Field(default_factory=StateStore, description="The state store.")
    job: JobOptions = Field(default_factory=JobOptions, description="Sync run options.")

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid cron schedule; use five fields "
                "(minute hour day-of-month month day-of-week), e.g. '*/15 * * * *'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataSyncConnectionSpec:
        if self.direction == Direction.ONE_WAY:
            for index, mapping in enumerate(self.mappings.fields):
                if mapping.direction in (FieldDirection.TO_SOURCE, FieldDirection.TWO_WAY):
                    raise _located_error(
                        ("mappings", "fields", index, "direction"),
                        f"{mapping.direction} needs `direction: TwoWay` on the connection; "
                        "use ToDestination in a OneWay connection",
                    )
        if self.state.type == StateStoreType.POSTGRESQL and self.state.secretRef is None:
            raise _located_error(
                ("state", "secretRef"),
                "a PostgreSQL state store needs secretRef naming a Secret with key `dsn`",
            )
        return self

    def effective_direction(self, mapping: FieldMapping) -> FieldDirection:
        if mapping.direction is not None:
            return FieldDirection(mapping.direction)
        if self.direction == Direction.TWO_WAY:
            return FieldDirection.TWO_WAY
        return FieldDirection.TO_DESTINATION

    def endpoint(self, side: Side | str) -> AppEndpoint:
        return self.source if Side(side) == Side.SOURCE else self.destination


class LocatedError(ValueError):
    """A model-level error that knows which field it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _located_error(loc: tuple[str | int, ...], message: str) -> LocatedError:
    return LocatedError(loc, message)


# ---------------------------------------------------------------- status


class Condition(_Model):
    type: str = Field(max_length=316, description="Ready, CredentialsValid or Synced.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768, description="Human-readable detail.")
    lastTransitionTime: datetime = Field(description="When the status last changed.")
    observedGeneration: int | None = Field(default=None, ge=0)


class DirectionCounts(_Model):
    read: int = Field(default=0, ge=0, description="Records read from the writing side.")
    created: int = Field(default=0, ge=0, description="Records created in the target.")
    updated: int = Field(default=0, ge=0, description="Records updated in the target.")
    unchanged: int = Field(default=0, ge=0, description="Records already in step.")
    skipped: int = Field(default=0, ge=0, description="Records skipped (see skipped).")
    failed: int = Field(default=0, ge=0, description="Records that failed (see failures).")


class RecordCounts(_Model):
    toDestination: DirectionCounts = Field(default_factory=DirectionCounts)
    toSource: DirectionCounts = Field(default_factory=DirectionCounts)


class FailureSample(_Model):
    app: Side = Field(description="The side the failing write targeted, or the record's side.")
    recordId: str = Field(max_length=255, description="The record's id in that app.")
    field: str | None = Field(default=None, max_length=255, description="The failing field.")
    reason: str = Field(max_length=64, description="Why, e.g. InvalidEmail.")
    code: str | None = Field(default=None, max_length=128, description="The app's error code.")
    message: str = Field(default="", max_length=512, description="Detail, never a value.")


class Failures(_Model):
    total: int = Field(default=0, ge=0)
    byReason: dict[str, int] = Field(default_factory=dict)
    samples: list[FailureSample] = Field(default_factory=list, max_length=20)


class Health(_Model):
    """The standing state of every record the connection knows."""

    inSync: int = Field(default=0, ge=0, description="Records matched and in step.")
    excluded: dict[str, int] = Field(
        default_factory=dict, description="Records kept out of the sync, by reason."
    )
    failing: dict[str, int] = Field(
        default_factory=dict, description="Records failing to sync (retried every run)."
    )


class SyncSummary(_Model):
    """What one sync run did; `datasync sync --output json` prints exactly this."""

    job: str | None = Field(default=None, max_length=253, description="The Job that ran it.")
    startedAt: datetime
    finishedAt: datetime
    result: SyncResult
    dryRun: bool = False
    records: RecordCounts = Field(default_factory=RecordCounts)
    skipped: dict[str, int] = Field(default_factory=dict, description="Skipped, by reason.")
    failures: Failures = Field(default_factory=Failures)
    health: Health = Field(default_factory=Health)
    apiCalls: dict[str, int] = Field(
        default_factory=dict, description="HTTP or SQL calls made, per side."
    )
    error: str | None = Field(
        default=None, max_length=1024, description="Why the run failed, when it did."
    )


class DataSyncConnectionStatus(_Model):
    observedGeneration: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    cronJob: str | None = Field(default=None, max_length=253)
    lastSync: SyncSummary | None = None
    lastSuccessfulSyncAt: datetime | None = None
    health: Health | None = None
    syncNowHandled: str | None = Field(
        default=None,
        max_length=253,
        description="The last value of the datasync.io/sync-now annotation acted on.",
    )
    credentialsCheckedAt: datetime | None = None


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    namespace: str | None = Field(default=None, pattern=DNS_SUBDOMAIN, max_length=63)


class DataSyncConnection(_Model):
    apiVersion: Literal["datasync.io/v1alpha1"]
    kind: Literal["DataSyncConnection"]
    metadata: ObjectMeta
    spec: DataSyncConnectionSpec
    status: DataSyncConnectionStatus | None = None


_REASON_RE = re.compile(REASON)


def is_reason(value: str) -> bool:
    return bool(_REASON_RE.match(value))
