"""DTW log-mel distance: zero for identical and time-stretched copies, grows with a shift."""

from __future__ import annotations

import numpy as np
import pytest

from voiceconv.evaluation.mel_distance import dtw_log_mel_distance


def _mel(seed: int = 0, frames: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(20, frames)), axis=1) * 0.1 - 3.0


def test_identical_and_stretched_copies_are_at_distance_zero():
    m = _mel()
    assert dtw_log_mel_distance(m, m) == pytest.approx(0.0, abs=1e-12)
    assert dtw_log_mel_distance(m, np.repeat(m, 2, axis=1)) == pytest.approx(0.0, abs=1e-12)


def test_constant_offset_gives_its_euclidean_norm():
    m = _mel()
    # every bin 0.5 higher: each aligned frame pair differs by sqrt(20) * 0.5
    assert dtw_log_mel_distance(m, m + 0.5) == pytest.approx(np.sqrt(20) * 0.5, rel=0.05)
    assert dtw_log_mel_distance(m, m + 1.0) > dtw_log_mel_distance(m, m + 0.5)
