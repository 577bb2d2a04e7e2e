"""Every example is a ready folder: Secrets with placeholders, a valid DataSyncConnection whose
Secret references and keys match, a README; the Argo CD Applications point at real paths."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from datasync.api.models import DataSyncConnection
from datasync.http import HostPolicy
from tests.ship.tools import REPO, venv_script

EXAMPLES = REPO / "examples"
CONNECTION_FOLDERS = ["hubspot-salesforce", "hubspot-postgres", "sandbox"]
# Secret keys per connector and auth type (`datasync connectors`); postgres: dsn or its parts.
SECRET_KEYS: dict[tuple[str, str], list[set[str]]] = {
    ("hubspot", "OAuth"): [{"clientId", "clientSecret", "refreshToken"}],
    ("hubspot", "AppParameters"): [{"accessToken"}],
    ("salesforce", "OAuth"): [{"clientId", "clientSecret", "refreshToken"}],
    ("salesforce", "AppParameters"): [{"clientId", "clientSecret"}],
    ("postgres", "AppParameters"): [{"dsn"}, {"host", "port", "database", "username", "password"}],
}
# The chart values the sandbox example documents (README) and hack/kind-up.sh sets.
SANDBOX_ENV = {
    "DATASYNC_ALLOW_SANDBOX_URLS": "true",
    "DATASYNC_ALLOWED_HOSTS": "hubspot-sandbox,salesforce-sandbox",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def folder_documents(folder: Path) -> list[dict[str, Any]]:
    return [d for path in sorted(folder.glob("*.yaml")) for d in documents(path)]


def test_every_example_yaml_is_listed_here() -> None:
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders == {*CONNECTION_FOLDERS, "argocd"}


@pytest.mark.parametrize("folder", CONNECTION_FOLDERS)
def test_example_folder_is_complete(folder: str) -> None:
    path = EXAMPLES / folder
    assert (path / "README.md").read_text().strip()
    kinds = [d["kind"] for d in folder_documents(path)]
    assert kinds.count("DataSyncConnection") == 1
    assert kinds.count("Secret") >= 1


@pytest.mark.parametrize("folder", CONNECTION_FOLDERS)
def test_connection_validates_with_the_models(folder: str) -> None:
    (connection,) = [
        d for d in folder_documents(EXAMPLES / folder) if d["kind"] == "DataSyncConnection"
    ]
    DataSyncConnection.model_validate(connection)
    # Applies cleanly from Git: no namespace pinned, no status, no operator-written fields.
    assert "status" not in connection
    assert "namespace" not in connection["metadata"]
    assert set(connection["metadata"]) == {"name"}


@pytest.mark.parametrize("folder", CONNECTION_FOLDERS)
def test_datasync_validate_accepts_the_folder(folder: str) -> None:
    env = {**os.environ, **(SANDBOX_ENV if folder == "sandbox" else {})}
    files = [str(p) for p in sorted((EXAMPLES / folder).glob("*.yaml"))]
    result = subprocess.run(
        [str(venv_script("datasync")), "validate", *files],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid (1 DataSyncConnection)" in result.stdout


def test_datasync_validate_rejects_a_broken_example(tmp_path: Path) -> None:
    broken = documents(EXAMPLES / "hubspot-salesforce" / "connection.yaml")[0]
    broken["spec"]["schedule"] = "every five minutes"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(venv_script("datasync")), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "schedule" in result.stdout + result.stderr


@pytest.mark.parametrize("folder", CONNECTION_FOLDERS)
def test_secret_refs_resolve_in_the_folder_with_the_connector_keys(folder: str) -> None:
    docs = folder_documents(EXAMPLES / folder)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    (connection,) = [d for d in docs if d["kind"] == "DataSyncConnection"]
    for side in ("source", "destination"):
        endpoint = connection["spec"][side]
        name = endpoint["auth"]["secretRef"]["name"]
        assert name in secrets, f"{folder}: {side} Secret {name} is not in the folder"
        keys = set(secrets[name].get("stringData", {})) | set(secrets[name].get("data", {}))
        accepted = SECRET_KEYS[(endpoint["app"], endpoint["auth"]["type"])]
        assert any(required <= keys for required in accepted), (folder, side, keys)


@pytest.mark.parametrize("folder", CONNECTION_FOLDERS)
def test_secrets_hold_placeholders_only(folder: str) -> None:
    documents = folder_documents(EXAMPLES / folder)
    assert any(doc["kind"] == "Secret" for doc in documents), f"{folder} has no Secret"
    for doc in documents:
        if doc["kind"] != "Secret":
            continue
        assert "data" not in doc, "use stringData with visible placeholders"
        assert "namespace" not in doc["metadata"]
        for key, value in doc["stringData"].items():
            assert "REPLACE_ME" in value, f"{folder}/{doc['metadata']['name']}.{key}"


def test_sandbox_example_runs_the_sandbox_apps_the_connection_points_at() -> None:
    docs = folder_documents(EXAMPLES / "sandbox")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    (connection,) = [d for d in docs if d["kind"] == "DataSyncConnection"]
    settings = {
        **connection["spec"]["source"]["settings"],
        **connection["spec"]["destination"]["settings"],
    }
    for key in ("baseUrl", "organizationUrl", "loginUrl"):
        host_port = settings[key].removeprefix("http://")
        host, port = host_port.split(":")
        assert host in services and services[host]["spec"]["ports"][0]["port"] == int(port)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        app = name.removesuffix("-sandbox")
        assert container["args"][:2] == ["sandbox", app]
        assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The Secret names the sandbox prints (datasync sandbox: <app>-sandbox-oauth).
    for side in ("source", "destination"):
        endpoint = connection["spec"][side]
        assert endpoint["auth"]["secretRef"]["name"] == f"{endpoint['app']}-sandbox-oauth"


def test_argocd_applications_point_at_real_paths() -> None:
    apps = {d["metadata"]["name"]: d for d in folder_documents(EXAMPLES / "argocd")}
    assert set(apps) == {"datasync-operator", "datasync-connections"}
    for app in apps.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        source = app["spec"]["source"]
        assert (REPO / source["path"]).is_dir(), source["path"]
        include = source.get("directory", {}).get("include")
        if include:
            included = list((REPO / source["path"]).glob(include))
            assert included and all(
                d["kind"] == "DataSyncConnection" for p in included for d in documents(p)
            )
    chart = apps["datasync-operator"]["spec"]["source"]
    assert (REPO / chart["path"] / "Chart.yaml").is_file()
    assert (
        "SkipDryRunOnMissingResource=true"
        in apps["datasync-connections"]["spec"]["syncPolicy"]["syncOptions"]
    )


def test_sandbox_urls_pass_the_host_policy_only_with_the_documented_chart_values() -> None:
    script = (REPO / "hack" / "kind-up.sh").read_text()
    readme = (EXAMPLES / "sandbox" / "README.md").read_text()
    match = re.search(r"operator\.allowedHosts=\{([^}]*)\}", script)
    assert match, "kind-up.sh must set operator.allowedHosts"
    hosts = tuple(match.group(1).split(","))
    assert f"operator.allowedHosts={{{match.group(1)}}}" in readme
    assert "operator.allowSandboxUrls=true" in script and "operator.allowSandboxUrls=true" in readme
    (connection,) = [
        d for d in folder_documents(EXAMPLES / "sandbox") if d["kind"] == "DataSyncConnection"
    ]
    urls = [
        value
        for side in ("source", "destination")
        for value in connection["spec"][side]["settings"].values()
        if value.startswith("http")
    ]
    assert len(urls) == 3
    # What the operator and its sync Jobs decide with those values (datasync.http.HostPolicy).
    assert all(HostPolicy(allowed=hosts, allow_local=True).permits(url) for url in urls)
    assert not any(HostPolicy(allowed=hosts, allow_local=False).permits(url) for url in urls)
    assert not any(HostPolicy(allowed=(), allow_local=True).permits(url) for url in urls)
