"""Offline validation of DataSyncConnection manifests, with messages that name the field.

The same models the operator uses decide what is valid; on top of them this module checks
what depends on the installed connectors (known app, supported auth type, settings) and,
when Secret manifests are given, that each referenced Secret has the keys its connector
needs. YAML is read defensively: aliases, nesting depth and size are bounded, so a hostile
manifest gets an error, not a hang.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from datasync.api.models import (
    API_VERSION,
    KIND,
    DataSyncConnection,
    LocatedError,
)

MAX_DOCUMENT_BYTES = 1_500_000  # the API server's own request size limit
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ManifestError(ValueError):
    """The text is not a readable manifest (bad YAML, too large, alias bomb)."""


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that refuses alias bombs and absurd nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ManifestError(
                    f"more than {MAX_ALIASES} YAML aliases: expand them or simplify the file"
                )
        return super().compose_node(parent, index)


def load_documents(text: str) -> list[Any]:
    """All YAML documents in `text` (empty ones dropped)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_DOCUMENT_BYTES * 10:
        raise ManifestError("file is larger than 15 MB; split it into smaller manifests")
    try:
        documents = list(yaml.load_all(text, Loader=_BoundedLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ManifestError(f"not valid YAML: {where}{_without_quotes(error.problem)}") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"not valid YAML ({type(error).__name__})") from None
    except RecursionError:
        raise ManifestError(f"YAML nested deeper than {MAX_DEPTH} levels") from None
    for document in documents:
        if _depth(document, {}) > MAX_DEPTH:
            raise ManifestError(f"YAML nested deeper than {MAX_DEPTH} levels")
        if _expanded_size(document, {}) > MAX_EXPANDED_NODES:
            raise ManifestError(
                f"YAML aliases expand to more than {MAX_EXPANDED_NODES} values "
                "(an alias bomb?): write the values out or simplify the file"
            )
    return [document for document in documents if document is not None]


def _without_quotes(problem: str | None) -> str:
    """PyYAML's problem text quotes the offending token, which may be a Secret's value
    (`password: *secret` is an undefined alias): keep the kind of problem, drop the text."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", problem or "syntax error")


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Size of the document with every alias written out, in linear time (aliases are
    shared objects after loading, so each is counted once and multiplied)."""
    key = id(node)
    if key in memo:
        return memo[key]
    size = 1
    if isinstance(node, dict):
        size += sum(_expanded_size(v, memo) for v in node.values())
    elif isinstance(node, list):
        size += sum(_expanded_size(v, memo) for v in node)
    memo[key] = size
    return size


def _depth(node: Any, memo: dict[int, int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    depth = 0
    if isinstance(node, dict):
        depth = 1 + max((_depth(v, memo) for v in node.values()), default=0)
    elif isinstance(node, list):
        depth = 1 + max((_depth(v, memo) for v in node), default=0)
    memo[key] = depth
    return depth


def format_location(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_PATTERN_HINTS = {
    "name": "must be a lowercase name of letters, digits, '-' and '.', as Kubernetes names are",
    "app": "must be a connector name such as hubspot, salesforce or postgres",
    "schedule": "must be a cron schedule with five fields, e.g. '*/15 * * * *'",
    "reason": "must be a PascalCase word such as OptedOut",
    "size": "must be a quantity such as 1Gi or 500Mi",
}

_TYPE_WORDS = {
    "string_type": "must be a string (quote it in YAML)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "list_type": "must be a list",
}


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    last = next((part for part in reversed(loc) if isinstance(part, str)), "")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"is required: add `{last}`"
    if kind == "extra_forbidden":
        return f"unknown field `{last}`: remove it or check its spelling"
    if kind in ("enum", "literal_error"):
        expected = ctx.get("expected", "")
        return f"must be one of {expected} (got {_shorten(error.get('input'))})"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(last, "has an invalid format")
        return f"{hint} (got {_shorten(error.get('input'))})"
    if kind == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must not be empty (at least {ctx.get('min_length')} characters)"
    if kind == "too_long":
        return f"has too many entries: at most {ctx.get('max_length')}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        word = "at least" if kind == "greater_than_equal" else "at most"
        return f"must be {word} {bound}"
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])


def problems_from_validation_error(
    error: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[Problem]:
    found: list[Problem] = []
    for item in error.errors(include_url=False):
        loc: tuple[str | int, ...] = prefix + tuple(item["loc"])
        ctx = item.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, LocatedError):
            loc = loc + cause.loc
        found.append(Problem(format_location(loc), _message(item)))
    return found


def validate_model(
    model: type[BaseModel], data: Any, prefix: tuple[str | int, ...] = ()
) -> list[Problem]:
    try:
        model.model_validate(data)
    except ValidationError as error:
        return problems_from_validation_error(error, prefix)
    return []


def collect_secrets(documents: Iterable[Any]) -> dict[str, dict[str, str]]:
    """The data of every Secret among `documents` (and inside `kind: List`), decoded the
    same way `datasync sync --secrets` reads them."""
    from datasync import secrets as manifests

    found: dict[str, dict[str, str]] = {}
    for index, document in enumerate(manifests.flatten_lists(list(documents))):
        if isinstance(document, dict) and document.get("kind") == "Secret":
            try:
                secret = manifests.parse_secret(document, f"document {index + 1}")
            except manifests.SecretError as error:
                raise ManifestError(str(error)) from None
            found[secret.name] = dict(secret.data)
    return found


def is_connection(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == KIND


def validate_connection(
    document: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]] | None = None
) -> list[Problem]:
    """Every problem with one DataSyncConnection manifest; empty when it is valid."""
    if document.get("apiVersion") != API_VERSION:
        return [
            Problem(
                "apiVersion",
                f"must be {API_VERSION} (got {_shorten(document.get('apiVersion'))})",
            )
        ]
    found = validate_model(DataSyncConnection, document)
    if found:
        return found
    connection = DataSyncConnection.model_validate(document)
    return _connector_problems(connection, secrets)


def _connector_problems(
    connection: DataSyncConnection, secrets: Mapping[str, Mapping[str, str]] | None
) -> list[Problem]:
    from datasync import registry

    found: list[Problem] = []
    for side in ("source", "destination"):
        endpoint = connection.spec.endpoint(side)
        where = f"spec.{side}"
        try:
            connector = registry.get(endpoint.app)
        except registry.UnknownConnectorError as error:
            found.append(Problem(f"{where}.app", str(error)))
            continue
        auth = connector.auth_spec(endpoint.auth.type)
        if auth is None:
            accepted = ", ".join(str(spec.type) for spec in connector.auth)
            found.append(
                Problem(
                    f"{where}.auth.type",
                    f"{endpoint.app} does not accept {endpoint.auth.type}; use one of {accepted}",
                )
            )
            continue
        found.extend(
            validate_model(
                connector.settings_model, endpoint.settings, (*where.split("."), "settings")
            )
        )
        if secrets is None:
            continue
        secret_name = endpoint.auth.secretRef.name
        if secret_name not in secrets:
            found.append(
                Problem(
                    f"{where}.auth.secretRef.name",
                    f"Secret {secret_name!r} is not in the given manifests; add it",
                )
            )
            continue
        missing = [key for key in auth.required_keys if not secrets[secret_name].get(key)]
        for key in missing:
            found.append(
                Problem(
                    f"{where}.auth.secretRef",
                    f"Secret {secret_name!r} has no key {key!r}, which {endpoint.app} "
                    f"{endpoint.auth.type} needs; add it to the Secret",
                )
            )
    return found
