"""The wheel (and so the container image) ships every package the checkout has."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"])


def _on_disk() -> set[str]:
    roots = {"datasync": ROOT / "datasync", "datasync_connectors": ROOT / "connectors"}
    found = (
        {"datasync_operator"}
        if (ROOT / "operator/datasync_operator/__init__.py").exists()
        else set()
    )
    for package, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            found.add(".".join([package, *relative.parts]))
    return found


def test_every_package_is_declared_for_the_wheel() -> None:
    missing = _on_disk() - _declared()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_operator_folder_never_shadows_the_stdlib_module() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
