"""Sentinel secrets and personal data, and a search for them in any text."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field


def sentinel(kind: str = "SECRET") -> str:
    return f"SENTINEL-{kind}-{uuid.uuid4().hex}"


@dataclass
class Sentinels:
    secrets: list[str] = field(default_factory=list)
    personal: list[str] = field(default_factory=list)  # emails and field values

    def secret(self) -> str:
        value = sentinel("SECRET")
        self.secrets.append(value)
        return value

    def email(self) -> str:
        value = f"sentinel.{uuid.uuid4().hex[:16]}@example.com"
        self.personal.append(value)
        return value

    def value(self) -> str:
        value = sentinel("VALUE")
        self.personal.append(value)
        return value


def leaks(texts: Iterable[tuple[str, str]], needles: Iterable[str]) -> list[str]:
    """'where: needle' for every needle found in (where, text); [] when clean. A needle is
    also looked for by its distinctive part, in case something cut or re-encoded it."""
    found = []
    needles = list(needles)
    for where, text in texts:
        for needle in needles:
            probes = {needle, needle.split("@")[0], needle[-32:]}
            if any(probe and probe in text for probe in probes):
                found.append(f"{where}: {needle[:24]}...")
    return found
