"""Hardening tests: every test adds what it did to one tally, written as JSON at the end.

The tally (faults injected, runs killed, inputs tried, records lost, ...) lands in
`<pytest basetemp>/reliability.json`; docs/reliability.md quotes a real run's figures.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

# The operator tests' fixtures (real control plane, sandboxes in a loop thread, operator
# subprocesses), reused by test_operator_chaos.
from tests.operator.conftest import (  # noqa: F401
    apps,
    cluster,
    dsc_crd,
    operator_factory,
)

REPORT_NAME = "reliability.json"


@pytest.fixture(scope="session")
def tally(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    yield counts
    path = Path(tmp_path_factory.getbasetemp()) / REPORT_NAME
    path.write_text(json.dumps(dict(sorted(counts.items())), indent=2) + "\n", encoding="utf-8")
    print(f"\nhardening figures: {path}")
