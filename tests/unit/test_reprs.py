"""Objects holding credentials never show them in their repr (tracebacks, debug logs)."""

from __future__ import annotations

from datasync_connectors.salesforce.auth import Session
from datasync_operator.credentials import Resolution
from datasync_operator.kube import Credentials

SECRET = "SENTINEL-repr-value"


def test_credential_holders_keep_values_out_of_repr() -> None:
    holders = [
        Session(access_token=SECRET, instance_url="https://acme.my.salesforce.com", obtained_at=0),
        Resolution(credentials={"source": {"clientSecret": SECRET}}),
        Credentials(server="https://127.0.0.1:6443", token=SECRET),
    ]
    for holder in holders:
        assert SECRET not in repr(holder)
