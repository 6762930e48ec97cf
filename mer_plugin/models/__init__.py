"""Models shipped inside the package: one folder each, model.safetensors + model.json."""
