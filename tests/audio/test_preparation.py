"""The one preparation chain, against librosa's trim and closed-form levels."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from voiceconv.audio.preparation import Preparation
from voiceconv.errors import AudioError, ConfigError

SR = 16000


def _signal() -> np.ndarray:
    t = np.arange(SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(SR)
    return np.concatenate([np.zeros(6000), tone, np.zeros(5000)]).astype(np.float32)


def test_apply_is_librosa_trim_then_peak() -> None:
    x = _signal()
    prep = Preparation(trim_top_db=40.0, normalize="peak", peak=0.9)
    _, (start, end) = librosa.effects.trim(x, top_db=40.0)
    pad = int(0.05 * SR)
    expected = x[max(0, start - pad): end + pad]
    expected = expected * (0.9 / np.max(np.abs(expected)))
    np.testing.assert_allclose(prep.apply(x, SR), expected, atol=1e-6)


def test_for_conversion_round_trip_puts_the_span_back_at_the_input_level() -> None:
    x = 0.1 * _signal()
    prep = Preparation(trim_top_db=40.0, normalize="peak")
    p = prep.for_conversion(x, SR)
    assert np.max(np.abs(p.wav)) == pytest.approx(0.95)
    back = p.restore(p.wav)
    np.testing.assert_allclose(back[p.start:p.start + p.wav.size], x[p.start:p.start + p.wav.size], atol=1e-6)
    assert back.size == x.size and not back[: p.start].any()
    np.testing.assert_allclose(p.restore(p.wav, "model")[p.start:p.start + 10], p.wav[:10])


def test_loudness_gain_reaches_the_target() -> None:
    from voiceconv.audio.processing import loudness_dbfs

    out = Preparation(trim_top_db=None, normalize="loudness", loudness_dbfs=-30.0).apply(_signal(), SR)
    assert loudness_dbfs(out) == pytest.approx(-30.0, abs=0.01)


def test_settings_round_trip_and_errors() -> None:
    prep = Preparation(trim_top_db=30.0, normalize="loudness")
    assert Preparation.from_dict(prep.to_dict()) == prep
    with pytest.raises(ConfigError, match="unknown"):
        Preparation.from_dict({"trim_top_db": 30.0, "gain": 2})
    with pytest.raises(ConfigError, match="normalize"):
        Preparation(normalize="rms")
    with pytest.raises(AudioError, match="after trimming"):
        Preparation().apply(_signal()[:7000], SR, path="x.wav", min_samples=4096)
