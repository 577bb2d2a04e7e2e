"""Fast tests of the operator's pure parts: names, desired manifests, conditions, runs,
and the credentials check against real sandbox apps."""

from __future__ import annotations

import base64
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import certifi
import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox
from datasync_operator import conditions, credentials, naming, resources, runs
from datasync_operator.config import OperatorConfig
from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.api import summary_codec
from datasync.api.models import AuthType, DataSyncConnectionSpec, SyncResult, SyncSummary

DNS_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,250}[a-z0-9])?", fullmatch=True)


@given(DNS_LABEL)
def test_child_names_fit_their_limits_and_stay_distinct(name: str) -> None:
    cron = naming.cronjob_name(name)
    assert len(cron) <= naming.CRONJOB_NAME_LIMIT
    assert len(naming.sync_now_job_name(name, "x")) <= 63
    assert len(naming.label_value(name)) <= 63
    assert naming.cronjob_name(name) == cron  # deterministic
    if len(name) + 5 <= naming.CRONJOB_NAME_LIMIT:
        assert cron == f"{name}-sync"


@given(DNS_LABEL, DNS_LABEL)
def test_long_names_do_not_collide(first: str, second: str) -> None:
    if first != second:
        assert naming.cronjob_name(first) != naming.cronjob_name(second)


def _body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "datasync.io/v1alpha1",
        "kind": "DataSyncConnection",
        "metadata": {"name": "crm", "namespace": "sales", "uid": "u-1", "generation": 1},
        "spec": {
            "direction": "TwoWay",
            "schedule": "*/15 * * * *",
            "source": {
                "app": "hubspot",
                "auth": {"type": "AppParameters", "secretRef": {"name": "hs"}},
            },
            "destination": {
                "app": "salesforce",
                "auth": {"type": "OAuth", "secretRef": {"name": "sf"}},
            },
            **spec,
        },
    }


def _cron(body: dict[str, Any], config: OperatorConfig | None = None) -> dict[str, Any]:
    spec = DataSyncConnectionSpec.model_validate(body["spec"])
    mounts = resources.secret_mounts(
        {"source": ("hs", ["accessToken"]), "destination": ("sf", ["clientId", "refreshToken"])}
    )
    return resources.cron_job(body, spec, mounts, config or OperatorConfig())


def test_desired_cronjob_hash_is_stable_and_tracks_every_input() -> None:
    base = _cron(_body())
    assert _cron(_body()) == base
    stamp = base["metadata"]["annotations"][naming.SPEC_HASH]
    for changed in (
        _cron(_body(schedule="0 * * * *")),
        _cron(_body(suspend=True)),
        _cron(_body(), OperatorConfig(sync_image="other:1")),
        _cron(_body(job={"backoffLimit": 3})),
    ):
        assert changed["metadata"]["annotations"][naming.SPEC_HASH] != stamp


def test_postgres_state_mounts_the_dsn_and_has_no_claim() -> None:
    body = _body(state={"type": "PostgreSQL", "secretRef": {"name": "state-db"}})
    spec = DataSyncConnectionSpec.model_validate(body["spec"])
    assert resources.state_claim(body, spec) is None
    mounts = resources.secret_mounts(
        {"source": ("hs", ["accessToken"]), "state": ("state-db", ["dsn"])}
    )
    cron = resources.cron_job(body, spec, mounts, OperatorConfig())
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--state-dsn-file") + 1] == "/etc/datasync/secrets/state/dsn"
    assert "state" not in {v["name"] for v in pod["volumes"]}
    items = [i for s in pod["volumes"][1]["projected"]["sources"] for i in s["secret"]["items"]]
    assert {"key": "dsn", "path": "state/dsn"} in items


def test_job_from_cron_job_is_what_kubectl_create_job_from_makes() -> None:
    cron = _cron(_body())
    cron["metadata"]["uid"] = "cron-uid"
    job = resources.job_from_cron_job(cron, "crm-sync-now-abcde", "2024-01-01")
    assert job["spec"] == cron["spec"]["jobTemplate"]["spec"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "cron-uid"
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"


STATUSES = st.sampled_from(["True", "False", "Unknown"])


@given(
    st.lists(
        st.tuples(st.sampled_from(conditions.ORDER), STATUSES, st.sampled_from(["A", "B"])),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=200)
def test_last_transition_time_moves_only_when_status_changes(
    steps: list[tuple[str, str, str]],
) -> None:
    current: list[dict[str, Any]] = []
    for index, (kind, status, reason) in enumerate(steps):
        at = f"2024-01-01T00:00:{index:02d}Z"
        before = conditions.find(current, kind)
        value = None if status == "Unknown" else status == "True"
        current = conditions.merge(
            current, [conditions.condition(kind, value, reason, "", 1)], at=at
        )
        after = conditions.find(current, kind)
        assert after is not None and after["status"] == status and after["reason"] == reason
        if before is not None and before["status"] == status:
            assert after["lastTransitionTime"] == before["lastTransitionTime"]
        else:
            assert after["lastTransitionTime"] == at
        assert len({c["type"] for c in current}) == len(current)


def _job(condition: str, reason: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "crm-sync-1", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "status": {
            "startTime": "2024-01-01T00:00:01Z",
            "conditions": [
                {
                    "type": condition,
                    "status": "True",
                    "reason": reason,
                    "lastTransitionTime": "2024-01-01T00:01:00Z",
                }
            ],
        },
    }


def _pod(terminated: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"containerStatuses": [{"state": {"terminated": terminated}}]}
    if reason:
        status["reason"] = reason
    return {"status": status}


@pytest.mark.parametrize(
    ("pod", "job", "expected"),
    [
        (
            _pod({"exitCode": 137, "reason": "OOMKilled", "finishedAt": "t"}),
            _job("Failed", "BackoffLimitExceeded"),
            "OOMKilled",
        ),
        (
            _pod({"exitCode": 3, "reason": "Error", "finishedAt": "t"}),
            _job("Failed", "BackoffLimitExceeded"),
            "Crashed",
        ),
        (
            _pod({"exitCode": 137, "reason": "Error", "finishedAt": "t"}, "DeadlineExceeded"),
            _job("Failed", "DeadlineExceeded"),
            "DeadlineExceeded",
        ),
        (None, _job("Failed", "DeadlineExceeded"), "DeadlineExceeded"),
        (None, _job("Complete", "Completed"), "NoSummary"),
    ],
)
def test_runs_without_a_summary_are_failed_with_a_reason(
    pod: dict[str, Any] | None, job: dict[str, Any], expected: str
) -> None:
    outcome = runs.finished(job)
    assert outcome is not None
    summary, reported = runs.summary_of(job, [pod] if pod else [], outcome)
    assert not reported
    assert summary.result == SyncResult.FAILED
    assert runs.failure_reason(summary) == expected
    assert summary.job == "crm-sync-1"


def test_a_reported_summary_wins_and_the_latest_pod_counts() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    good = SyncSummary(
        startedAt=now, finishedAt=now + timedelta(seconds=5), result=SyncResult.SUCCEEDED
    )
    pods = [
        _pod({"exitCode": 1, "finishedAt": "2024-01-01T00:00:10Z", "message": "garbage"}),
        _pod(
            {
                "exitCode": 0,
                "finishedAt": "2024-01-01T00:00:20Z",
                "message": summary_codec.encode(good),
            }
        ),
    ]
    job = _job("Complete", "Completed")
    outcome = runs.finished(job)
    assert outcome is not None
    summary, reported = runs.summary_of(job, pods, outcome)
    assert reported and summary.result == SyncResult.SUCCEEDED
    assert summary.job == "crm-sync-1"
    assert runs.finished({"metadata": {}, "status": {}}) is None


def _spec(hubspot: HubSpotSandbox, salesforce: SalesforceSandbox) -> DataSyncConnectionSpec:
    body = _body()["spec"]
    body["source"]["settings"] = hubspot.connector_settings()
    body["destination"]["settings"] = salesforce.connector_settings()
    return DataSyncConnectionSpec.model_validate(body)


async def test_credentials_check_maps_each_failure_to_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATASYNC_ALLOW_SANDBOX_URLS", "true")
    hubspot, salesforce = HubSpotSandbox(), SalesforceSandbox()
    await hubspot.start()
    await salesforce.start()
    try:
        spec = _spec(hubspot, salesforce)
        good = {
            "hs": hubspot.credentials(AuthType.APP_PARAMETERS),
            "sf": salesforce.credentials(AuthType.OAUTH),
        }

        async def outcome(
            secrets: dict[str, dict[str, str]], limit: float = 10
        ) -> credentials.Problem | None:
            resolution = credentials.Resolution(
                credentials={"source": secrets["hs"], "destination": secrets["sf"]}
            )
            return await credentials.check(spec, resolution, limit)

        # (SecretNotFound and SecretKeyMissing are resolved against the real API in
        # test_lifecycle.py.)
        assert await outcome(good) is None
        wrong = await outcome({"hs": {"accessToken": "pat-na1-wrong-value"}, "sf": good["sf"]})
        assert wrong is not None and wrong.reason == "AuthenticationFailed"
        assert "pat-na1-wrong-value" not in wrong.message and "'hs'" in wrong.message
        sf_wrong = dict(good["sf"], refreshToken="not-the-token")
        refused = await outcome({"hs": good["hs"], "sf": sf_wrong})
        assert refused is not None and refused.reason == "AuthenticationFailed"
        assert "not-the-token" not in refused.message
        await salesforce.stop()
        unreachable = await outcome(good, limit=1)  # refused, retried, bounded
        assert unreachable is not None and unreachable.reason == "AppUnreachable"
    finally:
        await hubspot.stop()
        await salesforce.stop()


async def test_hosts_outside_the_allow_list_are_invalid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATASYNC_ALLOW_SANDBOX_URLS", "false")
    problem, _served = await _check_against_sandboxes()
    assert problem is not None and problem.reason == "InvalidSettings"
    assert "spec.source" in problem.message


async def _check_against_sandboxes() -> tuple[credentials.Problem | None, int]:
    """The credentials check of a HubSpot -> Salesforce spec, and the requests HubSpot
    served meanwhile (Salesforce is never started: the check must stop before it)."""
    hubspot, salesforce = HubSpotSandbox(), SalesforceSandbox()
    await hubspot.start()
    try:
        resolution = credentials.Resolution(
            credentials={
                "source": hubspot.credentials(AuthType.APP_PARAMETERS),
                "destination": salesforce.credentials(AuthType.OAUTH),
            }
        )
        problem = await credentials.check(_spec(hubspot, salesforce), resolution, limit=10)
        return problem, hubspot.requests_served
    finally:
        await hubspot.stop()


def test_unknown_connector_is_a_spec_problem() -> None:
    body = _body()["spec"]
    body["source"]["app"] = "zendesk"
    problems = credentials.spec_problems(DataSyncConnectionSpec.model_validate(body))
    assert [p.reason for p in problems] == ["UnknownConnector"]
    assert "spec.source.app" in problems[0].message


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40))
def test_secret_values_are_parsed_strictly_and_never_echoed(raw: bytes) -> None:
    spec = DataSyncConnectionSpec.model_validate(_body()["spec"])
    data = {"accessToken": base64.b64encode(raw).decode()}
    resolution = credentials.Resolution()
    (source, *_) = credentials._references(spec)
    credentials._resolve_one(resolution, "sales", source, {"data": data})
    assert resolution.mounts["source"] == ("hs", ["accessToken"])
    assert resolution.seen["hs"] == credentials.secret_data_hash(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        (problem,) = resolution.problems
        assert problem.reason == "SecretKeyInvalid"
        assert "'hs'" in problem.message and "accessToken" in problem.message
        assert "spec.source.auth.secretRef" in problem.message
        assert data["accessToken"] not in problem.message
        return
    if text:
        assert not resolution.problems
        assert resolution.credentials["source"] == {"accessToken": text}
    else:  # an empty value is as missing as for `datasync sync`
        assert [p.reason for p in resolution.problems] == ["SecretKeyMissing"]


async def test_checks_share_one_tls_context_and_a_bad_ca_bundle_is_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("DATASYNC_CA_BUNDLE", raising=False)
    first = credentials.shared_tls_context()
    assert credentials.shared_tls_context() is first  # built once, not per HTTP client
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    missing = tmp_path / "no-such-bundle.pem"
    monkeypatch.setenv("DATASYNC_CA_BUNDLE", str(missing))
    monkeypatch.setenv("DATASYNC_ALLOW_SANDBOX_URLS", "true")
    problem, served = await _check_against_sandboxes()
    assert problem is not None and problem.reason == "InvalidSettings"
    assert "DATASYNC_CA_BUNDLE" in problem.message and "spec.source" in problem.message
    assert served == 0
    monkeypatch.setenv("DATASYNC_CA_BUNDLE", certifi.where())
    assert credentials.shared_tls_context() is not first  # the bundle setting changed
