"""The Ray engine: the same analysis as the local engine, on Ray Data, for catalogs beyond
one machine (docs/scale.md).

File listing (here) -> decoding into log-mel segments (Ray tasks, one CPU each) -> the
model (an actor pool: one actor per GPU with `--device cuda`, else per CPU) -> rows ->
one Parquet dataset written by Ray. Ray Data streams: decoded files flow to the model as
they are made and its back-pressure bounds how many wait in the object store, so a
catalog of any size never holds more than a few hundred decoded files at once. A task
that raises is retried by Ray; a file that cannot be decoded is a failed row.

The output is a folder (a Parquet dataset); a rerun keeps the rows of unchanged files
and analyses only new and changed ones, then replaces the folder whole.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mer_plugin.budget import DEFAULT_BUDGET, Budget
from mer_plugin.catalog.local import AnalyseRun, split_done
from mer_plugin.catalog.table import OK, Key, TableError, schema
from mer_plugin.errors import MerError
from mer_plugin.inference.find import ModelError

if TYPE_CHECKING:
    from mer_plugin.inference import Model

INSTALL = 'Ray is not installed: pip install "mer-plugin[ray]"'
BATCH_FILES = 8  # files per model call: their segments go through the backbone together


def ray_module() -> Any:
    """Ray, or a one-line MerError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MerError(INSTALL) from None
    return ray


def analyse_on_ray(
    paths: Iterable[Path],
    out: Path,
    model: Model,
    device: str = "auto",
    address: str | None = None,
    timeline: bool = False,
    budget: Budget = DEFAULT_BUDGET,
    precision: str = "auto",
) -> AnalyseRun:
    """Analyse the files under `paths` on Ray (a running cluster at `address`, else a
    local instance) into the Parquet dataset folder `out`; with `timeline`, each track's
    segment timeline too. The `budget` picks the segments, as for `mer tag`; the actors'
    backbones compute in `precision`, as `load_for_tagging`'s."""
    ray = ray_module()
    if not ray.is_initialized():
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        ray.init(
            address=address,
            log_to_driver=False,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    _quiet(ray)
    run, todo = split_done(paths, _read_dataset(out, timeline), model, timeline)
    items = [_item(path, key) for path, key in todo.items()]
    where = {"device": device, "precision": precision}
    rows = _analyse(ray, items, model, where, timeline, budget) if items else []
    run.rows += rows
    run.analysed = sum(row["status"] == OK for row in rows)
    run.rows.sort(key=lambda row: row["path"])
    _write_dataset(ray, out, run.rows, timeline)
    return run


def _quiet(ray: Any) -> None:
    """Ray Data's progress lines only with --verbose (mer's own summary says the rest)."""
    verbose = logging.getLogger("mer_plugin").isEnabledFor(logging.INFO)
    ray.data.DataContext.get_current().enable_progress_bars = verbose
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def _analyse(
    ray: Any, todo: list[dict], model: Model, where: dict, timeline: bool, budget: Budget
) -> list[dict]:
    from mer_plugin.inference.device import pick_device
    from mer_plugin.tagging.analysis import extras_key

    on_gpu = pick_device(where["device"]) == "cuda"
    gpus = int(ray.cluster_resources().get("GPU", 0)) if on_gpu else 0
    extras = extras_key(model.card)
    decode_args = {"spec": model.spec, "clip": False, "extras": extras, "budget": budget}
    actor_args = {
        "folder": str(model.folder),
        **where,
        "timeline": timeline,
        "budget": budget,
    }
    dataset = ray.data.from_items(todo)
    decoded = dataset.map(_decode, fn_kwargs=decode_args, num_cpus=1)
    cpus = max(1, int(ray.available_resources().get("CPU", 1)))
    pool = ray.data.ActorPoolStrategy(size=gpus or cpus)  # every GPU, else every core
    predicted = decoded.map_batches(
        _Predictor,
        fn_constructor_kwargs=actor_args,
        batch_size=BATCH_FILES,
        batch_format="pandas",
        compute=pool,
        num_gpus=1 if gpus else 0,
    )
    return predicted.take_all()


def _decode(row: dict, spec: Any, clip: bool, extras: Any, budget: Budget) -> dict:
    """A Ray task: one file decoded into the log-mel segments its budget's first pass
    takes, or the reason it failed."""
    from mer_plugin.tagging.analysis import analyse

    result = analyse(row["local_path"], spec, clip, extras, budget)
    if isinstance(result, str):
        failed = {"segments": None, "extras": None, "note": None, "stride": 1}
        return {**row, **failed, "failure": result}
    analysed = {"segments": result.segments, "extras": result.extras, "note": result.note}
    return {**row, **analysed, "stride": result.stride, "failure": None}


class _Predictor:
    """A Ray actor holding the model: rows of decoded files in, result rows out. A file
    whose first pass is a near tie is decoded again here for the rest of its segments."""

    def __init__(
        self, folder: str, device: str, precision: str, timeline: bool, budget: Budget
    ) -> None:
        from mer_plugin.tagging import load_for_tagging

        self.model = load_for_tagging(folder, device, precision)
        self.timeline = timeline
        self.budget = budget

    def __call__(self, batch: Any) -> Any:
        """The rows' segments go through the backbone together (a GPU's batch holds
        segments of several files), each file's probabilities back to its row."""
        import pandas as pd

        from mer_plugin.tagging.run import segment_batcher

        rows = batch.to_dict("records")
        batcher = segment_batcher(self.model)
        for i, row in enumerate(rows):
            if not row["failure"]:
                batcher.add(i, row["segments"])
        return pd.DataFrame([self._row(row, batcher.finish(i)) for i, row in enumerate(rows)])

    def _row(self, row: dict, streamed: Any) -> dict:
        from mer_plugin.catalog.local import result_row
        from mer_plugin.tagging.analysis import Analysis
        from mer_plugin.tagging.run import predict_outcome

        analysis = row["failure"] or Analysis(
            None, 0.0, extras=row["extras"], note=row["note"], stride=int(row["stride"])
        )
        if not row["failure"]:
            analysis, streamed = self._whole_on_a_near_tie(row, analysis, streamed)
        path = Path(row["local_path"])
        outcome = predict_outcome(
            self.model, path, analysis, streamed=streamed, timeline=self.timeline
        )
        key = (row["path"], row["size"], row["mtime_ns"], self.model.release)
        return result_row(key, outcome)

    def _whole_on_a_near_tie(self, row: dict, analysis: Any, streamed: Any) -> tuple[Any, Any]:
        """The first pass, or both passes when the first is a near tie (a failed second
        pass is the row's failure)."""
        from mer_plugin.inference.predict import both_passes, near_tie, song_segments
        from mer_plugin.tagging.analysis import analyse

        stride = analysis.stride
        if stride == 1 or not near_tie(self.model, streamed, analysis.extras, self.budget):
            return analysis, streamed
        spec, path = self.model.spec, row["local_path"]
        rest = analyse(path, spec, False, (), self.budget, rest=True)
        if isinstance(rest, str):
            return rest, None
        try:
            joined = both_passes(streamed, song_segments(self.model, [rest.segments]), stride)
        except ModelError as error:
            return str(error), None
        return replace(analysis, stride=1), joined


def _read_dataset(out: Path, timeline: bool) -> list[dict]:
    if not out.exists():
        return []
    import pyarrow.dataset as pa_dataset

    try:  # a dataset written without a timeline reads as one with none
        dataset = pa_dataset.dataset(out, format="parquet", schema=schema(timeline))
        return dataset.to_table().to_pylist()
    except Exception as error:
        raise TableError(f"{out}: cannot read the results dataset ({error})") from None


def _write_dataset(ray: Any, out: Path, rows: list[dict], timeline: bool) -> None:
    """Written by Ray into a sibling folder, then swapped in whole."""
    import pyarrow as pa

    part, old = out.with_name(f".{out.name}.part"), out.with_name(f".{out.name}.old")
    shutil.rmtree(part, ignore_errors=True)
    table = pa.Table.from_pylist(rows, schema=schema(timeline))
    ray.data.from_arrow(table).write_parquet(str(part))
    if out.exists():
        out.rename(old)
    part.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _item(path: Path, key: Key) -> dict:
    """What a decoding task gets: the path to open, and the row's key as listed."""
    return {"path": key[0], "local_path": str(path), "size": key[1], "mtime_ns": key[2]}
