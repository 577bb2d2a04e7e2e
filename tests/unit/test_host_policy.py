"""The host policy every connector's requests pass through."""

from __future__ import annotations

import pytest

from datasync.connector import ConfigurationError
from datasync.http import HostPolicy

OFFICIAL = ("api.hubapi.com", "*.my.salesforce.com")


def test_official_hosts_over_https_are_allowed() -> None:
    policy = HostPolicy(allowed=OFFICIAL)
    assert policy.permits("https://api.hubapi.com/crm/v3/objects/contacts")
    assert policy.permits("https://acme.my.salesforce.com/services/data/")


@pytest.mark.parametrize(
    "url",
    ["http://api.hubapi.com/crm/v3", "http://acme.my.salesforce.com", "ftp://api.hubapi.com/"],
)
def test_credentials_never_travel_in_clear_text_to_a_real_app(url: str) -> None:
    policy = HostPolicy(allowed=OFFICIAL)
    assert not policy.permits(url)
    with pytest.raises(ConfigurationError) as caught:
        policy.check(url, setting="baseUrl")
    assert caught.value.field == "baseUrl"
    assert "not https" in str(caught.value)


def test_the_sandbox_opt_in_allows_plain_http_to_loopback_and_listed_hosts_only() -> None:
    policy = HostPolicy(allowed=(*OFFICIAL, "hubspot-sandbox"), allow_local=True)
    assert policy.permits("http://127.0.0.1:8080/oauth/v1/token")
    assert policy.permits("http://hubspot-sandbox:8080/crm/v3")
    assert not policy.permits("http://10.0.0.1:8080/")
    assert not policy.permits("http://metadata.internal/")


def test_hosts_outside_the_list_are_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        HostPolicy(allowed=OFFICIAL).check("https://evil.example.com/", setting="loginUrl")
    assert caught.value.field == "loginUrl"
    assert "not allowed" in str(caught.value)


def test_a_refused_url_names_scheme_and_host_only() -> None:
    """A URL may carry a password (user:password@host) or a token in its query: the
    refusal names the scheme and host, never the rest."""
    policy = HostPolicy(allowed=("api.hubapi.com",), allow_local=False)
    for url in (
        "http://user:s3cr3t-pw@api.hubapi.com/path?token=t0ken-value",
        "https://user:s3cr3t-pw@internal.example/path?token=t0ken-value",
    ):
        with pytest.raises(ConfigurationError) as caught:
            policy.check(url)
        message = str(caught.value)
        assert "s3cr3t-pw" not in message and "t0ken-value" not in message
        assert "api.hubapi.com" in message or "internal.example" in message
