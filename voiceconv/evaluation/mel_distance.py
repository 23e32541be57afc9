"""DTW-aligned log-mel distance: is a converted utterance closer to the target speaker?

For a held-out parallel pair (source utterance, target utterance of the same
sentence) we compare three log-mel sequences against the target's:

* ``source``: the unconverted source (the baseline to beat);
* ``stats``: the source with per-bin mean/variance moved from the source speaker's
  statistics to the target's (what normalisation alone achieves: a model must beat
  this, not just the raw source, to show it learnt more than a spectral shift);
* ``converted``: the model's output.

Distance = mean Euclidean distance between DTW-aligned log-mel frames (natural log
units), computed on frames within ``floor_db`` of each utterance's loudest frame so
that silence does not dominate. No vocoder is involved: this scores the model alone.
"""

from __future__ import annotations

import librosa
import numpy as np


def _active(log_mel: np.ndarray, floor_db: float) -> np.ndarray:
    energy = log_mel.mean(axis=0)
    keep = energy >= energy.max() - floor_db * np.log(10.0) / 20.0
    return log_mel[:, keep] if keep.sum() >= 2 else log_mel


def dtw_log_mel_distance(a: np.ndarray, b: np.ndarray, floor_db: float = 40.0) -> float:
    """Mean Euclidean distance between DTW-aligned frames of two (n_mels, T) log-mels."""
    x, y = _active(np.asarray(a, np.float64), floor_db), _active(np.asarray(b, np.float64), floor_db)
    _, wp = librosa.sequence.dtw(X=x, Y=y, metric="euclidean")
    return float(np.mean(np.linalg.norm(x[:, wp[:, 0]] - y[:, wp[:, 1]], axis=0)))
