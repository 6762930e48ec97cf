"""The example third-party plugin (examples/mer-example-backbone), installed for real with
pip into this environment: listed by `mer plugins`, trains and predicts by name, and is
gone once uninstalled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mer_cli import mer
from synthetic_music import make_dataset

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mer-example-backbone"
DISTRIBUTION = "mer-example-backbone"


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


@pytest.fixture
def example_installed():
    if not EXAMPLE.is_dir():
        pytest.skip(f"{EXAMPLE} is absent (not a source checkout)")
    _pip("install", "--no-deps", "--no-build-isolation", str(EXAMPLE))
    try:
        yield
    finally:
        _pip("uninstall", "-y", DISTRIBUTION)


def test_example_backbone_trains_predicts_and_uninstalls(example_installed, tmp_path) -> None:
    listing = mer("plugins")
    assert listing.returncode == 0, listing.stderr
    assert "example_backbone" in listing.stdout and DISTRIBUTION in listing.stdout

    dataset = make_dataset(tmp_path / "data", per_class=2, seconds=6.5)
    model = tmp_path / "model"
    fast = ["--set", "epochs=3", "--set", "warmup_epochs=1", "--set", "views=2"]
    trained = mer(
        "train", dataset, "--method", "segment", "--backbone", "example-tiny-cnn",
        "--finetune", "2", "--out", model, "--cache-dir", tmp_path / "cache", "-q", *fast,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert json.loads((model / "model.json").read_text())["backbone"]["name"] == "example-tiny-cnn"

    predicted = mer("predict", dataset / "Q1" / "Q1_0.wav", "--model", model, "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["label"] in {"Q1", "Q2", "Q3", "Q4"}

    _pip("uninstall", "-y", DISTRIBUTION)
    assert "example_backbone" not in mer("plugins").stdout
    _pip("install", "--no-deps", "--no-build-isolation", str(EXAMPLE))  # for the fixture
