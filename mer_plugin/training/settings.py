"""Every training hyperparameter in one place, with its default and where it comes from.

The SSSL defaults follow DivideMix (Li, Socher & Hoi, ICLR 2020), as docs/design.md §1 says:
the SSSL paper's body is not public. A model card records the whole `Settings`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mer_plugin.errors import MerError
from mer_plugin.inference.card import Method
from mer_plugin.kernels.confidence import GMM_MAX_ITER, GMM_REG_COVAR, GMM_TOL

METHODS = tuple(Method)  # clip, segment, sssl


class SettingsError(MerError):
    """A setting has an unknown name or a bad value."""


def setting(default: Any, meaning: str) -> Any:
    """A dataclass field with its one-line meaning, which `mer settings` shows."""
    return field(default=default, metadata={"meaning": meaning})


@dataclass(frozen=True)
class AugmentSettings:
    """The K-view augmentations of `augment.py` (all on log-mel segments)."""

    shift: float = setting(0.5, "segment start jitter, a share of the segment hop each way")
    gain_db: float = setting(6.0, "gain drawn uniformly in +-gain_db, on the mel power")
    freq_masks: int = setting(1, "frequency masks per view")
    freq_mask_bands: int = setting(8, "at most this many adjacent mel bands per mask")
    noise_probability: float = setting(0.5, "share of views with noise mixed in")
    noise_snr_db: tuple[float, float] = setting(
        (20.0, 40.0), "signal-to-noise range of that noise, dB"
    )
    clip_crop: float = setting(0.9, "clip-level views: a random crop of this share of the clip")


@dataclass(frozen=True)
class Settings:
    """Hyperparameters of the three methods; `replace(settings, name=value)` to change one."""

    # --- shared by every method
    seed: int = setting(0, "random seed: folds, initialisation, augmentation, batches")
    finetune: int = setting(0, "0: frozen backbone (cached embeddings); k: train its last k groups")
    frozen_cache: str = setting(
        "float16", "fine-tuning: cache the frozen groups' output (float16, float32) or off"
    )
    pretrained: bool | None = setting(
        None, "start from shipped weights; none: where the backbone has them"
    )
    views: int = setting(3, "views per segment: 1 clean + augmented ones (cached when frozen)")
    augment_training: bool = setting(True, "every method draws a random view per sample")
    hidden: int = setting(256, "head width: Linear(embedding, hidden), ReLU, Dropout, Linear")
    heads: int = setting(1, "heads trained from their own seeds, merged: their logits averaged")
    dropout: float = setting(0.5, "dropout of the head's hidden layer")
    batch_size: int = setting(64, "samples per training step (at least 2)")
    lr: float = setting(1e-3, "learning rate of the head: AdamW, cosine decay over all epochs")
    backbone_lr: float = setting(1e-4, "learning rate of the unfrozen backbone groups")
    weight_decay: float = setting(1e-2, "AdamW weight decay")
    epochs: int = setting(40, "training epochs of segment and sssl")
    clip_epochs: int = setting(200, "training epochs of clip (ten times fewer samples per epoch)")
    device: str = setting("auto", "where training runs: auto, cpu or cuda")
    amp: bool = setting(True, "bfloat16 autocast of a backbone in training, on CUDA")
    # --- sssl (DivideMix defaults unless noted; DivideMix CIFAR-10 warms up for 10 epochs)
    warmup_epochs: int = setting(10, "sssl: epochs of plain cross-entropy first (at most epochs)")
    tau: float = setting(0.5, "sssl: clean-probability threshold of the labelled set, 0-1")
    temperature: float = setting(0.5, "sssl: sharpening of refined labels and pseudo-labels")
    alpha: float = setting(4.0, "sssl: mixup lambda ~ Beta(alpha, alpha), kept >= 0.5")
    # weight of the unlabelled MSE term, after the ramp. DivideMix sets it by noise level:
    # 0 for 20-50 % noise, 25 for 80 %; the GMM finds 15-35 % noisy segments on 4Q, and 25
    # lost 0.1 macro-F1 on inner folds of training clips (docs/results.md), so a small 1
    lambda_u: float = setting(1.0, "sssl: weight of the unlabelled MSE term after the ramp")
    rampup_epochs: int = setting(16, "sssl: epochs over which lambda_u rises after warm-up")
    lambda_kl: float = setting(1.0, "sssl: weight of the two-view KL consistency")
    prior_penalty: bool = setting(True, "sssl: uniform-prior penalty on the mean prediction")
    # the clip-relative loss flags segments that disagree with their clip, not whole
    # clips that are hard (which the plain loss flags; docs/results.md)
    clip_relative_loss: bool = setting(True, "sssl: GMM on each loss minus its clip's mean loss")
    gmm_max_iter: int = setting(GMM_MAX_ITER, "sssl: EM iterations of the 2-component GMM")
    gmm_tol: float = setting(GMM_TOL, "sssl: EM convergence tolerance of the GMM")
    gmm_reg_covar: float = setting(GMM_REG_COVAR, "sssl: variance floor of the GMM")
    min_split: int = setting(8, "sssl: fewer segments on one side: all stay labelled that epoch")
    # --- sssl stage 2 (song classifier on aggregated segment probabilities)
    song_classifier: bool = setting(
        True, "stage 2 classifier; false: the mean segment probabilities"
    )
    stage2_folds: int = setting(4, "stage 2: inner folds for out-of-fold features (0: in-sample)")
    # song_c 0: picked from stage2.SONG_C_GRID by grouped cross-validation on the
    # training songs' out-of-fold features
    song_c: float = setting(1.0, "stage 2: inverse L2 strength (0: chosen by inner folds)")
    # --- segment and sssl: the song's embedding classifier, a logistic regression on the
    # mean and std of a song's segment embeddings, averaged with the song's probabilities
    song_embedding_c: float = setting(
        0.0, "song embedding classifier: inverse L2 strength (0: none; segment, sssl)"
    )
    # --- train-only sets (`--add`)
    added_weight: float = setting(
        1.0, "weight of the --add clips in every loss: the head's and the song classifiers'"
    )
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    def __post_init__(self) -> None:
        rules = (
            (self.views >= 1, f"views={self.views}: at least 1 (the clean view)"),
            (self.heads >= 1, f"heads={self.heads}: at least 1"),
            (
                self.heads == 1 or self.finetune == 0,
                f"heads={self.heads}: an ensemble of heads needs a frozen backbone "
                f"(finetune=0, not {self.finetune}): each head would train its own",
            ),
            (self.finetune >= 0, f"finetune={self.finetune}: 0 or more groups"),
            (
                self.frozen_cache in ("float16", "float32", "off"),
                f"frozen_cache={self.frozen_cache!r}: float16, float32 or off",
            ),
            (self.batch_size >= 2, f"batch_size={self.batch_size}: at least 2"),
            (self.epochs >= 1, f"epochs={self.epochs}: at least 1"),
            (self.clip_epochs >= 1, f"clip_epochs={self.clip_epochs}: at least 1"),
            (
                0 <= self.warmup_epochs <= self.epochs,
                f"warmup_epochs={self.warmup_epochs}: 0 to epochs ({self.epochs}); "
                f"set both, e.g. --set epochs={self.epochs} --set warmup_epochs="
                f"{max(0, min(self.warmup_epochs, self.epochs // 4))}",
            ),
            (0.0 <= self.tau <= 1.0, f"tau={self.tau}: a probability, 0 to 1"),
            (self.temperature > 0, f"temperature={self.temperature}: above 0"),
            (self.alpha > 0, f"alpha={self.alpha}: above 0"),
            (
                self.stage2_folds == 0 or self.stage2_folds >= 2,
                f"stage2_folds={self.stage2_folds}: 0 (in-sample) or at least 2",
            ),
            (self.device in ("auto", "cpu", "cuda"), f"device={self.device!r}: auto, cpu or cuda"),
            (self.song_embedding_c >= 0, f"song_embedding_c={self.song_embedding_c}: 0 or more"),
            (self.added_weight >= 0, f"added_weight={self.added_weight}: 0 or more"),
        )
        broken = [rule for ok, rule in rules if not ok]
        if broken:
            raise SettingsError(f"invalid settings: {'; '.join(broken)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        data = dict(data)
        augment = data.pop("augment", {}) or {}
        if "noise_snr_db" in augment:
            augment["noise_snr_db"] = tuple(augment["noise_snr_db"])
        return cls(**data, augment=AugmentSettings(**augment))

    def with_overrides(self, pairs: list[str]) -> Settings:
        """A copy with ``name=value`` overrides (``augment.gain_db=3`` for augmentations)."""
        top: dict[str, Any] = {}
        aug: dict[str, Any] = {}
        for pair in pairs:
            name, sep, text = pair.partition("=")
            if not sep:
                raise SettingsError(f"--set {pair!r}: expected NAME=VALUE")
            name = name.strip()
            if name.startswith("augment."):
                aug[name[8:]] = _parse(self.augment, name[8:], text)
            else:
                top[name] = _parse(self, name, text)
        augment = replace(self.augment, **aug) if aug else self.augment
        return replace(self, **top, augment=augment)


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every setting, augmentations as `augment.NAME`."""
    rows = []
    for prefix, obj in (("", Settings()), ("augment.", AugmentSettings())):
        for f in fields(obj):
            if f.name != "augment":
                default = getattr(obj, f.name)
                shown = "none" if default is None else str(default).lower()
                if isinstance(default, tuple):
                    shown = ",".join(str(x) for x in default)
                rows.append((prefix + f.name, str(f.type), shown, f.metadata["meaning"]))
    return rows


def _parse(obj: Any, name: str, text: str) -> Any:
    """`text` as the type of field `name` of dataclass `obj`."""
    known = {f.name for f in fields(obj)} - {"augment"}
    if name not in known:
        raise SettingsError(f"unknown setting {name!r} (known: {', '.join(sorted(known))})")
    current = getattr(obj, name)
    text = text.strip()
    try:
        if isinstance(current, bool) or name == "pretrained":
            if text.lower() in ("none", "auto"):
                return None
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if isinstance(current, tuple):
            return tuple(float(part) for part in text.split(","))
        return type(current)(text)
    except ValueError:
        raise SettingsError(f"setting {name}: cannot read {text!r}") from None
