"""The example third-party plugin (examples/mer-example-backbone), installed for real with
pip into this environment: listed by `mer plugins`, trains and predicts by name, and is
gone once uninstalled."""

from __future__ import annotations

import json

import pytest
from example_packages import install, installed, uninstall
from mer_cli import mer
from synthetic_music import make_dataset

DISTRIBUTION = "mer-example-backbone"


@pytest.fixture
def example_installed():
    with installed(DISTRIBUTION):
        yield


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
    card = json.loads((model / "model.json").read_text())["backbone"]
    assert (card["name"], card["plugin"]) == ("example-tiny-cnn", f"{DISTRIBUTION} 0.1.0")

    predicted = mer("predict", dataset / "Q1" / "Q1_0.wav", "--model", model, "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["label"] in {"Q1", "Q2", "Q3", "Q4"}

    uninstall(DISTRIBUTION)
    assert "example_backbone" not in mer("plugins").stdout
    orphan = mer("predict", dataset / "Q1" / "Q1_0.wav", "--model", model)
    assert orphan.returncode == 1
    assert (
        "needs backbone 'example-tiny-cnn' from the plugin mer-example-backbone 0.1.0, "
        "which is not installed (pip install mer-example-backbone)"
    ) in orphan.stderr
    install(DISTRIBUTION)  # for the fixture
