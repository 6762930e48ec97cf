"""The front-end a backbone eats: log-mel settings and segmenting, in one spec.

Every backbone declares a `FrontEndSpec`; the kernels in `mer_plugin.kernels`
turn audio into exactly the features that spec describes. The fields mirror
`torchaudio.transforms.MelSpectrogram` so parity can be tested setting by setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["slaney"] | None
LogCompression = Literal["log10_1p", "log", "db", "none"]


@dataclass(frozen=True)
class FrontEndSpec:
    """Log-mel front-end and segmenting settings.

    log compression, applied to the mel power `x`:
      - "log10_1p": log10(1 + log_gain * x)   (musicnn)
      - "log":      ln(x + log_floor)
      - "db":       10 * log10(max(x, log_floor))
      - "none":     x
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    mel_scale: MelScale = "slaney"
    norm: MelNorm = "slaney"
    center: bool = True  # frames centred on t * hop (reflect-padded), as torchaudio
    log: LogCompression = "log10_1p"
    log_gain: float = 10000.0
    log_floor: float = 1e-10
    segment_frames: int = 187  # frames per segment (187 * 256 / 16 kHz ~= 3 s)
    segment_hop_frames: int = 187  # frames between segment starts

    def __post_init__(self) -> None:
        if self.n_fft < 2 or self.hop_length < 1 or self.n_mels < 1:
            raise ValueError(f"invalid front-end sizes: {self}")
        if self.segment_frames < 1 or self.segment_hop_frames < 1:
            raise ValueError(f"invalid segment sizes: {self}")
        nyquist = self.sample_rate / 2
        if not 0 <= self.f_min < (self.f_max or nyquist) <= nyquist:
            raise ValueError(f"need 0 <= f_min < f_max <= {nyquist} Hz: {self}")

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def segment_seconds(self) -> float:
        return self.segment_frames * self.hop_length / self.sample_rate

    @property
    def segment_hop_seconds(self) -> float:
        return self.segment_hop_frames * self.hop_length / self.sample_rate

    @property
    def silence_level(self) -> float:
        """The log-mel value of digital silence (zero power), used to pad short audio."""
        if self.log == "log":
            return math.log(self.log_floor)
        if self.log == "db":
            return 10.0 * math.log10(self.log_floor)
        return 0.0  # log10(1 + gain * 0) and "none"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrontEndSpec:
        return cls(**data)


# MSD-musicnn (Pons & Serra 2019): 16 kHz, 512-point FFT, hop 256, 96 slaney
# mels, log10(1 + 10000 x), 3 s patches.
MUSICNN = FrontEndSpec()
