"""Credentials from Kubernetes Secrets: manifest files (local runs) or mounted volumes.

Errors name the Secret and the key to fix, never a value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasync.api.models import AuthType
from datasync.connector import Connector


class SecretError(ValueError):
    """A Secret is missing, malformed or lacks a key; the message says what to fix."""


@dataclass(frozen=True)
class Secret:
    name: str
    data: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None

    def __repr__(self) -> str:  # never show values
        return f"Secret(name={self.name!r}, keys={sorted(self.data)!r})"


def parse_secret_manifests(text: str, origin: str = "the secrets file") -> dict[str, Secret]:
    """Secrets by name from multi-document YAML (`data` base64 and/or `stringData`)."""
    from datasync.api.validate import ManifestError, load_documents

    try:
        documents = load_documents(text)
    except ManifestError as exc:
        raise SecretError(f"{origin}: {exc}") from None
    secrets: dict[str, Secret] = {}
    for index, document in enumerate(flatten_lists(documents)):
        if document is None:
            continue
        where = f"document {index + 1} of {origin}"
        if not isinstance(document, dict):
            raise SecretError(f"{where} is not a mapping; expected a `kind: Secret` manifest")
        kind = document.get("kind")
        if kind != "Secret":
            raise SecretError(
                f"{where} has kind {kind!r}; only `kind: Secret` manifests belong here"
            )
        secret = parse_secret(document, where)
        if secret.name in secrets:
            raise SecretError(f"{origin} defines Secret {secret.name!r} twice; keep one")
        secrets[secret.name] = secret
    return secrets


def flatten_lists(documents: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List":
            flat.extend(document.get("items") or [])
        else:
            flat.append(document)
    return flat


def parse_secret(document: dict[str, Any], where: str) -> Secret:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise SecretError(f"{where}: a Secret needs metadata.name")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    values: dict[str, str] = {}
    data = document.get("data") or {}
    string_data = document.get("stringData") or {}
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise SecretError(f"Secret {name!r}: `data` and `stringData` must be mappings of keys")
    for key, encoded in data.items():
        try:
            values[str(key)] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SecretError(
                f"Secret {name!r}: data.{key} is not valid base64 text; encode it with "
                f"`base64 -w0` or put it under stringData"
            ) from None
    for key, value in string_data.items():
        values[str(key)] = "" if value is None else str(value)  # stringData wins, as in K8s
    return Secret(
        name=name, data=values, namespace=namespace if isinstance(namespace, str) else None
    )


def load_secrets_file(path: Path) -> dict[str, Secret]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"cannot read secrets file {str(path)!r}: {exc.strerror}") from None
    return parse_secret_manifests(text, f"secrets file {str(path)!r}")


def read_secret_dir(path: Path, name: str) -> Secret:
    """A Secret mounted as a volume: one file per key (hidden `..data` entries skipped)."""
    if not path.is_dir():
        raise SecretError(
            f"Secret directory {str(path)!r} does not exist; mount Secret {name!r} there"
        )
    values: dict[str, str] = {}
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            values[entry.name] = entry.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise SecretError(
                f"key {entry.name!r} of Secret {name!r} cannot be read as UTF-8 text"
            ) from None
    return Secret(name=name, data=values)


def credentials_for(
    connector: type[Connector], auth_type: AuthType | str, secret: Secret, where: str
) -> dict[str, str]:
    """The keys `connector` needs for `auth_type`, from `secret`; `where` names the spec
    field that refers to the Secret (e.g. spec.source.auth.secretRef)."""
    spec = connector.auth_spec(auth_type)
    if spec is None:
        supported = ", ".join(str(s.type) for s in connector.auth) or "none"
        raise SecretError(
            f"the {connector.name} connector does not support auth type {auth_type}; "
            f"use one of: {supported}"
        )
    missing = [key for key in spec.keys if not key.optional and not secret.data.get(key.name)]
    if missing:
        key = missing[0]
        others = f" (also missing: {', '.join(k.name for k in missing[1:])})" if missing[1:] else ""
        raise SecretError(
            f"Secret {secret.name!r} ({where}) has no key {key.name!r}{others}: the "
            f"{connector.name} connector needs it for {auth_type} auth ({key.description}); "
            f"add it to the Secret's data or stringData"
        )
    wanted = {key.name for key in spec.keys}
    return {key: value for key, value in secret.data.items() if key in wanted}
