"""The plugin manager: real pluggy, real entry points from distributions on sys.path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from mer_cli import mer

from mer_plugin.plugins import BUILTIN_PLUGINS, load_plugins

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

    def install(name: str, source: str, version: str = "1.0") -> Path:
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[mer]\n{name} = {name}\n")
        return site

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
    assert failure.reason == "unknown hook 'mer_backbone' (did you mean 'mer_backbones'?)"


def test_allow_list_and_disable_list(install_plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin("mer_a", BACKBONE_PLUGIN.format(backbone="a-net"))
    install_plugin("mer_b", BACKBONE_PLUGIN.format(backbone="b-net"))
    monkeypatch.setenv("MER_PLUGINS", "mer_b")
    assert _external(load_plugins()) == ["mer_b"]
    monkeypatch.delenv("MER_PLUGINS")
    monkeypatch.setenv("MER_DISABLE_PLUGINS", "mer_a, mer_b")
    assert _external(load_plugins()) == []


def test_name_clash_keeps_the_first_and_names_both_plugins(install_plugin) -> None:
    install_plugin("mer_first", BACKBONE_PLUGIN.format(backbone="same-net"))
    install_plugin("mer_second", BACKBONE_PLUGIN.format(backbone="same-net"))
    plugins = load_plugins()
    assert "same-net" in plugins.backbones()
    first = plugins.owner("mer_backbones", "same-net").split()[0]
    (failure,) = plugins.failures
    assert {first, failure.name} == {"mer_first", "mer_second"}
    assert f"'same-net' is already provided by plugin '{first}'" in failure.reason


def test_a_decoder_named_like_a_builtin_leaves_the_builtin_working(install_plugin) -> None:
    install_plugin(
        "mer_impostor",
        """
        from mer_plugin.hookspecs import Decoder, hookimpl

        def _open(path, block_frames):
            raise OSError("never opened here")

        @hookimpl
        def mer_decoders():
            return [Decoder("soundfile", (".flac",), _open, _open, priority=50)]
        """,
    )
    plugins = load_plugins()
    assert [d.name for d in plugins.decoders(".flac")] == ["soundfile", "pyav-fallback"]
    assert plugins.owner("mer_decoders", "soundfile").startswith("mer_plugin.builtin.decoders")
    (failure,) = plugins.failures
    assert failure.name == "mer_impostor" and "decoder 'soundfile' is already" in failure.reason


def test_two_writers_at_one_priority_are_reported(install_plugin) -> None:
    install_plugin(
        "mer_writers",
        """
        from mer_plugin.hookspecs import TagWriter, hookimpl

        def _never(*args):
            raise OSError("never used here")

        @hookimpl
        def mer_tag_writers():
            return [TagWriter("also-ape", (".wv",), _never, _never, priority=10)]
        """,
    )
    plugins = load_plugins()
    assert [w.name for w in plugins.tag_writers(".wv")] == ["ape", "also-ape"]
    (failure,) = plugins.failures
    assert failure.name == "mer_writers"
    assert "'also-ape' and tag writer 'ape'" in failure.reason and "priority 10" in failure.reason


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


def test_mer_plugins_shows_formats_and_problems_and_exits_1(install_plugin) -> None:
    site = install_plugin("mer_broken", "raise ImportError('needs libfoo')")
    result = mer("plugins", env={"PYTHONPATH": str(site), "COLUMNS": "200"})
    assert result.returncode == 1
    assert "problem mer_broken (mer_broken 1.0): could not be loaded" in result.stdout
    wv = next(line for line in result.stdout.splitlines() if " .wv " in line)
    assert "ape (10)" in wv and "no: no decoder" in wv
    flac = next(line for line in result.stdout.splitlines() if " .flac " in line)
    assert "soundfile (10), pyav-fallback (0)" in flac and "vorbis (10)" in flac


IMPOSTOR = """
from mer_plugin.hookspecs import Decoder, hookimpl

def _open(path, block_frames):
    raise OSError("the impostor never decodes")

@hookimpl
def mer_decoders():
    return [Decoder("soundfile", (".wav", ".flac"), _open, _open, priority=99)]
"""


def test_a_clashing_decoder_leaves_every_command_on_the_builtins(
    install_plugin, make_audio, tmp_path: Path
) -> None:
    from synthetic_music import make_dataset

    env = {"PYTHONPATH": str(install_plugin("mer_impostor", IMPOSTOR))}
    env["MER_CACHE_DIR"] = str(tmp_path / "cache")
    (tmp_path / "lib").mkdir()
    song = make_audio("lib/song.flac", 4.0)
    dataset = make_dataset(tmp_path / "data", per_class=2, seconds=4.0)
    fast = ["--set", "epochs=2", "--set", "warmup_epochs=1", "--set", "views=1"]
    commands = {
        "predict": ["predict", song],
        "tag": ["tag", song.parent, "--jobs", "2"],
        "train": ["train", dataset, "--method", "segment", "--out", tmp_path / "m", "-q", *fast],
    }
    for name, args in commands.items():
        result = mer(*args, env=env)
        assert result.returncode == 0, (name, result.stderr)
        warnings = [line for line in result.stderr.splitlines() if "mer_impostor" in line]
        assert len(warnings) == 1, (name, result.stderr)
        assert "decoder 'soundfile' is already provided by plugin" in warnings[0]
