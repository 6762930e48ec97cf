"""The plugin manager: real pluggy, real entry points from distributions on sys.path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mer_plugin.plugins import BUILTIN_PLUGINS, PluginClash, load_plugins

InstallPlugin = Callable[..., None]

BACKBONE_PLUGIN = """
from mer_plugin.frontend import MUSICNN
from mer_plugin.hookspecs import Backbone, hookimpl

@hookimpl
def mer_backbones():
    return [Backbone(name={backbone!r}, create=lambda pretrained: None, spec=MUSICNN,
                     embedding_size=8)]
"""


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InstallPlugin:
    """Install a one-module distribution with a ``mer`` entry point onto sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("MER_PLUGINS", raising=False)
    monkeypatch.delenv("MER_DISABLE_PLUGINS", raising=False)

    def install(name: str, source: str, version: str = "1.0") -> None:
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[mer]\n{name} = {name}\n")

    return install


def _external(plugins) -> list[str]:
    return [info.name for info in plugins.loaded if not info.builtin]


def test_builtins_register_through_the_hooks() -> None:
    plugins = load_plugins()
    builtins = [info for info in plugins.loaded if info.builtin]
    assert [info.name for info in builtins] == list(BUILTIN_PLUGINS)
    assert {info.distribution for info in builtins} == {"mer-plugin"}
    assert {"musicnn-msd", "shortchunk-cnn"} <= set(plugins.backbones())
    assert "essentia" in plugins.extractors()
    assert [d.name for d in plugins.decoders(".flac")] == ["soundfile", "pyav-fallback"]
    assert [d.name for d in plugins.decoders(".m4a")] == ["pyav"]


def test_entry_point_plugin_is_loaded_with_its_distribution(install_plugin) -> None:
    install_plugin("mer_demo", BACKBONE_PLUGIN.format(backbone="demo-net"), version="2.5")
    plugins = load_plugins()
    (info,) = [info for info in plugins.loaded if info.name == "mer_demo"]
    assert (info.distribution, info.version, info.builtin) == ("mer_demo", "2.5", False)
    assert plugins.backbones()["demo-net"].embedding_size == 8
    assert plugins.failures == []


def test_plugin_that_fails_to_import_is_reported_and_skipped(install_plugin) -> None:
    install_plugin("mer_broken", "import a_module_that_does_not_exist\n")
    install_plugin("mer_good", BACKBONE_PLUGIN.format(backbone="good-net"))
    plugins = load_plugins()
    assert _external(plugins) == ["mer_good"]
    (failure,) = plugins.failures
    assert failure.name == "mer_broken"
    assert "a_module_that_does_not_exist" in failure.reason


def test_plugin_whose_hook_raises_is_reported_and_skipped(install_plugin) -> None:
    install_plugin(
        "mer_raises",
        """
        from mer_plugin.hookspecs import hookimpl

        @hookimpl
        def mer_backbones():
            raise RuntimeError("weights missing")
        """,
    )
    install_plugin("mer_good", BACKBONE_PLUGIN.format(backbone="good-net"))
    plugins = load_plugins()
    assert "good-net" in plugins.backbones()
    (failure,) = plugins.failures
    assert failure.name == "mer_raises"
    assert "weights missing" in failure.reason


def test_misspelt_hook_is_reported(install_plugin) -> None:
    install_plugin(
        "mer_typo",
        """
        from mer_plugin.hookspecs import hookimpl

        @hookimpl
        def mer_backbone():
            return []
        """,
    )
    plugins = load_plugins()
    assert _external(plugins) == []
    (failure,) = plugins.failures
    assert failure.name == "mer_typo"
    assert "mer_backbone" in failure.reason


def test_allow_list_and_disable_list(install_plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin("mer_a", BACKBONE_PLUGIN.format(backbone="a-net"))
    install_plugin("mer_b", BACKBONE_PLUGIN.format(backbone="b-net"))
    monkeypatch.setenv("MER_PLUGINS", "mer_b")
    assert _external(load_plugins()) == ["mer_b"]
    monkeypatch.delenv("MER_PLUGINS")
    monkeypatch.setenv("MER_DISABLE_PLUGINS", "mer_a, mer_b")
    assert _external(load_plugins()) == []


def test_name_clash_names_both_plugins(install_plugin) -> None:
    install_plugin("mer_first", BACKBONE_PLUGIN.format(backbone="same-net"))
    install_plugin("mer_second", BACKBONE_PLUGIN.format(backbone="same-net"))
    with pytest.raises(PluginClash, match="same-net.*mer_(first|second).*mer_(first|second)"):
        load_plugins().backbones()


def test_decoders_are_ordered_by_priority(install_plugin) -> None:
    install_plugin(
        "mer_decoders_demo",
        """
        from mer_plugin.hookspecs import Decoder, hookimpl

        def _open(path, block_frames):
            raise OSError("never opened here")

        @hookimpl
        def mer_decoders():
            return [Decoder("low", (".xyz",), _open, _open, priority=-5),
                    Decoder("high", (".xyz",), _open, _open, priority=10)]
        """,
    )
    names = [decoder.name for decoder in load_plugins().decoders(".XYZ")]
    assert names[:2] == ["high", "low"]
