"""The plugin manager: built-in modules first, then the entry points of group ``mer``.

Built-ins (`mer_plugin.builtin`) register through the same hooks as third-party plugins;
this module names them but never imports them statically. Each hook's table of
components is built once, by calling every implementation through pluggy (so pluggy's
tracing and hook wrappers apply), and built again after `register` or `unregister`.

Loading is controlled by two environment variables, both lists of entry-point names
separated by commas:
``MER_PLUGINS`` (only these third-party plugins load) and ``MER_DISABLE_PLUGINS`` (these
do not). A plugin that fails to import, or whose hook raises, is reported by name with
the reason and skipped; the run goes on.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from mer_plugin import __version__, hookspecs
from mer_plugin.errors import MerError
from mer_plugin.hookspecs import Backbone, Decoder, Extractor, TagWriter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mer"
# modules with hookimpls, registered before entry points
BUILTIN_PLUGINS: tuple[str, ...] = (
    "mer_plugin.builtin.decoders",
    "mer_plugin.builtin.tag_writers",
    "mer_plugin.builtin.backbones",
    "mer_plugin.builtin.essentia",
)
HOOKS: dict[str, type] = {
    "mer_backbones": Backbone,
    "mer_extractors": Extractor,
    "mer_decoders": Decoder,
    "mer_tag_writers": TagWriter,
}


class PluginClash(MerError):
    """Two plugins provide a component of the same name."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    builtin: bool


@dataclass(frozen=True)
class PluginFailure:
    name: str
    reason: str


@dataclass
class Plugins:
    """The loaded plugins, what failed, and the components they provide."""

    manager: pluggy.PluginManager
    loaded: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    _tables: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def register(self, plugin: object, name: str) -> str | None:
        """Register a plugin object (tests, embedding applications); tables are rebuilt."""
        registered = self.manager.register(plugin, name=name)
        self._tables.clear()
        return registered

    def unregister(self, name: str) -> None:
        self.manager.unregister(name=name)
        self._tables.clear()

    def provided(self, hook: str) -> Iterator[tuple[str, Any]]:
        """(plugin name, component) for every component a hook's implementations return,
        in registration order; an implementation that raises is reported and skipped."""
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            try:
                components = [c for result in self._call_one(hook, impl) for c in result or ()]
            except Exception as error:  # a plugin's bug must not take the run down
                self.report_failure(impl.plugin_name, f"hook {hook} raised {error!r}")
                continue
            for component in components:
                if isinstance(component, HOOKS[hook]):
                    yield impl.plugin_name, component
                else:
                    self.report_failure(impl.plugin_name, f"hook {hook} returned {component!r}")

    def _call_one(self, hook: str, impl: pluggy.HookImpl) -> list:
        """One plugin's implementation of `hook`, called through pluggy."""
        others = [p for p in self.manager.get_plugins() if p is not impl.plugin]
        return self.manager.subset_hook_caller(hook, remove_plugins=others)()

    def components(self, hook: str) -> dict[str, Any]:
        """Components of a hook by name; a name provided twice raises `PluginClash`."""
        if hook not in self._tables:
            self._tables[hook] = self._table(hook)
        return self._tables[hook]

    def _table(self, hook: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for plugin, component in self.provided(hook):
            if component.name in found:
                kind = HOOKS[hook].__name__.lower()
                raise PluginClash(
                    f"{kind} {component.name!r} is provided by both plugin "
                    f"{owner[component.name]!r} and plugin {plugin!r}"
                )
            found[component.name], owner[component.name] = component, plugin
        return found

    def backbones(self) -> dict[str, Backbone]:
        return self.components("mer_backbones")

    def extractors(self) -> dict[str, Extractor]:
        return self.components("mer_extractors")

    def decoders(self, extension: str) -> list[Decoder]:
        """Decoders for a file extension (".mp3"), highest priority first."""
        return _by_priority(self.components("mer_decoders").values(), extension)

    def tag_writers(self, extension: str) -> list[TagWriter]:
        """Tag writers for a file extension, highest priority first."""
        return _by_priority(self.components("mer_tag_writers").values(), extension)

    def report_failure(self, name: str, reason: str) -> None:
        failure = PluginFailure(name, reason)
        if failure not in self.failures:  # a table rebuilt after `register` calls it again
            log.warning("plugin %s skipped: %s", name, reason)
            self.failures.append(failure)


def _by_priority(components: Any, extension: str) -> list:
    matching = [c for c in components if extension.lower() in c.extensions]
    return sorted(matching, key=lambda c: -c.priority)  # stable: registration order on ties


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _wanted(entry_point: EntryPoint) -> bool:
    allowed = _env_names("MER_PLUGINS")
    disabled = _env_names("MER_DISABLE_PLUGINS") or set()
    return (allowed is None or entry_point.name in allowed) and entry_point.name not in disabled


def load_plugins() -> Plugins:
    """A fresh plugin manager with the built-ins and the wanted entry points registered."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        manager.register(module, name=module_name)
        manager.check_pending()  # a built-in with a misspelt hook is our bug: fail loudly
        plugins.loaded.append(PluginInfo(module_name, "mer-plugin", __version__, builtin=True))
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if _wanted(entry_point):
            _register_entry_point(plugins, entry_point)
    return plugins


def _register_entry_point(plugins: Plugins, entry_point: EntryPoint) -> None:
    name = entry_point.name
    manager = plugins.manager
    if manager.has_plugin(name):
        plugins.report_failure(name, "another plugin is already registered under this name")
        return
    try:
        plugin = entry_point.load()
        manager.register(plugin, name=name)
    except Exception as error:  # import errors, bad hook signatures…
        plugins.report_failure(name, f"could not be loaded: {error!r}")
        return
    try:
        manager.check_pending()  # a misspelt hook name is reported, not silently ignored
    except pluggy.PluginValidationError as error:
        manager.unregister(plugin)
        plugins.report_failure(name, str(error))
        return
    dist = entry_point.dist
    info = PluginInfo(name, dist.name if dist else "?", dist.version if dist else "?", False)
    plugins.loaded.append(info)


@cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded once (`get_plugins.cache_clear()` reloads)."""
    return load_plugins()
