"""The plugin manager: built-in modules first, then the entry points of group ``mer``.

Built-ins (`mer_plugin.builtin`) register through the same hooks as third-party plugins;
this module names them but never imports them statically. Each hook's table of
components is built once, by calling every implementation through pluggy (so pluggy's
tracing and hook wrappers apply), and built again after `register` or `unregister`.

Loading is controlled by two environment variables, both lists of entry-point names
separated by commas:
``MER_PLUGINS`` (only these third-party plugins load) and ``MER_DISABLE_PLUGINS`` (these
do not). A plugin that fails to import, or whose hook raises, is reported by name with
the reason and skipped; the run goes on. So is a component whose name another plugin
already provides (the first registered, built-ins before entry points, is kept), and two
decoders or tag writers that claim an extension at the same priority are reported (the
first registered is used).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from mer_plugin import __version__, hookspecs
from mer_plugin.hookspecs import Backbone, Decoder, Extractor, TagWriter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mer"
# modules with hookimpls, registered before entry points
BUILTIN_PLUGINS: tuple[str, ...] = (
    "mer_plugin.builtin.decoders",
    "mer_plugin.builtin.midi",
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


# hooks whose components are chosen per file extension, by priority
BY_EXTENSION = ("mer_decoders", "mer_tag_writers")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    builtin: bool

    def __str__(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class PluginFailure:
    name: str  # the plugin (entry point) name
    reason: str


@dataclass
class Plugins:
    """The loaded plugins, what failed, and the components they provide."""

    manager: pluggy.PluginManager
    loaded: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    _tables: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    # hook -> component name -> the plugin that provides it
    _owners: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    # every entry point tried, loaded or not: where a plugin name comes from
    _origins: dict[str, PluginInfo] = field(default_factory=dict, repr=False)

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
        """Components of a hook by name. A name provided twice is reported against the
        later plugin and its component skipped."""
        if hook not in self._tables:
            self._tables[hook], self._owners[hook] = self._table(hook)
            if hook in BY_EXTENSION:
                self._report_ties(hook)
        return self._tables[hook]

    def components_by_plugin(self, hook: str) -> Iterator[tuple[str, Any]]:
        """(plugin name, component) for each component in use, in registration order."""
        table = self.components(hook)
        return ((self._owners[hook][name], component) for name, component in table.items())

    def owner(self, hook: str, name: str) -> str:
        """The plugin providing component `name` of `hook`, as shown to people."""
        return self.describe(self._owners.get(hook, {}).get(name, "?"))

    def origin(self, hook: str, name: str) -> PluginInfo | None:
        """Where component `name` of `hook` comes from (None: registered at run time)."""
        self.components(hook)
        return self._origins.get(self._owners[hook].get(name, ""))

    def is_builtin(self, hook: str, name: str) -> bool:
        info = self.origin(hook, name)
        return info is not None and info.builtin

    def _table(self, hook: str) -> tuple[dict[str, Any], dict[str, str]]:
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        kind = component_kind(hook)
        for plugin, component in self.provided(hook):
            if component.name in found:
                first = owners[component.name]
                self.report_failure(
                    plugin,
                    f"{kind} {component.name!r} is already provided by plugin {first!r}: "
                    f"this one is skipped (rename it)",
                )
                continue
            found[component.name], owners[component.name] = component, plugin
        return found, owners

    def _report_ties(self, hook: str) -> None:
        """Two components claiming an extension at the same priority: the first
        registered is used; the later one's plugin is told."""
        kind, owners = component_kind(hook), self._owners[hook]
        chosen: dict[tuple[str, int], Any] = {}
        for component in self._tables[hook].values():
            for extension in component.extensions:
                key = (extension, component.priority)
                first = chosen.setdefault(key, component)
                if first is not component and owners[first.name] != owners[component.name]:
                    self.report_failure(
                        owners[component.name],
                        f"{kind} {component.name!r} and {kind} {first.name!r} of plugin "
                        f"{owners[first.name]!r} both handle {extension} at priority "
                        f"{component.priority}: {first.name!r} (registered first) is used; "
                        f"a higher priority takes over",
                    )

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
            log.warning("plugin %s: %s", self.describe(name), reason)
            self.failures.append(failure)

    def describe(self, name: str) -> str:
        """A plugin's name with its distribution, where it came from one."""
        info = self._origins.get(name)
        return str(info) if info else name


def component_kind(hook: str) -> str:
    """What a component of `hook` is called in messages: "decoder", "tag writer"…"""
    return {"TagWriter": "tag writer"}.get(HOOKS[hook].__name__, HOOKS[hook].__name__.lower())


def _by_priority(components: Iterable[Any], extension: str) -> list:
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
        info = PluginInfo(module_name, "mer-plugin", __version__, builtin=True)
        plugins.loaded.append(info)
        plugins._origins[module_name] = info
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
    dist = entry_point.dist
    info = PluginInfo(name, dist.name if dist else "?", dist.version if dist else "?", False)
    plugins._origins[name] = info
    try:
        plugin = entry_point.load()
        manager.register(plugin, name=name)
    except Exception as error:  # import errors, bad hook signatures…
        plugins.report_failure(name, f"could not be loaded: {error!r}")
        return
    unknown = _unknown_hooks(manager, plugin)
    if unknown:  # a misspelt hook name is reported, not silently ignored
        manager.unregister(plugin)
        plugins.report_failure(name, "; ".join(unknown))
        return
    plugins.loaded.append(info)


def _unknown_hooks(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    """'unknown hook X (did you mean Y?)' for each implementation no spec declares."""
    found = []
    for caller in manager.get_hookcallers(plugin) or ():
        if caller.spec is None:
            close = difflib.get_close_matches(caller.name, HOOKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (hooks: {', '.join(HOOKS)})"
            found.append(f"unknown hook {caller.name!r}{hint}")
    return found


@cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded once (`get_plugins.cache_clear()` reloads)."""
    return load_plugins()
