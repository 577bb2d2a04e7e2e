"""The Argo CD Lua health check, run with lupa against DataSyncConnections shaped by the API
models, and the argocd-cm snippet carrying the same script."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from datasync.api.models import DataSyncConnection
from tests.ship.tools import REPO
from tests.ship.tools import argocd_health as health

HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"  # also in tools.argocd_health
ARGOCD_CM = REPO / "deploy" / "argocd" / "argocd-cm.yaml"
CM_KEY = "resource.customizations.health.datasync.io_DataSyncConnection"
NOW = "2026-11-28T12:00:00Z"
SPEC = yaml.safe_load((REPO / "examples/hubspot-salesforce/connection.yaml").read_text())["spec"]


def resource(
    *,
    generation: int = 1,
    observed: int | None = 1,
    ready: str | None = None,
    credentials: str | None = None,
    result: str | None = None,
    failed: int = 0,
    error: str | None = None,
    suspend: bool = False,
    status: bool = True,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "datasync.io/v1alpha1",
        "kind": "DataSyncConnection",
        "metadata": {"name": "contacts", "namespace": "crm", "generation": generation},
        "spec": {**SPEC, "suspend": suspend},
    }
    if status:
        conditions = []
        for kind, value in (("Ready", ready), ("CredentialsValid", credentials)):
            if value is not None:
                conditions.append(
                    {
                        "type": kind,
                        "status": value,
                        "lastTransitionTime": NOW,
                        "reason": "Checked" if value == "True" else "Rejected",
                        "message": "" if value == "True" else f"{kind} is {value}",
                    }
                )
        body: dict[str, Any] = {"observedGeneration": observed, "conditions": conditions}
        if result is not None:
            body["lastSync"] = {
                "startedAt": NOW,
                "finishedAt": NOW,
                "result": result,
                "failures": {"total": failed},
                "error": error,
            }
        document["status"] = body
    # Only realistic samples: the API models must accept them.
    return DataSyncConnection.model_validate(document).model_dump(mode="json", exclude_none=True)


SAMPLES = [
    ("no status yet", resource(status=False), "Progressing", "Waiting for the Datasync"),
    (
        "spec not yet observed",
        resource(generation=2, observed=1, ready="True", credentials="True", result="Succeeded"),
        "Progressing",
        "latest spec",
    ),
    (
        "before the first sync",
        resource(ready="True", credentials="True"),
        "Progressing",
        "first sync",
    ),
    ("invalid before the first sync", resource(ready="False"), "Degraded", "Not ready: Ready is"),
    (
        "ready unknown",
        resource(ready="Unknown", credentials="True", result="Succeeded"),
        "Progressing",
        "become Ready",
    ),
    (
        "ready and synced",
        resource(ready="True", credentials="True", result="Succeeded"),
        "Healthy",
        "Last sync succeeded",
    ),
    (
        "partially succeeded",
        resource(ready="True", credentials="True", result="PartiallySucceeded", failed=3),
        "Healthy",
        "3 record(s) failing",
    ),
    (
        "credentials rejected",
        resource(ready="False", credentials="False", result="Succeeded"),
        "Degraded",
        "Credentials rejected: CredentialsValid is False",
    ),
    (
        "credentials rejected before any sync",
        resource(credentials="False"),
        "Degraded",
        "Credentials rejected",
    ),
    (
        "last sync failed",
        resource(
            ready="True",
            credentials="True",
            result="Failed",
            error="AppUnreachable: salesforce answered 503",
        ),
        "Degraded",
        "Last sync failed: AppUnreachable: salesforce answered 503",
    ),
    (
        "not ready after a sync",
        resource(ready="False", credentials="True", result="Succeeded"),
        "Degraded",
        "Not ready",
    ),
    (
        "suspended",
        resource(ready="True", credentials="True", result="Succeeded", suspend=True),
        "Suspended",
        "suspended",
    ),
    (
        "suspended but failing",
        resource(ready="True", credentials="True", result="Failed", suspend=True),
        "Degraded",
        "Last sync failed",
    ),
]


@pytest.mark.parametrize(
    ("obj", "status", "message"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES]
)
def test_health_for_each_sample(obj: dict[str, Any], status: str, message: str) -> None:
    result = health(obj)
    assert result["status"] == status, result
    assert message in result["message"], result


def test_argocd_cm_snippet_carries_the_same_script() -> None:
    config_map = yaml.safe_load(ARGOCD_CM.read_text())
    assert config_map["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert config_map["data"][CM_KEY] == HEALTH_LUA.read_text(), (
        "deploy/argocd/argocd-cm.yaml is out of date: paste health.lua into it"
    )


tristate = st.sampled_from([None, "True", "False", "Unknown"])
results = st.sampled_from([None, "Succeeded", "PartiallySucceeded", "Failed"])


@given(
    ready=tristate,
    credentials=tristate,
    result=results,
    suspend=st.booleans(),
    lag=st.integers(min_value=0, max_value=2),
    failed=st.integers(0, 10_000),
)
def test_health_invariants(
    ready: str | None,
    credentials: str | None,
    result: str | None,
    suspend: bool,
    lag: int,
    failed: int,
) -> None:
    obj = resource(
        generation=1 + lag,
        observed=1,
        ready=ready,
        credentials=credentials,
        result=result,
        suspend=suspend,
        failed=failed,
    )
    status = health(obj)["status"]
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended"}
    if lag:
        assert status == "Progressing"
    elif credentials == "False" or result == "Failed" or ready == "False":
        assert status == "Degraded"
    elif result is None and not suspend:
        assert status == "Progressing"
    if status == "Healthy":
        assert ready == "True" and result in {"Succeeded", "PartiallySucceeded"}
        assert not suspend and credentials != "False" and lag == 0


def test_chart_readme_ships_the_same_script() -> None:
    readme = (REPO / "charts" / "datasync" / "README.md").read_text()
    block = readme.split("```lua\n", 1)[1].split("```", 1)[0]
    assert block == HEALTH_LUA.read_text(), "paste deploy/argocd/health.lua into the README"
