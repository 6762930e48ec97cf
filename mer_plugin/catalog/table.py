"""The results table of `mer analyse`: one row per track, read and written with pyarrow as
Parquet, CSV or JSON lines (by the extension), always whole: a new table is written to a
temporary sibling, synced and renamed over the old one.

A row: the file (its path, printable whatever its bytes; size; mtime_ns), the model,
status ("ok", "skipped": a silent track, or "failed") and reason, and the song's
quadrant, mood, valence, arousal and confidence. Optionally (`timeline=True`) a
`timeline` column: each analysed 3 s segment's start and end (seconds), quadrant,
valence, arousal and confidence; a list of records in Parquet and JSON lines, JSON text
in CSV. A row stays good while the file's path, size, mtime and the model are the same
(`key_of`, `file_key`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from mer_plugin.errors import MerError
from mer_plugin.tagging import shown

SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("model", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("quadrant", pa.string()),
        ("mood", pa.string()),
        ("valence", pa.float64()),
        ("arousal", pa.float64()),
        ("confidence", pa.float64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
SEGMENT = pa.struct(
    [
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("quadrant", pa.string()),
        ("valence", pa.float64()),
        ("arousal", pa.float64()),
        ("confidence", pa.float64()),
    ]
)
TIMELINE = pa.field("timeline", pa.list_(SEGMENT))
FORMATS = (".parquet", ".csv", ".jsonl")
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
Key = tuple[str, int | None, int | None, str]  # path, size, mtime_ns (None: gone), model


class TableError(MerError):
    """A results table cannot be read or written."""


def check_target(out: Path) -> None:
    """Before any work: a known format, into a folder that exists."""
    if out.suffix.lower() not in FORMATS:
        raise TableError(f"{out}: the table must end in {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise TableError(f"{out}: no such folder {out.parent}")


def schema(timeline: bool = False) -> pa.Schema:
    """The table's columns, with the segment timeline or without."""
    return SCHEMA.append(TIMELINE) if timeline else SCHEMA


def read_rows(path: Path, timeline: bool = False) -> list[dict]:
    """The rows of an existing table (none when there is no table yet); with `timeline`,
    each row's timeline (None where the table has none)."""
    if not path.exists():
        return []
    try:
        table = _read(path)
    except (OSError, pa.ArrowException, ValueError) as error:
        raise TableError(f"{path}: cannot read the results table ({error})") from None
    missing = set(COLUMNS) - set(table.column_names)
    if missing:
        raise TableError(f"{path}: not a mer results table (no {', '.join(sorted(missing))})")
    rows = table.select(list(COLUMNS)).cast(SCHEMA).to_pylist()
    if timeline:
        timelines = _timelines(table) or [None] * len(rows)
        for row, segments in zip(rows, timelines, strict=True):
            row["timeline"] = segments
    return rows


def _timelines(table: pa.Table) -> list | None:
    if TIMELINE.name not in table.column_names:
        return None
    column = table.column(TIMELINE.name)
    if pa.types.is_string(column.type):  # CSV: JSON text
        return [None if text is None else json.loads(text) for text in column.to_pylist()]
    return column.cast(TIMELINE.type).to_pylist()


def _read(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".csv":
        types = {field.name: field.type for field in SCHEMA} | {TIMELINE.name: pa.string()}
        options = pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True)
        return pa_csv.read_csv(path, convert_options=options)
    return pa_json.read_json(path)


def write_rows(path: Path, rows: Iterable[dict], timeline: bool = False) -> None:
    """Write the whole table atomically (a partial run never leaves a truncated one);
    with `timeline`, the rows' timelines too."""
    table = pa.Table.from_pylist(list(rows), schema=schema(timeline))
    part = path.with_name(f".{path.name}.part")
    try:
        _write(table, part, path.suffix.lower())
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, path)
    except (OSError, pa.ArrowException) as error:
        raise TableError(f"{path}: cannot write the results table ({error})") from None
    finally:
        part.unlink(missing_ok=True)


def _write(table: pa.Table, part: Path, suffix: str) -> None:
    if suffix == ".parquet":
        pq.write_table(table, part)
    elif suffix == ".csv":
        pa_csv.write_csv(_timeline_as_text(table), part)
    else:
        with open(part, "w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _timeline_as_text(table: pa.Table) -> pa.Table:
    """CSV has no nested values: a timeline is written as JSON text."""
    if TIMELINE.name not in table.column_names:
        return table
    index = table.column_names.index(TIMELINE.name)
    texts = [None if t is None else json.dumps(t) for t in table.column(index).to_pylist()]
    return table.set_column(index, TIMELINE.name, pa.array(texts, pa.string()))


def key_of(row: dict) -> Key:
    return (row["path"], row["size"], row["mtime_ns"], row["model"])


def file_key(path: Path, model: str) -> Key | None:
    """The key a row for `path` must have now; None when the file is gone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (shown(path), info.st_size, info.st_mtime_ns, model)
