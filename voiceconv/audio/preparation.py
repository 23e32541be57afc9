"""One preparation chain for every waveform a model sees: trim the ends, set the level.

Training features (:mod:`voiceconv.data.cache`), vocoder training data and
conversion all call :class:`Preparation`, so that a file converted later is analysed
the way the training files were: a recording at another level would otherwise land
off the training distribution (every normalised log-mel bin moves by
``log(gain) / std``). Training keeps only the trimmed, level-set samples
(:meth:`Preparation.apply`); conversion (:meth:`Preparation.for_conversion`) sets the
level the same way but remembers where the speech was and the gain it applied, so that
the converted speech goes back to the input's place and loudness
(:meth:`PreparedAudio.restore`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from voiceconv.audio.io import load_audio
from voiceconv.audio.processing import loudness_gain, peak_gain, trim_bounds
from voiceconv.errors import AudioError, ConfigError

#: level normalisations a :class:`Preparation` accepts (``None``: leave the level as is)
NORMALIZE_CHOICES = ("peak", "loudness", None)
#: what :meth:`PreparedAudio.restore` gives the output: the input's level, or the model's
OutputLevel = Literal["input", "model"]
OUTPUT_LEVELS = ("input", "model")


@dataclass(frozen=True)
class Preparation:
    """How audio is cleaned before analysis (stored in caches and checkpoints).

    ``trim_top_db``: leading/trailing audio more than this many dB below the peak is
    cut (``librosa.effects.trim``'s rule plus a 50 ms margin; ``None``: keep all).
    ``normalize``: ``"peak"`` (largest sample to ``peak``), ``"loudness"`` (gated RMS
    to ``loudness_dbfs``) or ``None``. The gain is measured on the trimmed span, which
    is what the training features saw.
    """

    trim_top_db: float | None = 40.0
    normalize: str | None = "peak"
    peak: float = 0.95
    loudness_dbfs: float = -23.0

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_CHOICES:
            raise ConfigError(f"normalize must be peak, loudness or null, got {self.normalize!r}")
        if self.trim_top_db is not None and not self.trim_top_db > 0:
            raise ConfigError(f"trim_top_db must be > 0 or null, got {self.trim_top_db}")
        if not self.peak > 0:
            raise ConfigError(f"peak must be > 0, got {self.peak}")

    # ----------------------------------------------------------- (de)serialising
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preparation:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(d) - known)
        if extra:
            raise ConfigError(f"unknown preparation setting(s): {', '.join(extra)}")
        return cls(**dict(d))

    @classmethod
    def from_data_config(cls, data: Mapping[str, Any]) -> Preparation:
        """The preparation a ``data`` config section asks for (``trim_top_db``, ``normalize``;
        a missing key means none), as training runs and older checkpoints write it."""
        return cls(trim_top_db=data.get("trim_top_db"), normalize=data.get("normalize"))

    @classmethod
    def raw(cls) -> Preparation:
        """No trimming, no level change (checkpoints that stored no preparation)."""
        return cls(trim_top_db=None, normalize=None)

    # ------------------------------------------------------------------ steps
    def span(self, wav: np.ndarray, sample_rate: int) -> tuple[int, int]:
        """``[start, end)`` of the samples kept by trimming (all of them without it)."""
        if self.trim_top_db is None:
            return 0, int(wav.shape[-1])
        return trim_bounds(wav, sample_rate, top_db=float(self.trim_top_db))

    def gain(self, wav: np.ndarray) -> float:
        """The level normalisation's factor for ``wav`` (1.0 without normalisation)."""
        if self.normalize == "peak":
            return peak_gain(wav, self.peak)
        if self.normalize == "loudness":
            return loudness_gain(wav, self.loudness_dbfs)
        return 1.0

    def apply(
        self, wav: np.ndarray, sample_rate: int, path: str | os.PathLike[str] | None = None,
        min_samples: int = 1,
    ) -> np.ndarray:
        """Trimmed, level-set float32 samples (what training uses).

        Raises :class:`~voiceconv.errors.AudioError` naming ``path`` when fewer than
        ``min_samples`` samples are left after trimming.
        """
        start, end = self.span(wav, sample_rate)
        core = np.asarray(wav[..., start:end], dtype=np.float32)
        if core.shape[-1] < min_samples:
            raise AudioError(path, f"{core.shape[-1]} samples left after trimming silence (need {min_samples})")
        return (core * np.float32(self.gain(core))).astype(np.float32)

    def load(
        self, path: str | os.PathLike[str], sample_rate: int, min_samples: int = 1
    ) -> np.ndarray:
        """Read ``path`` (mono, resampled to ``sample_rate``) and :meth:`apply` the chain."""
        wav, rate = load_audio(path, sample_rate, min_samples=min_samples)
        return self.apply(wav, rate, path, min_samples)

    def for_conversion(
        self, wav: np.ndarray, sample_rate: int, path: str | os.PathLike[str] | None = None,
        min_samples: int = 1,
    ) -> PreparedAudio:
        """The level-set speech span of mono ``wav``, with what is needed to put it back."""
        start, end = self.span(wav, sample_rate)
        core = np.asarray(wav[start:end], dtype=np.float32)
        if core.shape[-1] < min_samples:
            raise AudioError(path, f"{core.shape[-1]} samples left after trimming silence (need {min_samples})")
        gain = self.gain(core)
        return PreparedAudio((core * np.float32(gain)).astype(np.float32), start, int(wav.shape[-1]), gain)


@dataclass(frozen=True)
class PreparedAudio:
    """A waveform ready for the model: ``wav`` is the level-set span starting at ``start``
    of an input ``n_samples`` long, multiplied by ``gain``."""

    wav: np.ndarray
    start: int
    n_samples: int
    gain: float

    def restore(self, converted: np.ndarray, level: OutputLevel = "input") -> np.ndarray:
        """The converted span back in place: an output as long as the input, zeros where
        trimming cut silence, at the input's level (``"input"``) or as the model made it
        (``"model"``)."""
        if level not in OUTPUT_LEVELS:
            raise ConfigError(f"output level must be one of {OUTPUT_LEVELS}, got {level!r}")
        seg = np.asarray(converted, dtype=np.float32)
        if level == "input":
            seg = seg / np.float32(self.gain)
        out = np.zeros(self.n_samples, dtype=np.float32)
        n = min(seg.shape[-1], self.n_samples - self.start)
        out[self.start:self.start + n] = seg[:n]
        return out


__all__ = ["NORMALIZE_CHOICES", "OUTPUT_LEVELS", "OutputLevel", "Preparation", "PreparedAudio"]
