"""`mer plugins`: what is installed, what each plugin provides, which formats mer tags,
and every plugin problem; exit status 1 when there is one."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mer_plugin.plugins import BY_EXTENSION, HOOKS, Plugins, component_kind, get_plugins


def plugins() -> None:
    """List the loaded plugins, what each provides, the formats mer tags, and problems."""
    loaded = get_plugins()
    console = Console()
    console.print(_plugins_table(loaded))
    console.print(_formats_table(loaded))
    for failure in loaded.failures:
        shown = loaded.describe(failure.name)
        console.print(f"[red]problem[/red] {shown}: {failure.reason}", highlight=False)
    if loaded.failures:
        raise typer.Exit(1)


def _plugins_table(loaded: Plugins) -> Table:
    provides: dict[str, list[str]] = {info.name: [] for info in loaded.loaded}
    for hook in HOOKS:
        kind = component_kind(hook)
        for plugin, component in loaded.components_by_plugin(hook):
            provides.setdefault(plugin, []).append(f"{kind} {component.name}")
    table = Table("plugin", "distribution", "version", "provides")
    for info in loaded.loaded:
        source = info.distribution + (" (built-in)" if info.builtin else "")
        table.add_row(info.name, source, info.version, ", ".join(provides[info.name]) or "-")
    return table


def _formats_table(loaded: Plugins) -> Table:
    """Per extension: decoders in the order tried, writers in the order chosen (with
    priorities); mer tags an extension only when it has both."""
    decoders, writers = (loaded.components(hook).values() for hook in BY_EXTENSION)
    extensions = sorted({e for c in (*decoders, *writers) for e in c.extensions})
    table = Table("extension", "decoders (priority)", "tag writers (priority)", "tagged")
    for extension in extensions:
        decoding = _ranked(loaded.decoders(extension))
        writing = _ranked(loaded.tag_writers(extension))
        tagged = (
            "yes" if decoding and writing else "no: no " + ("decoder" if writing else "tag writer")
        )
        table.add_row(extension, decoding or "-", writing or "-", tagged)
    return table


def _ranked(components: list) -> str:
    return ", ".join(f"{c.name} ({c.priority})" for c in components)
