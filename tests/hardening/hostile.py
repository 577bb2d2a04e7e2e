"""Hostile values and manifests for the bad-input tests (hypothesis strategies)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.api.test_manifests import VALID

ODD_TEXT = st.sampled_from(
    [
        "\u202eevil\u202c",  # right-to-left override
        "a\u0000b",  # NUL
        "\ufeffTwoWay",  # byte-order mark before a valid value
        "\uff34\uff57\uff4f\uff37\uff41\uff59",  # fullwidth look-alike of TwoWay
        "T\u0301woWay",  # combining accent
        "🦄" * 50,
        "\U0010fffd",
        "'; DROP TABLE contacts; --",
        "{{ .Values.secret }}",
        "${jndi:ldap://169.254.169.254/a}",
        "../../etc/passwd",
        "\n\r\t",
    ]
) | st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=80)


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"x": [value]}
    return value


HOSTILE = st.one_of(
    ODD_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(ODD_TEXT, max_size=5),
    st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=4),
    st.integers(min_value=20, max_value=120).map(deep),
    st.integers(min_value=300, max_value=200_000).map(lambda n: "A" * n),
)

# Where the hostile value goes; every one of these holds a constrained value.
PATHS: list[tuple[str | int, ...]] = [
    ("spec", "direction"),
    ("spec", "schedule"),
    ("spec", "goal"),
    ("spec", "source", "app"),
    ("spec", "source", "auth", "type"),
    ("spec", "source", "auth", "secretRef", "name"),
    ("spec", "destination", "settings"),
    ("spec", "destination", "settings", "organizationUrl"),
    ("spec", "identity", "source"),
    ("spec", "inclusionList", "app"),
    ("spec", "inclusionList"),
    ("spec", "mappings", "fields"),
    ("spec", "mappings", "fields", 0, "direction"),
    ("spec", "mappings", "fields", 1, "values"),
    ("spec", "mappings", "fields", 1, "required"),
    ("spec", "source"),
    ("spec",),
]


@st.composite
def hostile_manifests(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """VALID with one to three places replaced by hostile values; returns (manifest, the
    first replaced path as the API would name it)."""
    document = copy.deepcopy(VALID)
    chosen = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True))
    for path in sorted(chosen, key=len, reverse=True):  # deepest first: parents stay dicts
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = draw(HOSTILE)
    dotted = ".".join(str(key) for key in chosen[0])
    return document, dotted
