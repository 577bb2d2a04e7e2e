"""A per-app CA bundle from a Secret (spec.<side>.tls.caBundle) through the operator on the
real control plane: the credentials check trusts it, the CronJob projects it, and a run in
the pod (the real `datasync sync`, cluster mode) reaches an app served over TLS by a
private CA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from tests.cluster.podrunner import PodRunner
from tests.fixtures.private_ca import PrivateCA, make_private_ca
from tests.operator.conftest import Apps, serving
from tests.operator.support import Cluster, OperatorProcess, connection, wait_for

pytestmark = pytest.mark.integration

CONTACTS = [{"email": f"tls{index}@example.com", "lastname": f"Tls{index}"} for index in range(2)]


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("other-ca"), "Some Other CA")


@pytest.fixture
def tls_apps(private_ca: PrivateCA) -> Iterator[Apps]:
    """HubSpot served over https with a certificate of the private CA; Salesforce over http."""
    hubspot = HubSpotSandbox(ssl_context=private_ca.server_context())
    with serving(hubspot, SalesforceSandbox()) as served:
        yield served


def _source(apps: Apps, key: str = "ca.crt") -> dict[str, object]:
    source = apps.source()
    source["tls"] = {"caBundle": {"secretRef": {"name": "hubspot-ca"}, "key": key}}
    return source


def _projected(cluster: Cluster) -> list[dict[str, object]]:
    pod = cluster.cron_job("crm-sync").spec.job_template.spec.template.spec
    volume = next(v for v in pod.volumes if v.name == "secrets")
    return [
        {"secret": source.secret.name, "items": [(i.key, i.path) for i in source.secret.items]}
        for source in volume.projected.sources
    ]


def test_the_check_trusts_the_ca_secret_and_the_cronjob_projects_it(
    cluster: Cluster, tls_apps: Apps, private_ca: PrivateCA, other_ca: PrivateCA,
    operator: OperatorProcess,
) -> None:  # fmt: skip
    cluster.create_secret("hubspot-auth", tls_apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", tls_apps.salesforce_secret())
    cluster.create(connection("crm", _source(tls_apps, "bundle.pem"), tls_apps.destination()))

    missing = cluster.wait_condition("crm", "Ready", "False", "SecretNotFound")
    assert "hubspot-ca" in missing["message"]
    assert "spec.source.tls.caBundle.secretRef" in missing["message"]

    cluster.create_secret("hubspot-ca", {"ca.crt": private_ca.ca_pem})
    no_key = cluster.wait_condition("crm", "Ready", "False", "SecretKeyMissing")
    assert "hubspot-ca" in no_key["message"] and "bundle.pem" in no_key["message"]

    # The Secret holds more than the bundle: only the named key is projected.
    cluster.replace_secret(
        "hubspot-ca", {"bundle.pem": private_ca.ca_pem, "unrelated": "not mounted"}
    )
    cluster.wait_condition("crm", "Ready", "True")
    valid = cluster.wait_condition("crm", "CredentialsValid", "True")
    assert valid["reason"] == "CredentialsAccepted"
    assert tls_apps.hubspot.requests_served > 0
    projected = _projected(cluster)
    assert {"secret": "hubspot-ca", "items": [("bundle.pem", "source-ca/bundle.pem")]} in projected
    assert not any(path.endswith("unrelated") for p in projected for _, path in p["items"])

    # Rotating the CA Secret re-checks: a bundle of another CA is not trusted.
    cluster.replace_secret("hubspot-ca", {"bundle.pem": other_ca.ca_pem})
    untrusted = cluster.wait_condition("crm", "CredentialsValid", "False", "AppUnreachable")
    assert "TLS verification of 127.0.0.1 failed" in untrusted["message"]
    assert "tls.caBundle" in untrusted["message"]
    assert "BEGIN CERTIFICATE" not in str(cluster.get("crm"))

    cluster.replace_secret("hubspot-ca", {"bundle.pem": private_ca.ca_pem})
    cluster.wait_condition("crm", "CredentialsValid", "True")


def test_without_the_ca_bundle_the_check_names_the_setting(
    cluster: Cluster, tls_apps: Apps, operator: OperatorProcess
) -> None:
    cluster.create_secret("hubspot-auth", tls_apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", tls_apps.salesforce_secret())
    cluster.create(connection("crm", tls_apps.source(), tls_apps.destination()))
    failed = cluster.wait_condition("crm", "CredentialsValid", "False", "AppUnreachable")
    assert failed["message"].startswith("spec.source:")
    assert "tls.caBundle" in failed["message"] and "never turned off" in failed["message"]


@pytest.mark.usefixtures("pod_runner")
def test_a_run_in_the_pod_reaches_the_app_through_the_mounted_ca(
    cluster: Cluster,
    tls_apps: Apps,
    private_ca: PrivateCA,
    operator: OperatorProcess,
    pod_runner: PodRunner,
) -> None:
    tls_apps.hubspot.load(CONTACTS)
    cluster.create_secret("hubspot-auth", tls_apps.hubspot_secret())
    cluster.create_secret("salesforce-auth", tls_apps.salesforce_secret())
    cluster.create_secret("hubspot-ca", {"ca.crt": private_ca.ca_pem})
    cluster.create(
        connection(
            "crm", _source(tls_apps), tls_apps.destination(), direction="OneWay", suspend=True
        )
    )
    cluster.wait_condition("crm", "CredentialsValid", "True")
    assert {"secret": "hubspot-ca", "items": [("ca.crt", "source-ca/ca.crt")]} in _projected(
        cluster
    )

    cluster.patch("crm", {"metadata": {"annotations": {"datasync.io/sync-now": "tls"}}})
    last = wait_for(
        lambda: (cluster.get("crm").get("status") or {}).get("lastSync"),
        120,
        "the sync run to be recorded",
    )
    assert last["result"] == "Succeeded", last
    assert last["records"]["toDestination"]["created"] == len(CONTACTS)
    emails = {str(r.get("Email", "")).lower() for r in tls_apps.salesforce.records()}
    assert {contact["email"] for contact in CONTACTS} <= emails
