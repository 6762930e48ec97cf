"""Models shipped inside the package: one folder each, model.safetensors + model.json."""

from pathlib import Path

SHIPPED_MODELS = Path(__file__).resolve().parent  # the one place that knows where they are
