"""F0 extraction on signals whose F0 is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from voiceconv.audio.pitch import F0Track, extract_f0
from voiceconv.errors import AudioError, ConfigError

HOP = 256
FRAME = 1024


def harmonic_tone(f0: float, sr: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """Sum of 10 harmonics with 1/k amplitudes and random phases, plus faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for k in range(1, 11):
        if k * f0 < sr / 2:
            y += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    y *= 0.3 / np.abs(y).max()
    return y + 1e-3 * rng.standard_normal(t.shape)


def interior(track: F0Track) -> slice:
    """Frames whose analysis window lies wholly inside the signal (no edge padding)."""
    edge = FRAME // (2 * HOP) + 1
    return slice(edge, len(track) - edge)


def check_tone(track: F0Track, f0: float, n: int, sr: int) -> None:
    assert len(track) == 1 + n // HOP
    np.testing.assert_allclose(track.times, np.arange(len(track)) * HOP / sr, rtol=1e-12)
    inner = interior(track)
    assert track.voiced[inner].all()
    assert np.all(np.abs(track.f0[inner] / f0 - 1) <= 0.01)
    # NaN exactly where unvoiced.
    assert np.array_equal(np.isnan(track.f0), ~track.voiced)


@pytest.mark.parametrize("sr", [16000, 22050])
@pytest.mark.parametrize("f0", [82.0, 147.3, 261.6, 455.0])
def test_yin_known_tones(sr: int, f0: float) -> None:
    y = harmonic_tone(f0, sr)
    check_tone(extract_f0(y, sr, method="yin", hop_length=HOP, frame_length=FRAME), f0, len(y), sr)


@pytest.mark.slow  # first pyin call in a process JIT-compiles (a few seconds)
@pytest.mark.parametrize("f0", [98.0, 220.0, 390.0])
def test_pyin_known_tones(f0: float) -> None:
    sr = 16000
    y = harmonic_tone(f0, sr, seconds=0.4)
    check_tone(extract_f0(y, sr, hop_length=HOP, frame_length=FRAME), f0, len(y), sr)


@pytest.mark.parametrize("method", ["yin", pytest.param("pyin", marks=pytest.mark.slow)])
def test_silence_and_noise_mostly_unvoiced(method: str) -> None:
    sr = 16000
    silence = np.zeros(sr // 2)
    track = extract_f0(silence, sr, method=method)
    assert not track.voiced.any() and np.isnan(track.f0).all()
    noise = 0.1 * np.random.default_rng(1).standard_normal(sr // 2)
    assert extract_f0(noise, sr, method=method).voiced_fraction <= 0.1


def test_tone_then_silence_voicing_follows() -> None:
    sr = 16000
    y = np.concatenate([harmonic_tone(200.0, sr, 0.5), np.zeros(sr // 2)])
    track = extract_f0(y, sr, method="yin")
    half = len(track) // 2
    assert track.voiced[interior(track)][: half - 5].all()
    assert not track.voiced[half + 3 :].any()


def test_bad_input() -> None:
    with pytest.raises(AudioError, match="1-D"):
        extract_f0(np.zeros((2, 4000)), 16000)
    with pytest.raises(AudioError, match="floating point"):
        extract_f0(np.zeros(4000, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="NaN"):
        extract_f0(np.full(4000, np.nan), 16000, method="yin")
    with pytest.raises(AudioError, match="too short"):
        extract_f0(np.zeros(100), 16000, method="yin")
    with pytest.raises(ConfigError, match="frame_length"):
        extract_f0(np.zeros(8000), 44100, fmin=50.0, method="yin")
    with pytest.raises(ConfigError, match="fmin"):
        extract_f0(np.zeros(8000), 16000, fmin=500.0, fmax=400.0, method="yin")
    with pytest.raises(ConfigError, match="method"):
        extract_f0(np.zeros(8000), 16000, method="crepe")  # type: ignore[arg-type]
