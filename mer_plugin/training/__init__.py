"""SSSL training and evaluation (docs/design.md §1).

settings.py  every hyperparameter, with its default and provenance
backbone.py  backbones by name; frozen or with their last k layer groups trainable
cache.py     log-mel frames and frozen embeddings, cached on disk (memory-mapped)
augment.py   the augmented views: time shift, gain, frequency masks, noise
sources.py   head inputs: cached embeddings, or the backbone on the fly
heads.py     the head, song features and the stage-2 song classifier
methods.py   clip, segment and sssl
prepare.py   dataset + backbone + settings -> everything the methods need
evaluate.py  grouped K-fold CV, logistic-regression references, GMM check
train.py     one model on a whole dataset -> a model folder (`mer_plugin.inference`)
"""

from mer_plugin.training.evaluate import EvalOptions, evaluate
from mer_plugin.training.settings import METHODS, AugmentSettings, Settings
from mer_plugin.training.train import train_model

__all__ = ["METHODS", "AugmentSettings", "EvalOptions", "Settings", "evaluate", "train_model"]
