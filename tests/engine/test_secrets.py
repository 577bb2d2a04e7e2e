from __future__ import annotations

import base64
from pathlib import Path

import pytest

from datasync.api.models import AuthType
from datasync.connector import AuthSpec, SecretKey
from datasync.secrets import (
    Secret,
    SecretError,
    credentials_for,
    parse_secret_manifests,
    read_secret_dir,
)
from tests.engine.memory import MemoryConnector


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_data_and_string_data_are_merged_string_data_winning() -> None:
    secrets = parse_secret_manifests(
        f"""
apiVersion: v1
kind: Secret
metadata: {{name: hubspot-creds}}
data:
  accessToken: {_b64("pat-from-data")}
  portal: {_b64("123")}
stringData:
  accessToken: pat-from-stringdata
---
apiVersion: v1
kind: Secret
metadata: {{name: other, namespace: crm}}
stringData: {{dsn: "postgresql://u@h/db"}}
"""
    )
    assert set(secrets) == {"hubspot-creds", "other"}
    assert secrets["hubspot-creds"].data == {"accessToken": "pat-from-stringdata", "portal": "123"}
    assert secrets["other"].namespace == "crm"
    assert "pat-from" not in repr(secrets["hubspot-creds"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: ConfigMap\nmetadata: {name: x}\n", "only `kind: Secret`"),
        ("kind: Secret\nmetadata: {}\n", "metadata.name"),
        (
            "kind: Secret\nmetadata: {name: s}\ndata: {token: '###'}\n",
            "data.token is not valid base64",
        ),
        ("kind: Secret\nmetadata: {name: s}\n---\nkind: Secret\nmetadata: {name: s}\n", "twice"),
        ("kind: Secret\nmetadata: [\n", "not valid YAML"),
        ("- a\n- b\n", "not a mapping"),
    ],
)
def test_bad_secret_manifests_say_what_to_fix(text: str, expected: str) -> None:
    with pytest.raises(SecretError, match=expected.replace("[", r"\[")) as caught:
        parse_secret_manifests(text)
    assert "###" not in str(caught.value)


def test_mounted_secret_directory(tmp_path: Path) -> None:
    mounted = tmp_path / "source"
    (mounted / "..2026_01_01").mkdir(parents=True)
    (mounted / "..2026_01_01" / "token").write_text("hidden")
    (mounted / "..data").symlink_to(mounted / "..2026_01_01")
    (mounted / "accessToken").write_text("pat-123\n")
    secret = read_secret_dir(mounted, "hubspot-creds")
    assert secret.data == {"accessToken": "pat-123"}
    with pytest.raises(SecretError, match="mount Secret 'x' there"):
        read_secret_dir(tmp_path / "missing", "x")


def test_credentials_name_the_missing_key_and_the_secret() -> None:
    class Strict(MemoryConnector):
        name = "strict"
        auth = (
            AuthSpec(
                AuthType.APP_PARAMETERS,
                "token",
                (SecretKey("accessToken", "The private app token"), SecretKey("extra", "x", True)),
            ),
        )

    secret = Secret("hub-creds", {"accessToken": "v", "unrelated": "w"})
    assert credentials_for(Strict, AuthType.APP_PARAMETERS, secret, "spec.source") == {
        "accessToken": "v"
    }
    with pytest.raises(SecretError) as caught:
        credentials_for(Strict, "AppParameters", Secret("hub-creds", {}), "spec.source.auth")
    message = str(caught.value)
    assert "'accessToken'" in message and "'hub-creds'" in message
    assert "spec.source.auth" in message
    with pytest.raises(SecretError, match="does not support auth type OAuth"):
        credentials_for(Strict, AuthType.OAUTH, secret, "spec.source")
