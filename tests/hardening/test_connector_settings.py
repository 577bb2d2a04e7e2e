"""Connector settings and Secrets refused without telling what was refused: base-URL
settings never carry credentials, queries or fragments (https://user:password@host is a
Secret typed into the wrong place), and a missing Secret key is named, never a value."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import pytest
from datasync_connectors.hubspot import HubSpotConnector
from datasync_connectors.salesforce import SalesforceConnector
from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.api.models import AuthType
from datasync.connector import ConfigurationError, Connector

URL_SETTINGS: list[tuple[type[Connector], str, str, AuthType, dict[str, str]]] = [
    (HubSpotConnector, "baseUrl", "api.hubapi.com", AuthType.APP_PARAMETERS, {"accessToken": "t"}),
    (
        SalesforceConnector,
        "loginUrl",
        "login.salesforce.com",
        AuthType.OAUTH,
        {"clientId": "i", "clientSecret": "s", "refreshToken": "r"},
    ),
    (
        SalesforceConnector,
        "organizationUrl",
        "acme.my.salesforce.com",
        AuthType.APP_PARAMETERS,
        {"clientId": "i", "clientSecret": "s"},
    ),
]
SECRET = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=24
)


@pytest.fixture(autouse=True)
def _as_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATASYNC_ALLOW_SANDBOX_URLS", raising=False)


@settings(max_examples=60, deadline=None)
@given(
    target=st.sampled_from(URL_SETTINGS),
    user=st.one_of(st.none(), SECRET),
    secret=SECRET,
    where=st.sampled_from(["userinfo", "query", "fragment"]),
    encode=st.booleans(),
)
def test_url_settings_refuse_secrets_without_echoing_them(
    target: tuple[type[Connector], str, str, AuthType, dict[str, str]],
    user: str | None,
    secret: str,
    where: str,
    encode: bool,
) -> None:
    connector, setting, host, auth_type, credentials = target
    hidden = quote(secret, safe="") if encode else secret
    if where == "userinfo":
        url = f"https://{user + ':' if user else ''}{hidden}@{host}"
    elif where == "query":
        url = f"https://{host}?access_token={hidden}"
    else:
        url = f"https://{host}#{hidden}"
    with pytest.raises(ConfigurationError) as refused:
        connector({setting: url}, credentials, auth_type)  # type: ignore[call-arg]
    message = str(refused.value)
    assert refused.value.field == setting and setting in message
    assert secret not in message and hidden not in message
    if user:
        assert user not in message
    assert {"userinfo": "Secret", "query": "query string", "fragment": "fragment"}[where] in (
        message
    )


def test_every_base_url_setting_is_covered(tally: Counter[str]) -> None:
    """Each connector's URL settings are in the table above, so none escapes the check."""
    covered = {(connector.name, setting) for connector, setting, *_ in URL_SETTINGS}
    for connector in (HubSpotConnector, SalesforceConnector):
        for name in connector.settings_model.model_fields:
            if name.lower().endswith("url"):
                assert (connector.name, name) in covered, f"{connector.name}.{name} untested"
    tally["url_settings_checked"] += len(covered)


@settings(max_examples=40, deadline=None)
@given(
    connector=st.sampled_from([HubSpotConnector, SalesforceConnector]),
    auth_type=st.sampled_from(list(AuthType)),
    values=st.lists(SECRET, min_size=3, max_size=3, unique=True),
    blank=st.sampled_from(["", "   ", "\t\n"]),
    pick=st.integers(min_value=0, max_value=2),
)
def test_a_missing_secret_key_is_named_and_no_other_value_told(
    connector: type[Connector],
    auth_type: AuthType,
    values: list[str],
    blank: str,
    pick: int,
) -> None:
    spec = connector.auth_spec(auth_type)
    assert spec is not None
    keys = spec.required_keys
    missing = keys[pick % len(keys)]
    credentials = {key: value for key, value in zip(keys, values, strict=False)} | {missing: blank}
    settings_ = {"organizationUrl": "https://acme.my.salesforce.com"}
    with pytest.raises(ConfigurationError) as refused:
        connector(settings_ if connector is SalesforceConnector else {}, credentials, auth_type)  # type: ignore[call-arg]
    message = str(refused.value)
    assert refused.value.field == missing and repr(missing) in message
    assert "add it to the Secret" in message
    assert all(value not in message for value in values)
