"""Imports point one way only (docs/design.md §3): a module imports from its own layer or
the layers below, never above; tagging and training never import each other; nothing
imports the built-in plugins, which the plugin manager loads by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the package's source folder, by the dotted prefix it is installed under
SOURCES = {"mer_plugin": ROOT / "mer_plugin", "beetsplug": ROOT / "beetsplug"}
LAYERS: dict[str, int] = {
    "mer_plugin": 0,  # the package's own __init__: its version
    "mer_plugin.models": 0,  # data: the shipped model folders
    "mer_plugin.kernels": 0,
    "mer_plugin.errors": 0,
    "mer_plugin.emotion": 0,
    "mer_plugin.frontend": 0,
    "mer_plugin.user_cache": 0,
    "mer_plugin.signals": 0,
    "mer_plugin.budget": 0,
    "mer_plugin.heap": 0,
    "mer_plugin.logs": 0,
    "mer_plugin.files": 0,
    "mer_plugin.hookspecs": 1,
    "mer_plugin.plugins": 1,
    "mer_plugin.audio": 2,
    "mer_plugin.logmel": 2,
    "mer_plugin.features": 2,
    "mer_plugin.safe_write": 2,
    "mer_plugin.tags": 2,
    "mer_plugin.library": 2,
    "mer_plugin.song_extras": 2,
    "mer_plugin.datasets": 2,
    "mer_plugin.testing": 2,
    "mer_plugin.backbones": 3,
    "mer_plugin.inference": 4,
    "mer_plugin.tagging": 5,
    "mer_plugin.training": 5,
    "mer_plugin.catalog": 6,  # builds on tagging's pipeline
    "mer_plugin.builtin": 6,
    "mer_plugin.cli": 7,
    "beetsplug": 7,  # the beets plugin: an application over mer's public API
}
# what the beets plugin may import from mer: public names of these modules only
BEETS_PLUGIN_API = {"mer_plugin.tagging", "mer_plugin.inference", "mer_plugin.tags"}
SIDE_BY_SIDE = {("mer_plugin.tagging", "mer_plugin.training")}


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((prefix, *parts))] = path
    return found


def _layer_of(module: str) -> str:
    """The most specific entry of LAYERS that `module` is, or lies in."""
    matches = [
        name
        for name in LAYERS
        if module == name or (name != "mer_plugin" and module.startswith(name + "."))
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer of docs/design.md §3")
    return max(matches, key=len)


def _imports(module: str, path: Path) -> set[str]:
    """mer_plugin modules imported anywhere in a file (late and TYPE_CHECKING ones too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base]) if base else ".".join(up)
            found.add(base)
    return {name for name in found if name == "mer_plugin" or name.startswith("mer_plugin.")}


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    own = _layer_of(module)
    for imported in _imports(module, MODULES[module]):
        theirs = _layer_of(imported)
        if theirs == own:
            continue
        assert LAYERS[theirs] <= LAYERS[own], f"{module} (layer {own}) imports {imported}"
        assert (own, theirs) not in SIDE_BY_SIDE and (theirs, own) not in SIDE_BY_SIDE, (
            f"{module} imports {imported}: tagging and training stand side by side"
        )
        if theirs == "mer_plugin.builtin":
            raise AssertionError(f"{module} imports the built-in plugin {imported}")


def test_every_module_has_a_layer() -> None:
    assert all(_layer_of(module) for module in MODULES)
    assert len(MODULES) > 40


def test_every_package_is_installed() -> None:
    """A regular (non-editable) install ships every package folder: pyproject lists them."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    packages = {m for m, path in MODULES.items() if path.name == "__init__.py"}
    assert packages <= listed, f"not in pyproject's packages: {sorted(packages - listed)}"


def test_every_package_is_installed_with_the_beets_plugin() -> None:
    """beetsplug is a namespace package (beets' and its plugins' own): listed, no
    __init__.py of ours to shadow theirs."""
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "beetsplug" in listed["packages"]
    assert not (ROOT / "beetsplug" / "__init__.py").exists()


def test_the_beets_plugin_uses_the_public_api_only() -> None:
    """beetsplug/mer.py imports public names of tagging, inference and tags, nothing else
    of mer's."""
    tree = ast.parse((ROOT / "beetsplug" / "mer.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("mer_plugin") for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mer_plugin"):
            assert node.module in BEETS_PLUGIN_API, f"beetsplug/mer.py imports {node.module}"
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"beetsplug/mer.py imports private {private}"
