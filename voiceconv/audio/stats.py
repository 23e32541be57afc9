"""Per-speaker log-mel statistics for feature normalisation.

CycleGAN-VC style models train on log-mel frames normalised per speaker and per
mel bin (zero mean, unit variance); conversion de-normalises the generator's
output with the *target* speaker's statistics. :class:`SpeakerStats` holds those
statistics, computes them in one streaming pass over any number of utterances,
and stores them as a small JSON file beside a feature cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from voiceconv.errors import AudioError, ConfigError, FileProblem
from voiceconv.utils.atomic import atomic_write_json

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

#: Smallest standard deviation used by :meth:`SpeakerStats.normalize`. Mel bins
#: that never leave the log floor (e.g. above the band limit of 16 kHz audio
#: resampled to 22.05 kHz) have zero variance; dividing by 1e-5 instead of 0
#: keeps them finite (they are constant, so they normalise to 0).
STD_FLOOR = 1e-5


@dataclass
class SpeakerStats:
    """Mean and standard deviation of log-mel values per mel bin, over ``n_frames`` frames.

    ``std`` is the population standard deviation (``ddof=0``, like ``np.std``) as
    computed, *not* floored; :attr:`scale` (``max(std, STD_FLOOR)``) is what
    :meth:`normalize` divides by, so that statistics can still be merged exactly.
    """

    mean: np.ndarray
    std: np.ndarray
    n_frames: int

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ConfigError(
                f"SpeakerStats: mean {self.mean.shape} and std {self.std.shape} must be equal 1-D shapes"
            )
        if self.n_frames <= 0 or not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise ConfigError("SpeakerStats: need n_frames > 0 and finite mean/std")
        if (self.std < 0).any():
            raise ConfigError("SpeakerStats: std must be >= 0")
        self.n_frames = int(self.n_frames)

    @property
    def n_mels(self) -> int:
        """Number of mel bins."""
        return int(self.mean.shape[0])

    @property
    def scale(self) -> np.ndarray:
        """``std`` floored at :data:`STD_FLOOR` (what :meth:`normalize` divides by)."""
        return np.maximum(self.std, STD_FLOOR)

    # -- computing -------------------------------------------------------------

    @classmethod
    def from_mels(
        cls, mels: Iterable[np.ndarray | torch.Tensor], source: str | os.PathLike[str] | None = None
    ) -> SpeakerStats:
        """Statistics of all frames of ``mels`` (each ``(n_mels, T)``), in one pass.

        Streaming: each utterance is reduced to (count, mean, sum of squared
        deviations) in float64 and merged into the running totals with Chan et
        al.'s pairwise update, so memory does not grow with the corpus and the
        result does not suffer the cancellation of the naive sum-of-squares
        formula. ``source`` (e.g. the cache folder) is only used in error messages.

        Raises :class:`~voiceconv.errors.AudioError` for an empty iterable, a
        non-2-D or non-finite array, or arrays with different ``n_mels``.
        """
        count = 0
        mean: np.ndarray | None = None
        m2: np.ndarray | None = None
        for i, mel in enumerate(mels):
            x = _to_numpy64(mel)
            if x.ndim != 2:
                raise AudioError(source, f"mel #{i} has shape {x.shape}, expected (n_mels, frames)")
            if mean is not None and x.shape[0] != mean.shape[0]:
                raise AudioError(
                    source, f"mel #{i} has {x.shape[0]} bins, earlier ones {mean.shape[0]}"
                )
            n_b = x.shape[1]
            if n_b == 0:
                continue
            if not np.isfinite(x).all():
                raise AudioError(source, f"mel #{i} contains NaN or Inf")
            mean_b = x.mean(axis=1)
            m2_b = np.square(x - mean_b[:, None]).sum(axis=1)
            if mean is None or m2 is None:
                count, mean, m2 = n_b, mean_b, m2_b
                continue
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + np.square(delta) * (count * n_b / total)
            count = total
        if mean is None or m2 is None or count == 0:
            raise AudioError(source, "no mel frames to compute speaker statistics from")
        return cls(mean=mean, std=np.sqrt(m2 / count), n_frames=count)

    def merge(self, other: SpeakerStats) -> SpeakerStats:
        """Statistics of the union of the frames behind ``self`` and ``other``."""
        if other.n_mels != self.n_mels:
            raise ConfigError(f"SpeakerStats.merge: {self.n_mels} vs {other.n_mels} mel bins")
        total = self.n_frames + other.n_frames
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n_frames / total)
        m2 = (
            np.square(self.std) * self.n_frames
            + np.square(other.std) * other.n_frames
            + np.square(delta) * (self.n_frames * other.n_frames / total)
        )
        return SpeakerStats(mean=mean, std=np.sqrt(m2 / total), n_frames=total)

    # -- applying ----------------------------------------------------------------

    def normalize(self, mel: ArrayT) -> ArrayT:
        """``(mel - mean) / scale`` per bin; ``mel`` is ``(..., n_mels, T)``, NumPy or torch.

        Keeps the input's kind, dtype and device.
        """
        mean, scale = self._columns(mel)
        return (mel - mean) / scale

    def denormalize(self, mel: ArrayT) -> ArrayT:
        """Inverse of :meth:`normalize`: ``mel * scale + mean``."""
        mean, scale = self._columns(mel)
        return mel * scale + mean

    def _columns(self, mel: np.ndarray | torch.Tensor) -> tuple[Any, Any]:
        if mel.ndim < 2 or mel.shape[-2] != self.n_mels:
            raise ConfigError(
                f"SpeakerStats: features of shape {tuple(mel.shape)} do not have "
                f"{self.n_mels} mel bins on axis -2"
            )
        mean, scale = self.mean[:, None], self.scale[:, None]
        if isinstance(mel, torch.Tensor):
            dtype = mel.dtype if mel.is_floating_point() else torch.float32
            return (
                torch.as_tensor(mean, dtype=dtype, device=mel.device),
                torch.as_tensor(scale, dtype=dtype, device=mel.device),
            )
        dtype = mel.dtype if np.issubdtype(mel.dtype, np.floating) else np.float64
        return mean.astype(dtype), scale.astype(dtype)

    # -- storing -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON friendly; floats round-trip exactly)."""
        return {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "n_frames": self.n_frames,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeakerStats:
        """Inverse of :meth:`to_dict`; raises ConfigError on missing or unknown keys."""
        keys = {"mean", "std", "n_frames"}
        if set(d) != keys:
            raise ConfigError(f"SpeakerStats: expected keys {sorted(keys)}, got {sorted(d)}")
        return cls(mean=np.asarray(d["mean"]), std=np.asarray(d["std"]), n_frames=d["n_frames"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SpeakerStats:
        """Read a file written by :meth:`save`; any problem is a one-line FileProblem."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileProblem(path, "speaker statistics file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FileProblem(path, f"unreadable speaker statistics: {err}") from None
        if not isinstance(data, dict):
            raise FileProblem(path, "speaker statistics must be a JSON object")
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError, ValueError) as err:
            raise FileProblem(path, f"bad speaker statistics: {err}") from None


def _to_numpy64(mel: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(mel, torch.Tensor):
        mel = mel.detach().cpu().numpy()
    return np.asarray(mel, dtype=np.float64)
