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


@dataclass(frozen=True)
class AugmentSettings:
    """The K-view augmentations of `augment.py` (all on log-mel segments)."""

    shift: float = 0.5  # segment start jitter, as a fraction of the segment hop (each way)
    gain_db: float = 6.0  # gain drawn uniformly in ±gain_db, applied to the mel power
    freq_masks: int = 1  # frequency masks per view
    freq_mask_bands: int = 8  # at most this many adjacent mel bands per mask
    noise_probability: float = 0.5  # share of views with noise mixed in
    noise_snr_db: tuple[float, float] = (20.0, 40.0)  # signal-to-noise range of that noise
    clip_crop: float = 0.9  # clip-level views: a random crop of this share of the clip


@dataclass(frozen=True)
class Settings:
    """Hyperparameters of the three methods; `replace(settings, name=value)` to change one."""

    # --- shared by every method
    seed: int = 0
    finetune: int = 0  # 0: frozen backbone (cached embeddings); k: train its last k groups
    pretrained: bool | None = None  # None: the shipped weights where the backbone has them
    views: int = 3  # views per segment: 0 clean + augmented ones (cached when frozen)
    augment_training: bool = True  # every method draws a random view per sample
    hidden: int = 256  # head: Linear(embedding, hidden) -> ReLU -> Dropout -> Linear
    dropout: float = 0.5
    batch_size: int = 64
    lr: float = 1e-3  # AdamW, cosine decay over all epochs
    backbone_lr: float = 1e-4  # for the unfrozen backbone groups
    weight_decay: float = 1e-2
    epochs: int = 40  # segment and sssl
    clip_epochs: int = 200  # clip: ten times fewer samples per epoch than segments
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bfloat16 autocast of a backbone in training, on CUDA
    # --- sssl (DivideMix defaults unless noted)
    warmup_epochs: int = 10  # plain cross-entropy first (DivideMix CIFAR-10: 10)
    tau: float = 0.5  # clean-probability threshold of the labelled set
    temperature: float = 0.5  # sharpening of refined labels and pseudo-labels
    alpha: float = 4.0  # mixup lambda ~ Beta(alpha, alpha), lambda = max(lambda, 1 - lambda)
    # weight of the unlabelled MSE term, after the ramp. DivideMix sets it by noise level:
    # 0 for 20-50 % noise, 25 for 80 %; the GMM finds 15-35 % noisy segments on 4Q, and 25
    # lost 0.1 macro-F1 on inner folds of training clips (docs/results.md), so a small 1
    lambda_u: float = 1.0
    rampup_epochs: int = 16  # lambda_u rises linearly over this many epochs after warm-up
    lambda_kl: float = 1.0  # weight of the two-view KL consistency (not in DivideMix)
    prior_penalty: bool = True  # DivideMix's uniform-prior penalty on the mean prediction
    # GMM on each loss minus its clip's mean loss: segments that disagree with their clip,
    # not whole clips that are hard (which the plain loss flags; docs/results.md)
    clip_relative_loss: bool = True
    gmm_max_iter: int = GMM_MAX_ITER
    gmm_tol: float = GMM_TOL
    gmm_reg_covar: float = GMM_REG_COVAR
    min_split: int = 8  # fewer segments than this on one side: all stay labelled this epoch
    # --- sssl stage 2 (song classifier on aggregated segment probabilities)
    song_classifier: bool = True  # False: the song is the mean of its segment probabilities
    stage2_folds: int = 4  # inner grouped folds for out-of-fold training features (0: in-sample)
    # inverse L2 strength of the logistic regression; 0: picked from heads.SONG_C_GRID by
    # grouped cross-validation on the training songs' out-of-fold features
    song_c: float = 1.0
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    def __post_init__(self) -> None:
        checks = {
            "views": self.views >= 1,
            "finetune": self.finetune >= 0,
            "batch_size": self.batch_size >= 2,
            "epochs": self.epochs >= 1 and self.clip_epochs >= 1,
            "warmup_epochs": 0 <= self.warmup_epochs <= self.epochs,
            "tau": 0.0 <= self.tau <= 1.0,
            "temperature": self.temperature > 0,
            "alpha": self.alpha > 0,
            "stage2_folds": self.stage2_folds == 0 or self.stage2_folds >= 2,
            "device": self.device in ("auto", "cpu", "cuda"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SettingsError(f"invalid settings: {', '.join(bad)} ({self})")

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
