"""A per-app CA bundle (spec.<side>.tls.caBundle) turned into what the connector verifies with.

The CA certificates come from a Secret key (the secrets file locally, a mounted file in the
cluster, the API in the operator's check). They replace the system CAs for that app only;
verification itself is never turned off.
"""

from __future__ import annotations

import ssl
from typing import Any

from datasync.api.models import AppEndpoint
from datasync.connector import ConfigurationError, Connector


def ca_bundle_dir(side: str) -> str:
    """Where the operator mounts a side's CA bundle key in the sync pod, under the secrets
    directory (`datasync sync --secrets-dir`): source-ca/ or destination-ca/."""
    return f"{side}-ca"


def ca_bundle_setting(side: str) -> str:
    return f"spec.{side}.tls.caBundle"


def ca_context(pem: str, where: str) -> ssl.SSLContext:
    """An SSL context trusting exactly the PEM CA certificates in `pem`; `where` names the
    Secret key they came from (it is in every error)."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigurationError(
            f"{where} holds no PEM certificate; put the CA certificate(s) "
            "(-----BEGIN CERTIFICATE----- ...) in that Secret key",
            field="tls.caBundle",
        )
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as error:
        reason = getattr(error, "reason", None) or type(error).__name__
        raise ConfigurationError(
            f"{where} is not a usable PEM CA bundle ({reason}); put the CA certificate(s) "
            "in that Secret key",
            field="tls.caBundle",
        ) from None


def connector_options(
    connector: type[Connector], endpoint: AppEndpoint, side: str, pem: str | None
) -> dict[str, Any]:
    """Keyword arguments for `connector` from the endpoint's TLS options (none when unset).

    `pem` is the CA bundle Secret key's value, read by the caller from wherever it lives."""
    bundle = endpoint.tls.caBundle if endpoint.tls else None
    if bundle is None:
        return {}
    setting = ca_bundle_setting(side)
    if not connector.accepts_ca_bundle:
        raise ConfigurationError(
            f"{setting}: the {connector.name} connector does not use tls.caBundle; "
            "remove it (postgres takes the CA in its Secret key `sslrootcert`)",
            field="tls.caBundle",
        )
    where = f"Secret {bundle.secretRef.name!r} key {bundle.key!r} ({setting})"
    return {"tls_context": ca_context(pem or "", where)}
