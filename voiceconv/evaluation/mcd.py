"""Mel-cepstral distortion (MCD) after DTW, following the literature's convention.

Convention (as in the CycleGAN-VC / VCC evaluations and the common
``pyworld``+``pysptk`` recipes):

* spectral envelope by WORLD CheapTrick on F0 from WORLD Harvest, 5 ms frame period;
* mel-cepstrum by SPTK ``sp2mc`` of order 24 (coefficients c0..c24) with the
  frequency-warping ``alpha`` that best approximates the mel scale at the sample
  rate (``pysptk.util.mcepalpha``: 0.41 at 16 kHz, 0.455 at 22.05 kHz, 0.466 at 24 kHz);
* c0 (energy) is excluded; frames are aligned with DTW (Euclidean on c1..c24);
* ``MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` in dB, averaged over the
  aligned frame pairs.

Leading and trailing silence is trimmed (``top_db=40``) before analysis so that
silence length does not dominate; no other frame selection is made.
Needs the ``eval`` extra (``pyworld``, ``pysptk``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import librosa
import numpy as np

from voiceconv.errors import ConfigError

MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


def _world():
    try:
        import pysptk
        import pyworld
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("MCD needs the 'eval' extra: pip install 'voiceconv[eval]'") from exc
    return pyworld, pysptk


@dataclass(frozen=True)
class WorldFeatures:
    """Per-frame WORLD analysis: F0 (Hz, 0 = unvoiced) and mel-cepstrum (T, order+1)."""

    f0: np.ndarray
    mcep: np.ndarray
    frame_period_ms: float


def world_features(
    wav: np.ndarray, sample_rate: int, order: int = 24, alpha: float | None = None,
    frame_period_ms: float = 5.0, f0_floor: float = 50.0, f0_ceil: float = 600.0, trim_db: float | None = 40.0,
) -> WorldFeatures:
    """F0 (Harvest) and mel-cepstrum (CheapTrick + sp2mc) of a mono waveform."""
    pyworld, pysptk = _world()
    x = np.asarray(wav, dtype=np.float64)
    if trim_db is not None:
        x, _ = librosa.effects.trim(x, top_db=trim_db)
    if alpha is None:
        alpha = float(pysptk.util.mcepalpha(sample_rate))
    f0, t = pyworld.harvest(x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    sp = pyworld.cheaptrick(x, f0, t, sample_rate)
    mc = pysptk.sp2mc(sp, order=order, alpha=alpha)
    return WorldFeatures(f0=f0, mcep=mc, frame_period_ms=frame_period_ms)


def dtw_path(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DTW alignment (Euclidean, standard steps) of (Tx, D) and (Ty, D); returns index arrays."""
    _, wp = librosa.sequence.dtw(X=x.T, Y=y.T, metric="euclidean")
    wp = wp[::-1]
    return wp[:, 0], wp[:, 1]


def mcd_from_mcep(ref: np.ndarray, est: np.ndarray, exclude_c0: bool = True, align: bool = True) -> float:
    """MCD in dB between two mel-cepstra (T, order+1), DTW-aligned on c1.. when ``align``."""
    a = ref[:, 1:] if exclude_c0 else ref
    b = est[:, 1:] if exclude_c0 else est
    if align:
        i, j = dtw_path(a, b)
        a, b = a[i], b[j]
    else:
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
    return float(MCD_CONST * np.mean(np.sqrt(np.sum((a - b) ** 2, axis=1))))


def mcd(ref_wav: np.ndarray, est_wav: np.ndarray, sample_rate: int, order: int = 24) -> float:
    """MCD (dB) between two waveforms at ``sample_rate`` (see the module docstring)."""
    return mcd_from_mcep(
        world_features(ref_wav, sample_rate, order).mcep, world_features(est_wav, sample_rate, order).mcep
    )
