"""The chart's CRD is the top-level crds/ CRD: same object, plus only release labels and the
keep annotations. Refresh both with `datasync crd --write`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.ship.tools import CHART, REPO, by_kind, one, render

TOP_LEVEL = REPO / "crds" / "datasyncconnections.yaml"
CHART_COPY = CHART / "files" / "crd.yaml"
KEEP = {
    "helm.sh/resource-policy": "keep",
    "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
}
REFRESH = "run `uv run datasync crd --write` and commit both files"


def load_single(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path} is missing; {REFRESH}"
    documents: list[dict[str, Any]] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(documents) == 1, f"{path} must hold exactly one CRD"
    return documents[0]


def without_release_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(crd)
    stripped["metadata"].pop("labels", None)
    stripped["metadata"].pop("annotations", None)
    return stripped


def test_chart_copy_equals_the_top_level_crd() -> None:
    assert load_single(CHART_COPY) == load_single(TOP_LEVEL), (
        f"charts/datasync/files/crd.yaml differs from crds/; {REFRESH}"
    )


def test_rendered_crd_is_the_top_level_crd_plus_release_labels_and_keep() -> None:
    top = load_single(TOP_LEVEL)
    rendered = one(render(), "CustomResourceDefinition")
    assert without_release_metadata(rendered) == without_release_metadata(top)
    labels = rendered["metadata"]["labels"]
    assert labels.items() >= (top["metadata"].get("labels") or {}).items()
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    annotations = rendered["metadata"]["annotations"]
    assert annotations.items() >= KEEP.items()
    assert annotations.items() >= (top["metadata"].get("annotations") or {}).items()


def test_keep_and_install_switches() -> None:
    not_kept = one(render(values={"crds.keep": "false"}), "CustomResourceDefinition")
    assert not set(KEEP) & set(not_kept["metadata"].get("annotations") or {})
    assert by_kind(render(values={"crds.install": "false"}), "CustomResourceDefinition") == []


def test_crd_has_no_server_side_defaults_so_git_manifests_never_drift() -> None:
    def defaults(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            found = [path] if "default" in node and isinstance(node.get("type"), str) else []
            for key, value in node.items():
                found += defaults(value, f"{path}.{key}")
            return found
        if isinstance(node, list):
            return [p for i, item in enumerate(node) for p in defaults(item, f"{path}[{i}]")]
        return []

    crd = load_single(CHART_COPY)
    for version in crd["spec"]["versions"]:
        assert defaults(version["schema"], version["name"]) == []
    assert {
        v["name"]
        for v in crd["spec"]["versions"]
        if v.get("subresources", {}).get("status") is not None
    } == {v["name"] for v in crd["spec"]["versions"]}
