"""`mer analyse`: a library's emotions as a table (Parquet, CSV, JSON lines), the audio
files untouched; a rerun keeps unchanged files' rows and analyses new and changed ones.
Real files in several formats, the table read back with pyarrow."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mer_cli import mer
from tiny_model import train_tiny_model

from mer_plugin.budget import Budget
from mer_plugin.catalog import COLUMNS, analyse_to_table, read_rows
from mer_plugin.inference import Model, predict_file, read_card, resolve_model
from mer_plugin.tagging import load_for_tagging

FORMATS = ("wav", "flac", "mp3", "ogg")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_for_tagging(train_tiny_model(tmp_path_factory.mktemp("tiny")), "cpu")


@pytest.fixture
def library(make_audio, make_broken, tmp_path: Path) -> Path:
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    for i, fmt in enumerate(FORMATS):
        make_audio(f"lib/sub/{i} ünï.{fmt}", 3.5, kind="noise", seed=i)
    make_broken("lib/broken.flac", "text")
    return tmp_path / "lib"


def digests(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_every_file_is_a_row_and_the_audio_is_untouched(model, library, tmp_path, suffix) -> None:
    before = digests(library)
    out = tmp_path / f"moods{suffix}"
    run = analyse_to_table([library], out, model, jobs=2)
    assert digests(library) == before
    rows = {Path(row["path"]).name: row for row in read_rows(out)}
    assert len(rows) == len(FORMATS) + 1 and (run.analysed, run.failed) == (len(FORMATS), 1)
    broken = rows.pop("broken.flac")
    assert broken["status"] == "failed" and "not a recognised audio file" in broken["reason"]
    for name, row in rows.items():
        expected = predict_file(model, library / "sub" / name)
        assert (row["status"], row["model"], row["quadrant"]) == (
            "ok",
            model.release,
            expected.label,
        )
        assert row["valence"] == pytest.approx(expected.valence, abs=1e-6)
        assert row["size"] == (library / "sub" / name).stat().st_size
    assert not list(tmp_path.glob(".*.part"))


def test_a_rerun_keeps_unchanged_rows_and_redoes_a_changed_file(model, library, tmp_path) -> None:
    out = tmp_path / "moods.parquet"
    analyse_to_table([library], out, model)
    changed = library / "sub" / "1 ünï.flac"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again = analyse_to_table([library], out, model)
    assert (again.kept, again.analysed) == (len(FORMATS), 1)  # broken.flac's row kept too
    rows = pq.read_table(out).to_pylist()
    assert tuple(pq.read_table(out).column_names) == COLUMNS
    assert [r["mtime_ns"] for r in rows if r["path"] == str(changed)] == [
        changed.stat().st_mtime_ns
    ]


def assert_timelines(rows: list[dict], model: Model, library: Path) -> None:
    """Each analysed file's timeline is its prediction's, segment by segment."""
    for row in rows:
        if row["status"] == "failed":
            assert row["timeline"] is None
            continue
        expected = predict_file(model, library / "sub" / Path(row["path"]).name).timeline
        assert [(s["start"], s["end"]) for s in row["timeline"]] == [
            (e.start, e.end) for e in expected
        ]
        for segment, e in zip(row["timeline"], expected, strict=True):
            assert segment["quadrant"] == max(e.probabilities, key=e.probabilities.__getitem__)
            assert segment["valence"] == pytest.approx(
                e.probabilities["Q1"] + e.probabilities["Q4"], abs=1e-6
            )
            assert segment["confidence"] == pytest.approx(e.confidence, abs=1e-6)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_a_timeline_column_holds_every_analysed_segment(model, library, tmp_path, suffix) -> None:
    out = tmp_path / f"moods{suffix}"
    analyse_to_table([library], out, model, timeline=True)
    rows = read_rows(out, timeline=True)
    assert len(rows) == len(FORMATS) + 1
    assert_timelines(rows, model, library)
    again = analyse_to_table([library], out, model, timeline=True)
    assert (again.kept, again.analysed) == (len(FORMATS) + 1, 0)
    assert read_rows(out, timeline=True) == rows


def test_asking_for_a_timeline_redoes_rows_that_have_none(model, library, tmp_path) -> None:
    out = tmp_path / "moods.parquet"
    analyse_to_table([library], out, model)
    assert "timeline" not in pq.read_table(out).column_names
    again = analyse_to_table([library], out, model, timeline=True)
    assert (again.kept, again.analysed) == (1, len(FORMATS))  # the failed row is kept
    assert_timelines(read_rows(out, timeline=True), model, library)
    plain = analyse_to_table([library], out, model)  # and back: the column is dropped
    assert (plain.kept, plain.analysed) == (len(FORMATS) + 1, 0)
    assert tuple(pq.read_table(out).column_names) == COLUMNS


def test_mer_analyse_on_the_shipped_model(library, tmp_path: Path) -> None:
    out = tmp_path / "moods.csv"
    result = mer("analyse", library, "--out", out, env={"MER_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 1, result.stderr  # the broken file is a failed row
    assert f"{out}: {len(FORMATS) + 1} rows ({len(FORMATS)} analysed" in result.stdout
    assert {r["model"] for r in read_rows(out)} == {read_card(resolve_model()).release}
    cache = {"MER_CACHE_DIR": str(tmp_path / "c")}
    result = mer("analyse", library, "--out", out, "--timeline", "-q", env=cache)
    assert (result.returncode, result.stdout) == (1, "")
    timelines = [row["timeline"] for row in read_rows(out, timeline=True)]
    assert sum(t is not None and len(t) == 1 for t in timelines) == len(FORMATS)  # 3.5 s


@pytest.mark.parametrize("name", ["moods.xlsx", "missing/moods.parquet"])
def test_a_bad_table_is_refused_before_any_work(library, tmp_path: Path, name) -> None:
    result = mer("analyse", library, "--out", tmp_path / name)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install ".[ray]")')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_the_ray_engine_gives_the_local_engines_rows(model, library, tmp_path, local_ray) -> None:
    from mer_plugin.catalog.ray_engine import analyse_on_ray

    analyse_to_table([library], tmp_path / "local.parquet", model)
    local = {r["path"]: r for r in read_rows(tmp_path / "local.parquet")}
    out = tmp_path / "ray.parquet"
    run = analyse_on_ray([library], out, model, device="cpu")
    assert out.is_dir() and (run.analysed, run.failed) == (len(FORMATS), 1)
    remote = {r["path"]: r for r in pq.read_table(out).to_pylist()}
    assert remote.keys() == local.keys()
    for path, row in remote.items():  # the failed file too: it loses none of the others
        assert {k: row[k] for k in ("status", "quadrant", "mood", "size", "mtime_ns")} == {
            k: local[path][k] for k in ("status", "quadrant", "mood", "size", "mtime_ns")
        }
        for name in ("valence", "arousal", "confidence"):
            assert row[name] == pytest.approx(local[path][name], abs=1e-5)
    again = analyse_on_ray([library], out, model, device="cpu")
    assert (again.kept, again.analysed) == (len(FORMATS) + 1, 0)


def test_the_ray_engine_writes_the_timeline(model, library, tmp_path, local_ray) -> None:
    from mer_plugin.catalog.ray_engine import analyse_on_ray

    out = tmp_path / "ray.parquet"
    run = analyse_on_ray([library], out, model, device="cpu", timeline=True)
    assert (run.analysed, run.failed) == (len(FORMATS), 1)
    assert_timelines(pq.read_table(out).to_pylist(), model, library)


def test_the_ray_engine_analyses_the_rest_of_a_near_tie(model, make_audio, tmp_path, local_ray):
    """Ray's budget is `mer tag`'s: every third segment, and on a near tie (any margin
    is one, below 1) the rest, decoded again in the model's actor."""
    from mer_plugin.catalog.ray_engine import analyse_on_ray

    (tmp_path / "long").mkdir()
    path = make_audio("long/a.flac", 30.0, kind="noise")
    full = predict_file(model, path)
    budgets = ((Budget(3, near_tie=1.0), slice(None)), (Budget(3), slice(None, None, 3)))
    for i, (budget, picked) in enumerate(budgets):
        out = tmp_path / f"{i}.parquet"
        analyse_on_ray([path.parent], out, model, "cpu", timeline=True, budget=budget)
        (row,) = pq.read_table(out).to_pylist()
        expected = full.timeline[picked]
        assert [s["start"] for s in row["timeline"]] == pytest.approx([e.start for e in expected])
        if budget.near_tie:
            assert row["valence"] == pytest.approx(full.valence, abs=1e-5)


def test_the_ray_engine_without_ray_says_how_to_install_it(library, tmp_path: Path) -> None:
    blocker = tmp_path / "no-ray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('no Ray here')\n")
    out = tmp_path / "moods.parquet"
    result = mer(
        "analyse", library, "--out", out, "--engine", "ray", env={"PYTHONPATH": str(blocker)}
    )
    assert result.returncode == 2 and not out.exists()
    assert result.stderr == 'error: Ray is not installed: pip install "mer-plugin[ray]"\n'


def test_a_silent_track_is_a_skipped_row_in_either_engine(model, make_audio, tmp_path, local_ray):
    from mer_plugin.catalog.ray_engine import analyse_on_ray

    (tmp_path / "lib").mkdir()
    make_audio("lib/song.flac", 3.5, kind="noise")
    make_audio("lib/silence.flac", 10.0, kind="silence")  # digital zeros: no emotion
    local, remote = tmp_path / "local.csv", tmp_path / "ray.parquet"
    runs = (
        analyse_to_table([tmp_path / "lib"], local, model),
        analyse_on_ray([tmp_path / "lib"], remote, model, device="cpu"),
    )
    for run, rows in zip(runs, (read_rows(local), pq.read_table(remote).to_pylist()), strict=True):
        assert (run.analysed, run.skipped, run.failed) == (1, 1, 0)
        (silent,) = [row for row in rows if row["path"].endswith("silence.flac")]
        assert silent["status"] == "skipped" and silent["quadrant"] is None
        assert silent["reason"] == "silent: nothing louder than -80 dBFS, no emotion to hear"
    again = analyse_to_table([tmp_path / "lib"], local, model)
    assert (again.kept, again.analysed, again.skipped) == (2, 0, 1)
    result = mer("analyse", tmp_path / "lib", "--out", local)  # nothing failed: status 0
    assert result.returncode == 0 and "1 skipped (silent), 0 failed" in result.stdout
