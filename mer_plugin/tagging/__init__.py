"""`mer tag`'s engine: decide, analyse, predict and write, for a whole library, resumably.

    model = load_for_tagging(None, device="auto")  # the shipped default model
    model = ModelOnDemand(None)  # or: its card now, its weights when a file needs them
    run = tag_library(walk([Path("~/Music").expanduser()]), model, TagOptions(jobs=2))
    run.outcomes  # one per file: tagged | would tag | skipped | failed | not done (+ reason)

Per file: the policy (`policy.py`) decides in the main process (results cache, tags
already written by this model, a mood the user set, read-only file); `analysis.py`
decodes the file and cuts its log-mel segments, in worker processes (`workers.py`) a few
files ahead, or inline with one job; the run loop (`run.py`) predicts in the main process
on the model's device, checks the file did not change meanwhile, writes the tags
(`tags.write_tags`: a copy renamed over the original) and records the result in the
results cache (`results_cache.py`). One file's failure is its outcome; the run goes on.

Ctrl-C (SIGINT, `interrupts.py`) stops the run between two steps, or at once while a file
is decoded inline or predicted; never inside a file's tag write and its cache row. So
every file is fully tagged (and cached) or untouched; worker processes are terminated,
the run is marked interrupted and the files not reached are listed as "not done". A
later run resumes: what was tagged is skipped. Outcomes and reports: `outcomes.py`.

An application that keeps the results itself (the beets plugin, `beetsplug/mer.py`)
decides with `skip_reason` from the fields it holds and the model's `model_release`
(read without loading the model), and gets predictions through the same pipeline,
writing nothing, from `predict_files`; `tag_fields` makes them tags.
"""

from mer_plugin.backbones import PRECISIONS  # what load_for_tagging's precision takes
from mer_plugin.errors import MerError
from mer_plugin.library import walk
from mer_plugin.tagging.analysis import analyse
from mer_plugin.tagging.outcomes import (
    BUSY,
    CACHED,
    CHANGED,
    HARD_LINKED,
    OWN_MOOD,
    REPORT_SUFFIXES,
    SAME_MODEL,
    VANISHED,
    WORKER_DIED,
    HardLinks,
    Outcome,
    Status,
    TagOptions,
    TagRun,
    shown,
    write_report,
)
from mer_plugin.tagging.policy import skip_reason
from mer_plugin.tagging.results_cache import CACHE_FILE
from mer_plugin.tagging.run import (
    ModelOnDemand,
    Tagger,
    load_for_tagging,
    model_id,
    model_release,
    predict_files,
    tag_fields,
    tag_library,
)

__all__ = [
    "BUSY",
    "CACHED",
    "CACHE_FILE",
    "CHANGED",
    "HARD_LINKED",
    "HardLinks",
    "MerError",
    "ModelOnDemand",
    "OWN_MOOD",
    "PRECISIONS",
    "REPORT_SUFFIXES",
    "SAME_MODEL",
    "VANISHED",
    "WORKER_DIED",
    "Outcome",
    "Status",
    "TagOptions",
    "TagRun",
    "Tagger",
    "analyse",
    "load_for_tagging",
    "model_id",
    "model_release",
    "predict_files",
    "shown",
    "skip_reason",
    "tag_fields",
    "tag_library",
    "walk",
    "write_report",
]
