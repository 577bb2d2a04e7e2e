"""TLS to API apps: verification is always on; a per-app CA bundle (spec.<side>.tls.caBundle)
is what a server signed by a private CA is trusted with, for that app only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasync_connectors.hubspot import HubSpotConnector
from datasync_connectors.hubspot.sandbox import HubSpotSandbox
from datasync_connectors.postgres import PostgresConnector
from datasync_connectors.salesforce import SalesforceConnector
from datasync_connectors.salesforce.sandbox import SalesforceSandbox

from datasync.api.models import AppEndpoint, AuthType
from datasync.connector import AppUnreachableError, ConfigurationError
from datasync.http import ALLOW_LOCAL_ENV, CA_BUNDLE_ENV
from datasync.tls import ca_context, connector_options
from tests.connectors.conftest import FAST_RETRY
from tests.fixtures.private_ca import PrivateCA, make_private_ca
from tests.operator.support import BackgroundLoop

pytestmark = pytest.mark.usefixtures("allow_sandbox_urls")


@pytest.fixture(scope="module")
def ca_one(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("ca-one"), "Datasync Test CA One")


@pytest.fixture(scope="module")
def ca_two(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("ca-two"), "Datasync Test CA Two")


@pytest.fixture
async def hubspot_tls(ca_one: PrivateCA) -> AsyncIterator[HubSpotSandbox]:
    sandbox = HubSpotSandbox(ssl_context=ca_one.server_context())
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest.fixture
async def salesforce_tls(ca_two: PrivateCA) -> AsyncIterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(ssl_context=ca_two.server_context())
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def _hubspot(sandbox: HubSpotSandbox, ca: PrivateCA | None) -> HubSpotConnector:
    options = {"tls_context": ca_context(ca.ca_pem, "the test CA")} if ca else {}
    return HubSpotConnector(
        sandbox.connector_settings(),
        sandbox.credentials(AuthType.APP_PARAMETERS),
        AuthType.APP_PARAMETERS,
        retry=FAST_RETRY,
        **options,
    )


def _salesforce(sandbox: SalesforceSandbox, ca: PrivateCA | None) -> SalesforceConnector:
    options = {"tls_context": ca_context(ca.ca_pem, "the test CA")} if ca else {}
    return SalesforceConnector(
        sandbox.connector_settings(), sandbox.credentials(AuthType.OAUTH), AuthType.OAUTH, **options
    )


async def test_the_sandbox_serves_https(hubspot_tls: HubSpotSandbox) -> None:
    assert hubspot_tls.base_url.startswith("https://127.0.0.1:")


async def test_without_the_ca_bundle_the_check_fails_at_once_naming_the_setting(
    hubspot_tls: HubSpotSandbox,
) -> None:
    connector = _hubspot(hubspot_tls, None)
    async with connector:
        with pytest.raises(AppUnreachableError) as raised:
            await connector.check()
    message = str(raised.value)
    assert "TLS verification of 127.0.0.1 failed" in message
    assert "certificate verify failed" in message or "local issuer" in message
    assert "tls.caBundle" in message and "never turned off" in message
    assert connector.api_calls == 1  # a certificate problem is not retried
    assert hubspot_tls.requests_served == 0  # nothing went over the untrusted connection


async def test_with_the_ca_bundle_each_app_trusts_its_own_ca_only(
    hubspot_tls: HubSpotSandbox,
    salesforce_tls: SalesforceSandbox,
    ca_one: PrivateCA,
    ca_two: PrivateCA,
) -> None:
    async with _hubspot(hubspot_tls, ca_one) as hubspot:
        await hubspot.check()
    async with _salesforce(salesforce_tls, ca_two) as salesforce:
        await salesforce.check()
    assert hubspot_tls.requests_served > 0 and salesforce_tls.requests_served > 0

    # The other app's CA is no substitute: the bundle replaces trust, it does not widen it.
    async with _hubspot(hubspot_tls, ca_two) as hubspot:
        with pytest.raises(AppUnreachableError, match=r"tls\.caBundle"):
            await hubspot.check()
    async with _salesforce(salesforce_tls, ca_one) as salesforce:
        with pytest.raises(AppUnreachableError, match=r"tls\.caBundle"):
            await salesforce.check()


def _endpoint(app: str, key: str = "ca.crt") -> AppEndpoint:
    return AppEndpoint.model_validate(
        {
            "app": app,
            "auth": {"type": "AppParameters", "secretRef": {"name": "auth"}},
            "tls": {"caBundle": {"secretRef": {"name": "private-ca"}, "key": key}},
        }
    )


@pytest.mark.parametrize(
    "pem", ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
def test_an_unusable_bundle_names_the_secret_key_and_the_field(pem: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        connector_options(HubSpotConnector, _endpoint("hubspot", "bundle.pem"), "source", pem)
    message = str(raised.value)
    assert "Secret 'private-ca' key 'bundle.pem' (spec.source.tls.caBundle)" in message
    assert raised.value.field == "tls.caBundle"


def test_a_connector_without_an_http_client_refuses_the_bundle(ca_one: PrivateCA) -> None:
    with pytest.raises(ConfigurationError, match="sslrootcert"):
        connector_options(PostgresConnector, _endpoint("postgres"), "destination", ca_one.ca_pem)


def test_no_bundle_means_no_options() -> None:
    endpoint = AppEndpoint.model_validate(
        {"app": "hubspot", "auth": {"type": "AppParameters", "secretRef": {"name": "auth"}}}
    )
    assert connector_options(HubSpotConnector, endpoint, "source", None) == {}


def test_the_ca_secret_ref_refuses_a_namespace() -> None:
    with pytest.raises(ValueError, match=r"secretRef\.namespace is not allowed"):
        AppEndpoint.model_validate(
            {
                "app": "hubspot",
                "auth": {"type": "AppParameters", "secretRef": {"name": "auth"}},
                "tls": {"caBundle": {"secretRef": {"name": "ca", "namespace": "other"}}},
            }
        )


# ---------------------------------------------------------------- datasync sync (local mode)


def _sync(tmp_path: Path, spec: dict[str, object], secrets: list[dict[str, object]]) -> Any:
    connection = {
        "apiVersion": "datasync.io/v1alpha1",
        "kind": "DataSyncConnection",
        "metadata": {"name": "crm", "namespace": "sales"},
        "spec": {"direction": "OneWay", "schedule": "@hourly", **spec},
    }
    (tmp_path / "connection.yaml").write_text(yaml.safe_dump(connection))
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump_all(secrets))
    command = [str(Path(sys.executable).parent / "datasync"), "sync", "-f", "connection.yaml",
               "--secrets", "secrets.yaml", "--state", f"sqlite:///{tmp_path}/state.sqlite3",
               "--output", "json"]  # fmt: skip
    env = {**os.environ, ALLOW_LOCAL_ENV: "true"}
    env.pop(CA_BUNDLE_ENV, None)
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def _secret(name: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def test_datasync_sync_trusts_each_apps_ca_bundle_from_the_secrets_file(
    tmp_path: Path, ca_one: PrivateCA, ca_two: PrivateCA
) -> None:
    loop = BackgroundLoop()
    hubspot = HubSpotSandbox(ssl_context=ca_one.server_context())
    salesforce = SalesforceSandbox(ssl_context=ca_two.server_context())
    loop.run(hubspot.start())
    loop.run(salesforce.start())
    try:
        hubspot.load({"email": f"tls{i}@example.com", "lastname": f"T{i}"} for i in range(3))

        def endpoint(app: str, auth: AuthType, settings: dict[str, str]) -> dict[str, object]:
            return {"app": app, "auth": {"type": auth.value, "secretRef": {"name": f"{app}-auth"}},
                    "settings": settings}  # fmt: skip

        source = endpoint("hubspot", AuthType.APP_PARAMETERS, hubspot.connector_settings())
        destination = endpoint("salesforce", AuthType.OAUTH, salesforce.connector_settings())
        secrets = [
            _secret("hubspot-auth", hubspot.credentials(AuthType.APP_PARAMETERS)),
            _secret("salesforce-auth", salesforce.credentials(AuthType.OAUTH)),
            _secret("hubspot-ca", {"ca.crt": ca_one.ca_pem}),
            _secret("salesforce-ca", {"bundle.pem": ca_two.ca_pem}),
        ]
        source["tls"] = {"caBundle": {"secretRef": {"name": "hubspot-ca"}}}

        # The destination's private CA is not given: the run fails, naming the setting.
        failed = _sync(tmp_path, {"source": source, "destination": destination}, secrets)
        assert failed.returncode == 1, failed.stderr
        summary = json.loads(failed.stdout)
        assert "TLS verification of 127.0.0.1 failed" in summary["error"]
        assert "tls.caBundle" in summary["error"]
        assert salesforce.records() == []

        # Its key is named, but not in the Secret: a setup error naming Secret and key.
        destination["tls"] = {"caBundle": {"secretRef": {"name": "salesforce-ca"}}}
        no_key = _sync(tmp_path, {"source": source, "destination": destination}, secrets)
        assert no_key.returncode == 1
        assert (
            "Secret 'salesforce-ca' (spec.destination.tls.caBundle.secretRef) has no key "
            "'ca.crt'" in json.loads(no_key.stdout)["error"]
        )

        destination["tls"]["caBundle"]["key"] = "bundle.pem"  # type: ignore[index]
        done = _sync(tmp_path, {"source": source, "destination": destination}, secrets)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["records"]["toDestination"]["created"] == 3
        emails = {str(record.get("Email", "")).lower() for record in salesforce.records()}
        assert emails == {f"tls{i}@example.com" for i in range(3)}
        assert "BEGIN CERTIFICATE" not in done.stdout + done.stderr
    finally:
        loop.run(hubspot.stop())
        loop.run(salesforce.stop())
        loop.close()
