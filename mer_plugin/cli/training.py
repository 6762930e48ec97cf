"""`mer train`, `mer eval` and `mer score`: thin typer commands over `mer_plugin.training`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from mer_plugin.cli.common import ModelOpt, Precision, PrecisionOpt, fail
from mer_plugin.errors import MerError

DatasetArg = Annotated[
    Path,
    typer.Argument(help="A folder of class folders (Q1/ … Q4/) or a CSV manifest."),
]
GroupBy = Annotated[
    str | None,
    typer.Option("--group-by", help="Column of the annotations CSV that groups clips (Artist)."),
]
Annotations = Annotated[
    Path | None,
    typer.Option(help="Annotations CSV (default: DATASET/annotations.csv)."),
]
BackboneOpt = Annotated[
    str,
    typer.Option(
        "--backbone",
        help="Backbone name (`mer plugins`); names joined by '+' are fused (musicnn-msd+mtt).",
    ),
]
Finetune = Annotated[
    int,
    typer.Option(
        help="0: frozen backbone (cached embeddings); k: train its last k layer groups "
        "(a fused backbone: the last k of every part).",
    ),
]
Seed = Annotated[int, typer.Option(help="Seed of every random choice.")]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a setting: NAME=VALUE (repeatable; `mer settings` lists them)."
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(help="Cache folder (default: $MER_CACHE_DIR, $XDG_CACHE_HOME/mer, ~/.cache/mer)."),
]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Extractors = Annotated[
    list[str] | None,
    typer.Option(
        "--extractor",
        metavar="NAME",
        help="A song-level extractor (`mer plugins`, e.g. essentia) whose features stage 2 "
        "adds to the song classifier (segment, sssl; repeatable).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
TrainOnly = Annotated[
    list[Path] | None,
    typer.Option(
        "--add",
        metavar="DATASET",
        help="A labelled dataset with the same classes (folder or manifest) that only "
        "trains: in every training fold, never a test fold (repeatable).",
    ),
]
Unlabelled = Annotated[
    Path | None,
    typer.Option(
        "--unlabelled", metavar="FOLDER", help="Music without labels for sssl's unlabelled branch."
    ),
]


def _more_data(added: list[Path] | None, unlabelled: Path | None, methods: tuple[str, ...]):
    """The train-only datasets and the unlabelled music, loaded; unlabelled music without
    sssl is a usage error."""
    from mer_plugin.datasets import load_dataset, load_unlabelled

    if unlabelled is not None and "sssl" not in methods:
        raise typer.BadParameter(
            "only sssl learns from music without labels", param_hint="--unlabelled"
        )
    train_only = tuple(load_dataset(path) for path in added or ())
    return train_only, load_unlabelled(unlabelled) if unlabelled is not None else None


def _settings(seed: int, finetune: int, device: str, sets: list[str] | None):
    from mer_plugin.training.settings import Settings, SettingsError

    try:
        return Settings(seed=seed, finetune=finetune, device=device).with_overrides(sets or [])
    except SettingsError as error:
        raise typer.BadParameter(str(error)) from None


def _command(ctx: typer.Context) -> str:
    """The command line that reproduces this run, from the parsed parameters."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words.append(str(value))
        elif value is None or not param.opts or param.opts[0] == "--help":
            continue
        elif isinstance(value, bool):
            flags = param.opts if value else param.secondary_opts
            words.extend(flags[:1])
        elif isinstance(value, list | tuple):
            for item in value:
                words.extend([param.opts[0], str(item)])
        else:
            words.extend([param.opts[0], str(value)])
    return shlex.join(words)


def train(
    ctx: typer.Context,
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    method: Annotated[str, typer.Option(help="clip, segment or sssl.")] = "sssl",
    backbone: BackboneOpt = "musicnn-msd",
    group_by: GroupBy = None,
    annotations: Annotations = None,
    finetune: Finetune = 0,
    seed: Seed = 0,
    sets: Sets = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the folder's).")] = None,
    version: Annotated[
        str, typer.Option(help="Model version: MER_MODEL is 'NAME VERSION'; bump it on retraining.")
    ] = "1",
    metrics: Annotated[
        Path | None,
        typer.Option(help="A `mer eval --json` report: its row for METHOD goes into the card."),
    ] = None,
    data_licence: Annotated[
        str, typer.Option(help="The training data's licence terms, for the model card.")
    ] = "",
    extractors: Extractors = None,
    added: TrainOnly = None,
    unlabelled: Unlabelled = None,
    cache_dir: CacheDir = None,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Train METHOD on DATASET and write a model folder (model.safetensors + model.json)."""
    from mer_plugin.datasets import load_dataset
    from mer_plugin.training.progress import Reporter
    from mer_plugin.training.settings import METHODS
    from mer_plugin.training.train import metrics_from_eval, train_model

    if method not in METHODS:
        raise typer.BadParameter(
            f"{method!r} is not one of {', '.join(METHODS)}", param_hint="--method"
        )
    settings = _settings(seed, finetune, device, sets)
    try:
        row = "+".join([method, *(extractors or [])])
        measured = metrics_from_eval(metrics, row) if metrics else None
    except (OSError, KeyError, ValueError) as error:
        raise fail(MerError(f"{metrics}: not a usable eval report: {error}")) from None
    try:
        data = load_dataset(dataset, group_by, annotations)
        train_only, music = _more_data(added, unlabelled, (method,))
        folder = train_model(
            data,
            backbone,
            method,
            settings,
            out,
            cache_dir,
            Reporter(quiet),
            name=name,
            version=version,
            command=_command(ctx),
            metrics=measured,
            data_licence=data_licence,
            extractors=tuple(extractors or ()),
            train_only=train_only,
            unlabelled=music,
        )
    except MerError as error:
        raise fail(error) from None
    trained_on = json.loads((folder / "model.json").read_text())["training_data"]
    for line in trained_on["skipped"]:
        typer.echo(f"skipped {line}", err=True)
    typer.echo(f"{folder}: {method} model on {trained_on['clips']} clips ({backbone})")


def eval_(
    ctx: typer.Context,
    dataset: DatasetArg,
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    run_folds: Annotated[
        int | None, typer.Option(help="Evaluate only the first N folds (quick, partial runs).")
    ] = None,
    group_by: GroupBy = None,
    annotations: Annotations = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated: clip,segment,sssl.")
    ] = "clip,segment,sssl",
    backbone: BackboneOpt = "musicnn-msd",
    finetune: Finetune = 0,
    seed: Seed = 0,
    sets: Sets = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here ('-': stdout).")
    ] = None,
    noise: Annotated[
        str, typer.Option(help="Label-flip rates of the GMM check, comma-separated ('' skips).")
    ] = "0.2,0.4",
    references: Annotated[
        bool, typer.Option(help="Also the frozen-embedding logistic-regression references.")
    ] = True,
    extractors: Extractors = None,
    added: TrainOnly = None,
    unlabelled: Unlabelled = None,
    cache_dir: CacheDir = None,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Cross-validate the methods on DATASET (grouped, stratified folds); print a table."""
    from mer_plugin.datasets import load_dataset
    from mer_plugin.training.evaluate import EvalOptions, evaluate
    from mer_plugin.training.progress import Reporter
    from mer_plugin.training.settings import METHODS

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not chosen or set(chosen) - set(METHODS):
        raise typer.BadParameter(
            f"{methods!r}: choose from {', '.join(METHODS)}", param_hint="--methods"
        )
    try:
        rates = tuple(float(r) for r in noise.split(",") if r.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{noise!r}: expected rates like 0.2,0.4", param_hint="--noise"
        ) from None
    settings = _settings(seed, finetune, device, sets)
    options = EvalOptions(
        folds,
        run_folds,
        chosen,
        references,
        rates,
        command=_command(ctx),
        extractors=tuple(extractors or ()),
    )
    to_stdout = json_out is not None and str(json_out) == "-"
    try:
        if not to_stdout:
            _check_writable(json_out)
        data = load_dataset(dataset, group_by, annotations)
        train_only, music = _more_data(added, unlabelled, chosen)
        reporter = Reporter(quiet or to_stdout)
        report = evaluate(data, backbone, settings, options, cache_dir, reporter, train_only, music)
    except MerError as error:
        raise fail(error) from None
    except OSError as error:  # a cache that cannot be written, a disk that is full
        raise fail(MerError(_os_error(error))) from None
    if to_stdout:
        typer.echo(json.dumps(report, indent=2))
        return
    print_report(report)
    _write_report(json_out, report)


def score(
    dataset: DatasetArg,
    model: ModelOpt = None,
    annotations: Annotations = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the report, with every clip's prediction, here."),
    ] = None,
    precision: PrecisionOpt = Precision.auto,
    quiet: Quiet = False,
) -> None:
    """Score a trained model on DATASET, music it did not learn from: every clip analysed
    as `mer predict` does (no training); print its metrics and confusion matrix."""
    from mer_plugin.datasets import load_dataset
    from mer_plugin.inference import load_model, resolve_model
    from mer_plugin.inference.device import with_precision
    from mer_plugin.training.progress import Reporter
    from mer_plugin.training.score import score_model

    try:
        _check_writable(json_out)
        data = load_dataset(dataset, None, annotations)
        loaded = with_precision(load_model(resolve_model(model)), precision.value)
        report = score_model(loaded, data, Reporter(quiet))
    except MerError as error:
        raise fail(error) from None
    except OSError as error:
        raise fail(MerError(_os_error(error))) from None
    print_score(report)
    _write_report(json_out, report)


def _check_writable(path: Path | None) -> None:
    """Fail before a long run, not after it, when its report cannot be written there."""
    from mer_plugin.safe_write import writable

    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        raise MerError(f"{path}: cannot write the report: no folder {folder}")
    if path.is_dir() or not writable(path if path.exists() else folder):
        raise MerError(f"{path}: cannot write the report there")


def _os_error(error: OSError) -> str:
    said = error.strerror or str(error)
    return f"{error.filename}: {said}" if error.filename else said


def _write_report(path: Path | None, report: dict) -> None:
    """The report as JSON at `path` (after it was printed: a failed write loses nothing
    the terminal does not show)."""
    if path is None:
        return
    try:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise fail(MerError(f"{path}: cannot write: {error.strerror or error}")) from None


def print_score(report: dict) -> None:
    """A score report as two rich tables: the metrics, and the confusion matrix."""
    from rich.console import Console
    from rich.table import Table

    got = report["metrics"]
    keys = ("accuracy", "macro_f1", "valence_accuracy", "arousal_accuracy")
    names = ("accuracy", "macro-F1", "valence acc.", "arousal acc.")
    shown = [(name, key) for name, key in zip(names, keys, strict=True) if key in got]
    title = f"{report['model']} on {report['dataset']}: {report['clips']} clips"
    table = Table(*(name for name, _ in shown), title=title)
    table.add_row(*(f"{got[key]:.3f}" for _, key in shown))
    matrix = Table("true \\ predicted", *report["classes"], title="confusion")
    for name, row in zip(report["classes"], got["confusion"], strict=True):
        matrix.add_row(name, *(str(n) for n in row))
    console = Console()
    console.print(table)
    console.print(matrix)
    _print_skipped(console, report["skipped"])


def _print_skipped(console, skipped: list[str]) -> None:
    if skipped:
        console.print(f"{len(skipped)} clips skipped:", highlight=False)
        for line in skipped:
            console.print(f"  {line}", highlight=False)


def print_report(report: dict) -> None:
    """The results as two rich tables: methods, and the GMM check."""
    from rich.console import Console
    from rich.table import Table

    def cell(row: dict, key: str, scale: float = 1.0, digits: int = 3) -> str:
        if key not in row["mean"]:
            return "-"
        return f"{row['mean'][key] * scale:.{digits}f} ± {row['std'][key] * scale:.{digits}f}"

    protocol = report["protocol"]
    run = "" if protocol["folds_run"] == protocol["folds"] else f" (first {protocol['folds_run']})"
    title = (
        f"{report['dataset']}: {report['clips']} clips, {protocol['folds']} grouped folds{run}, "
        f"backbone {report['backbone']['name']}"
    )
    if "train_only" in report:
        title += f"; + {report['train_only']['clips']} train-only clips"
    if "unlabelled" in report:
        title += f"; + {report['unlabelled']['clips']} unlabelled (sssl)"
    table = Table(
        "method",
        "accuracy",
        "macro-F1",
        "valence acc.",
        "arousal acc.",
        "train s / fold",
        title=title,
    )
    for name, row in report["results"].items():
        keys = ("accuracy", "macro_f1", "valence_accuracy", "arousal_accuracy")
        table.add_row(name, *(cell(row, k) for k in keys), cell(row, "train_seconds", digits=1))
    console = Console()
    console.print(table)
    if report["gmm_check"]:
        columns = ("flipped", "ROC AUC", "in noisy set: flipped", "kept", "AUC, plain loss")
        gmm = Table(*columns, title="GMM check")
        for rate, row in report["gmm_check"].items():
            keys = ("auc", "noisy_share_of_flipped", "noisy_share_of_kept", "auc_plain_loss")
            gmm.add_row(rate, *(cell(row, k) for k in keys))
        console.print(gmm)
    _print_skipped(console, report["skipped"])


def settings() -> None:
    """List every training setting (`--set NAME=VALUE`) with its type, default and meaning."""
    from rich.console import Console
    from rich.table import Table

    from mer_plugin.training.settings import describe_settings

    table = Table("setting", "type", "default", "meaning")
    for row in describe_settings():
        table.add_row(*row)
    Console().print(table)
