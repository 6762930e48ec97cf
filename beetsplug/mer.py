"""mer for beets: the emotion of music in a beets library (`plugins: mer`).

    beet mer [-f] [-q] [-w | -W] [--device auto|cpu|cuda] [--precision P] [-j N] [QUERY]

Each matching item is analysed by mer's tagging pipeline (`mer_plugin.tagging`:
decoding workers, the model on `--device`), unless it already holds this model's result
or a mood mer did not write (`-f/--force` analyses it anyway). Its mood and numbers
become typed flexible attributes (`mood`, `mer_valence`, `mer_arousal`, `mer_quadrant`,
`mer_confidence`, `mer_model`) and, when beets writes tags (`import.write`, `-w`/`-W`),
file tags through `item.try_write()`: media fields registered here with the keys of
`mer_plugin.tags.FIELDS`, so `beet write` and `mer tag` write the same tags. With
`auto: yes` items are analysed on import. Options: `DEFAULTS`; docs/beets.md.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from optparse import Values
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beets import ui
from beets.dbcore import types
from beets.plugins import BeetsPlugin
from beets.util import displayable_path
from mediafile import MediaField, MediaFile
from mediafile.storage import (
    ASFStorageStyle,
    MP3DescStorageStyle,
    MP3StorageStyle,
    MP4StorageStyle,
    StorageStyle,
)

from mer_plugin.tagging import (
    PRECISIONS,
    MerError,
    Outcome,
    Status,
    TagRun,
    load_for_tagging,
    model_release,
    predict_files,
    skip_reason,
    tag_fields,
)
from mer_plugin.tags import DECIMALS, FIELDS, Field, check_fields, field_named

if TYPE_CHECKING:
    from beets.importer import ImportSession, ImportTask
    from beets.library import Item, Library

    from mer_plugin.inference import Model

# The plugin's options, in one place (docs/beets.md describes each).
DEFAULTS: dict[str, Any] = {
    "auto": True,  # analyse items as they are imported
    "force": False,  # analyse items that hold this model's result or a user's mood
    "quiet": False,  # no line per analysed or skipped item: errors and the summary only
    "model": None,  # a model folder or shipped name; None: the model mer ships
    "device": "auto",  # where the model runs: auto, cpu or cuda
    "precision": "auto",  # how the backbone computes on the CPU: auto, float32, int8, bfloat16
    "workers": 0,  # decoding processes; 0: one per CPU core
}
DEVICES = ("auto", "cpu", "cuda")
HELP = {
    "force": "also analyse items that hold this model's result or a mood mer did not write",
    "quiet": "no line per item: errors and the summary only",
    "device": "where the model runs (default: auto)",
    "precision": "how the backbone computes on the CPU (default: auto, int8 and bfloat16 where "
    "the CPU has them)",
    "workers": "decoding processes (default: one per CPU core)",
}


def attribute(field: Field) -> str:
    """The beets attribute of one of mer's fields: its name in lower case (`mer_valence`)."""
    return field.name.lower()


# ------------------------------------------------------------------ file tags


class _VorbisStyle(StorageStyle):
    """A Vorbis comment (FLAC, Ogg, Opus, Speex): mediafile's plain style minus APE."""

    formats = ["FLAC", "OggOpus", "OggTheora", "OggSpeex", "OggVorbis", "OggFlac"]


class _APEStyle(StorageStyle):
    """An APEv2 item (Monkey's Audio, WavPack, Musepack): mediafile's plain style minus
    Vorbis, whose keys mer spells differently (`Mood`, not `MOOD`)."""

    formats = ["APEv2File", "WavPack", "Musepack", "MonkeysAudio"]


def _id3_style(key: str) -> MP3StorageStyle:
    """The ID3 style of a `tags.FIELDS` key: `TXXX:NAME` or a frame id (`TMOO`)."""
    places = {"float_places": DECIMALS}
    if key.startswith("TXXX:"):
        return MP3DescStorageStyle(key.removeprefix("TXXX:"), **places)
    return MP3StorageStyle(key, **places)


class MerMediaField(MediaField):
    """One of mer's fields in every container mediafile writes, keyed as `tags.FIELDS`.

    ID3 (MP3, WAV, AIFF) as mer's own writer does it: the key of the version the tag is
    saved as (ID3v2.3 for MP3s under beets' `id3v23: yes`, whose `TMOO` frame mutagen
    drops, so the mood goes to `TXXX:MOOD`), and the other version's key too where the
    file has it; reading prefers the ID3v2.4 key."""

    def __init__(self, field: Field) -> None:
        v24 = _id3_style(field.id3v24)
        v23 = v24 if field.id3v23 == field.id3v24 else _id3_style(field.id3v23)
        self.id3 = {4: v24, 3: v23}
        places = {"float_places": DECIMALS}
        super().__init__(
            *dict.fromkeys((v24, v23)),
            MP4StorageStyle(field.mp4, **places),
            _VorbisStyle(field.vorbis, **places),
            _APEStyle(field.ape, **places),
            ASFStorageStyle(field.asf, **places),
            out_type=float if field.unit_interval else str,
        )

    def __set__(self, mediafile: MediaFile, value: object) -> None:
        if value is None:
            value = self._none_value()
        for style in self.styles(mediafile.mgfile):
            if self._writes(style, mediafile):
                style.set(mediafile.mgfile, value)

    def _writes(self, style: StorageStyle, mediafile: MediaFile) -> bool:
        """False for the ID3 key of the other version, unless the file already has it."""
        if style not in self.id3.values() or self.id3[3] is self.id3[4]:
            return True
        saved_as = 3 if mediafile.id3v23 else 4
        return style is self.id3[saved_as] or style.fetch(mediafile.mgfile) is not None


def media_fields() -> dict[str, MerMediaField]:
    """The media field of each of mer's fields, by beets attribute."""
    return {attribute(field): MerMediaField(field) for field in FIELDS}


# ------------------------------------------------------------------ library values


def item_values(fields: Mapping[str, str | float]) -> dict[str, str | float]:
    """A prediction's tags (`tagging.tag_fields`) as beets attributes, the numbers
    rounded as the file tags write them (`tags.DECIMALS`), so database and files agree."""
    values: dict[str, str | float] = {}
    for name, text in check_fields(fields).items():
        field = field_named(name)
        values[attribute(field)] = float(text) if field.unit_interval else text
    return values


def item_fields(item: Item) -> dict[str, str]:
    """mer's fields an item holds, by their logical names (as `tags.read_tags` has them)."""
    found = {}
    for field in FIELDS:
        value = item.get(attribute(field))
        if value is not None and value != "":
            found[field.name] = str(value)
    return found


class UnitNumber(types.NullFloat):
    """A number in [0, 1] shown with the file tags' decimals; blank when missing (not
    "0.000", which is a value)."""

    def __init__(self) -> None:
        super().__init__(DECIMALS)

    def format(self, value: float | None) -> str:
        return "" if value is None else super().format(value)


class MerPlugin(BeetsPlugin):
    """`beet mer` and the import stage: mer's pipeline over beets items."""

    item_types = {attribute(f): UnitNumber() if f.unit_interval else types.STRING for f in FIELDS}

    def __init__(self) -> None:
        super().__init__()
        self.config.add(DEFAULTS)
        self._model: Model | None = None
        self._register_media_fields()
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
            self.register_listener("import_task_files", self.imported_files)
        self._to_write: set[int] = set()  # items analysed on import, for the importer's write

    def _register_media_fields(self) -> None:
        """mer's fields as media fields (once per process); also as *tag* fields, which
        beets computes once from mediafile's own, so that `beet write` compares them."""
        from beets.library import Item

        for name, field in media_fields().items():
            if name not in MediaFile.__dict__:
                self.add_media_field(name, field)
            getattr(Item, "_media_tag_fields", set()).add(name)

    def commands(self) -> list[ui.Subcommand]:
        cmd = ui.Subcommand("mer", help="analyse the mood (valence, arousal) of the audio")
        add = cmd.parser.add_option
        add("-f", "--force", action="store_true", default=None, help=HELP["force"])
        add("-q", "--quiet", action="store_true", default=None, help=HELP["quiet"])
        add("-w", "--write", action="store_true", default=None, help="write tags to files")
        add("-W", "--nowrite", dest="write", action="store_false", help="don't write tags")
        add("--device", choices=DEVICES, help=HELP["device"])
        add("--precision", choices=PRECISIONS, help=HELP["precision"])
        add("-j", "--workers", type="int", help=HELP["workers"])
        cmd.func = self.command
        return [cmd]

    def command(self, lib: Library, opts: Values, args: list[str]) -> None:
        for name in ("force", "quiet", "device", "precision", "workers"):
            if getattr(opts, name) is not None:
                self.config[name] = getattr(opts, name)
        try:
            self.analyse(lib.items(args), write=ui.should_write(opts.write), progress=True)
        except MerError as error:
            raise ui.UserError(f"mer: cannot load the model: {error}") from None

    # ------------------------------------------------------------ import

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """The import stage: analyse the task's items into the database; the importer
        moves or copies the files, then `imported_files` writes their tags."""
        try:
            done = self.analyse(task.imported_items(), write=False, progress=False)
        except MerError as error:
            self._log.error("cannot load the model: {}", error)
            return
        self._to_write |= {item.id for item in done}

    def imported_files(self, session: ImportSession, task: ImportTask) -> None:
        """After the importer moved the files: their tags, where beets writes them (an
        as-is import writes none itself)."""
        write = session.config["write"].get(bool)
        for item in task.imported_items():
            if item.id in self._to_write:
                self._to_write.discard(item.id)
                if write:
                    item.try_write()

    # ------------------------------------------------------------ analysis

    def _loaded(self) -> Model:
        """The configured model, loaded once; MerError when it cannot be."""
        if self._model is None:
            device = self.config["device"].as_choice(DEVICES)
            precision = self.config["precision"].as_choice(PRECISIONS)
            self._model = load_for_tagging(self.config["model"].get(), device, precision)
        return self._model

    def analyse(self, items: Iterable[Item], write: bool, progress: bool) -> list[Item]:
        """Analyse the items that need it, store (and write) their results; the items
        done. A file that fails is logged and the run goes on. The model is loaded only
        when some item needs it; MerError when it cannot be."""
        quiet = self.config["quiet"].get(bool)
        release = model_release(self.config["model"].get())
        todo, skipped = self._todo(release, items, quiet)
        done: list[Item] = []
        seen: list[Outcome] = []
        unwritten: list[Item] = []  # stored, but beets could not write the file (logged)

        def store(outcome: Outcome) -> None:
            seen.append(outcome)
            item, position = todo[outcome.path], f"[{len(seen)}/{len(todo)}]"
            if outcome.status == Status.WOULD_TAG:
                if not self._store(item, outcome, release, write):
                    unwritten.append(item)
                done.append(item)
                if not quiet:
                    self._log.info("{} {}: {}", position, shown(item), _result(outcome))
            elif outcome.status != Status.NOT_DONE:
                self._log.error("{}: {}", shown(item), outcome.reason)

        run = TagRun(release, dry_run=True)
        if todo:
            run = predict_files(list(todo), self._loaded(), _workers(self.config), store)
        if progress or run.interrupted:
            self._log.info("{}", summary(run, skipped, len(unwritten)))
        if run.interrupted:
            raise ui.UserError("mer: interrupted; run `beet mer` again to resume")
        return done

    def _todo(
        self, release: str, items: Iterable[Item], quiet: bool
    ) -> tuple[dict[Path, Item], Counter[str]]:
        """The items to analyse, by path, and the others' reasons to skip them."""
        force = self.config["force"].get(bool)
        todo: dict[Path, Item] = {}
        skipped: Counter[str] = Counter()
        for item in items:
            if reason := skip_reason(item_fields(item), release, force):
                skipped[reason] += 1
                if not quiet:
                    self._log.info("skipped {}: {}", shown(item), reason)
            else:
                todo[item.filepath] = item
        return todo, skipped

    def _store(self, item: Item, outcome: Outcome, release: str, write: bool) -> bool:
        """A prediction into the item's attributes, its file's tags (`write`) and the
        database; False when the file could not be written (beets logs why)."""
        item.update(item_values(tag_fields(outcome, release)))
        written = item.try_write() if write else True
        item.store()
        return written


def shown(item: Item) -> str:
    """An item's path as beets prints paths (undecodable bytes replaced)."""
    return displayable_path(item.path)


def _workers(config: Any) -> int:
    workers = config["workers"].get(int)
    return workers if workers > 0 else os.cpu_count() or 1


def _result(outcome: Outcome) -> str:
    """A prediction in a few words: "Happy (Q1; valence 0.730, arousal 0.610, ...)"."""
    numbers = ", ".join(
        f"{name} {value:.{DECIMALS}f}"
        for name in ("valence", "arousal", "confidence")
        if (value := getattr(outcome, name)) is not None
    )
    return f"{outcome.mood} ({outcome.quadrant}; {numbers})"


def summary(run: TagRun, skipped: Counter[str], unwritten: int = 0) -> str:
    """The run in one line: analysed (by mood), files not written, skipped (by reason),
    failed, not done."""
    moods = ", ".join(f"{mood} {n}" for mood, n in run.moods().most_common())
    parts = [f"{run.count(Status.WOULD_TAG)} analysed" + (f" ({moods})" if moods else "")]
    if unwritten:
        parts.append(f"{unwritten} in the database only (file not written)")
    skipped = skipped + run.reasons(Status.SKIPPED)
    if skipped:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.most_common())
        parts.append(f"{skipped.total()} skipped ({reasons})")
    parts.append(f"{run.count(Status.FAILED)} failed")
    if run.interrupted:
        parts.append(f"{run.count(Status.NOT_DONE)} not done (interrupted)")
    return ", ".join(parts) + f"; model {run.model}"
