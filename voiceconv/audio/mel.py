"""The one log-mel implementation of voiceconv.

:class:`MelConfig` names every setting that changes the numbers a mel frame holds.
It travels with every feature cache, checkpoint and vocoder, and two components
refuse to work together when their configs differ (see :meth:`MelConfig.check_same`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from voiceconv.errors import MelConfigMismatch


@dataclass(frozen=True)
class MelConfig:
    """Settings of the log-mel front end.

    Defaults follow HiFi-GAN / MelGAN practice (22.05 kHz, 1024-point FFT, hop 256,
    80 Slaney-normalised Slaney-scale mel bands from 0 to 8 kHz, magnitude (power 1)
    spectrogram, natural log clamped at 1e-5), so a vocoder trained on these features
    reads the same numbers the VC model writes.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    power: float = 1.0
    center: bool = True
    pad_mode: str = "reflect"
    mel_norm: str | None = "slaney"
    mel_scale: str = "slaney"
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        from voiceconv.errors import ConfigError

        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop_length <= 0:
            raise ConfigError(f"MelConfig: sample_rate, n_fft, hop_length must be > 0: {self}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"MelConfig: win_length {self.win_length} > n_fft {self.n_fft}")
        if self.fmax is not None and self.fmax > self.sample_rate / 2:
            raise ConfigError(
                f"MelConfig: fmax {self.fmax} above Nyquist {self.sample_rate / 2}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML/checkpoint friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            from voiceconv.errors import ConfigError

            raise ConfigError(f"MelConfig: unknown keys {sorted(unknown)}")
        return cls(**dict(d))

    def check_same(self, other: MelConfig, what: str = "input") -> None:
        """Raise :class:`MelConfigMismatch` naming every differing field."""
        diffs = [
            f"{f.name}={getattr(other, f.name)!r} (expected {getattr(self, f.name)!r})"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
        if diffs:
            raise MelConfigMismatch(f"{what} was made with another MelConfig: " + ", ".join(diffs))

    def frames(self, n_samples: int) -> int:
        """Number of mel frames produced for ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.n_fft) // self.hop_length if n_samples >= self.n_fft else 0
