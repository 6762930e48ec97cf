"""The plugin module named by the `mer` entry point: one hook implementation.

Import torch only inside `create`: mer loads every plugin at start-up, and a plugin
that imports heavy libraries at import time slows every `mer` command.
"""

from __future__ import annotations

from mer_plugin.frontend import MUSICNN
from mer_plugin.hookspecs import Backbone, hookimpl


def _create(pretrained: bool):
    from mer_example_backbone.network import TinyCNN

    if pretrained:
        raise ValueError("example-tiny-cnn ships no weights; train it from scratch")
    return TinyCNN().eval()


@hookimpl
def mer_backbones() -> list[Backbone]:
    return [
        Backbone(
            name="example-tiny-cnn",
            create=_create,
            spec=MUSICNN,  # the log-mel front-end it eats: 16 kHz, 96 mels, 3 s segments
            embedding_size=32,
            finetune_groups=("convs", "embedding"),
            description="a tiny two-block CNN (example plugin)",
        )
    ]
