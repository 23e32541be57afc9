"""Tests of voiceconv.audio.processing against closed forms and librosa.

Tones are analysed with a flat-top window FFT (amplitude error < 0.1 %), which is
independent of the resampler and level code under test.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from scipy.signal import windows

from voiceconv.audio.processing import (
    check_finite,
    is_silent,
    loudness_dbfs,
    nonsilent_bounds,
    normalize_loudness,
    normalize_peak,
    peak_dbfs,
    resample,
    trim_silence,
)
from voiceconv.errors import AudioError, ConfigError


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_of(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency, amplitude) of the strongest sinusoid in ``x``."""
    w = windows.flattop(len(x), sym=False)
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * w))
    k = int(np.argmax(spec))
    return k * sr / len(x), 2.0 * spec[k] / w.sum()


def level_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


# --------------------------------------------------------------------------- resample


@pytest.mark.parametrize(
    "orig_sr, target_sr, freq",
    [
        (48000, 16000, 1000.0),
        (44100, 22050, 3000.0),
        (22050, 16000, 440.0),
        (8000, 22050, 1000.0),
        (16000, 48000, 2500.0),
        (96000, 8000, 500.0),
    ],
)
def test_resample_keeps_tone_below_new_nyquist(orig_sr, target_sr, freq):
    x = sine(freq, orig_sr, 0.5, amp=0.6)
    y = resample(x, orig_sr, target_sr)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(x) * target_sr / orig_sr) <= 1
    core = y[len(y) // 8 : -len(y) // 8]  # away from the ends
    f, a = tone_of(core, target_sr)
    assert abs(f - freq) <= 2 * target_sr / len(core)
    assert a == pytest.approx(0.6, rel=5e-3)


@pytest.mark.parametrize(
    "orig_sr, target_sr, freq",
    [(48000, 16000, 12000.0), (48000, 16000, 8500.0), (44100, 22050, 15000.0)],
)
def test_resample_removes_tone_above_new_nyquist(orig_sr, target_sr, freq):
    amp = 0.8
    y = resample(sine(freq, orig_sr, 0.5, amp=amp), orig_sr, target_sr)
    core = y[len(y) // 8 : -len(y) // 8]
    attenuation = level_db(core) - 20 * np.log10(amp / np.sqrt(2))
    assert attenuation < -40.0


def test_upsampling_adds_no_images():
    x = sine(3000.0, 8000, 0.5, amp=0.5)
    y = resample(x, 8000, 32000)
    core = y[len(y) // 8 : -len(y) // 8].astype(np.float64)
    spec = np.abs(np.fft.rfft(core * windows.blackmanharris(len(core)))) ** 2
    freqs = np.fft.rfftfreq(len(core), 1 / 32000)
    above = spec[freqs > 4100].sum() / spec.sum()
    assert 10 * np.log10(above) < -40.0


def test_resample_multichannel_keeps_each_channel():
    x = np.stack([sine(500.0, 44100, 0.5, 0.3), sine(2000.0, 44100, 0.5, 0.7)])
    y = resample(x, 44100, 16000)
    assert y.shape[0] == 2 and y.dtype == np.float32
    assert abs(y.shape[1] - x.shape[1] * 16000 / 44100) <= 1
    for ch, (freq, amp) in enumerate([(500.0, 0.3), (2000.0, 0.7)]):
        core = y[ch, 1000:-1000]
        f, a = tone_of(core, 16000)
        assert abs(f - freq) <= 2 * 16000 / len(core)
        assert a == pytest.approx(amp, rel=5e-3)


def test_resample_same_rate_is_a_float32_copy():
    x = np.linspace(-1, 1, 101)
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x.astype(np.float32))
    y[0] = 5.0
    assert x[0] == -1.0


@pytest.mark.parametrize("bad", [0, -16000, 16000.5, None])
def test_resample_rejects_bad_rates(bad):
    with pytest.raises(ConfigError):
        resample(np.zeros(100, np.float32), bad, 8000)


def test_resample_rejects_3d_arrays():
    with pytest.raises(AudioError, match="shape"):
        resample(np.zeros((2, 2, 100), np.float32), 16000, 8000)


# --------------------------------------------------------------------------- levels


def test_peak_dbfs_closed_form():
    assert peak_dbfs(np.array([0.0, -0.5, 0.25])) == pytest.approx(20 * np.log10(0.5))
    assert peak_dbfs(np.zeros(10)) == float("-inf")


def test_is_silent():
    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(1000))
    assert is_silent(np.zeros(0))
    dither = rng.integers(-1, 2, 16000) / 32768.0  # +-1 LSB of 16-bit PCM
    assert is_silent(dither)
    assert not is_silent(sine(440.0, 16000, 0.1, amp=10 ** (-60 / 20)))
    assert not is_silent(np.array([0.0, 1 / 128]))  # one step of 8-bit PCM


def test_check_finite():
    check_finite(np.ones(10))
    x = np.ones(10, np.float32)
    x[3] = np.nan
    x[7] = np.inf
    with pytest.raises(AudioError) as err:
        check_finite(x, "some/file.wav")
    msg = str(err.value)
    assert "some/file.wav" in msg and "NaN" in msg and "sample 3" in msg and "\n" not in msg


def test_normalize_peak_scales_to_peak():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4000)).astype(np.float32) * 0.1
    before = x.copy()
    y = normalize_peak(x, 0.95)
    assert np.max(np.abs(y)) == pytest.approx(0.95, rel=1e-6)
    ratio = y / np.where(x == 0, 1, x)
    assert np.allclose(ratio[x != 0], ratio[x != 0].flat[0], rtol=1e-5)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("floor", [0.0, 1e-6])
def test_normalize_peak_leaves_silence_alone(floor):
    x = np.full(1000, floor, np.float32)
    y = normalize_peak(x)
    np.testing.assert_array_equal(y, x)
    assert np.all(np.isfinite(y))


def test_loudness_of_a_steady_sine_is_its_rms():
    amp = 0.3
    x = sine(1000.0, 16000, 1.0, amp)
    assert loudness_dbfs(x) == pytest.approx(20 * np.log10(amp / np.sqrt(2)), abs=0.05)


def test_loudness_ignores_silence_and_noise_floor():
    sr, amp = 16000, 0.4
    rng = np.random.default_rng(2)
    tone = sine(700.0, sr, 2.0, amp)
    quiet = np.zeros(sr, np.float32)
    expected = 20 * np.log10(amp / np.sqrt(2))
    x = np.concatenate([quiet, tone, quiet])
    assert loudness_dbfs(x) == pytest.approx(expected, abs=0.3)
    # A room-noise floor (-60 dBFS RMS) in the pauses is gated out as well;
    # plain RMS over everything would read 3 dB lower.
    noisy = x + (rng.standard_normal(len(x)) * 1e-3).astype(np.float32)
    assert level_db(noisy) < expected - 2.5
    assert loudness_dbfs(noisy) == pytest.approx(expected, abs=0.3)


def test_loudness_of_silence_is_minus_inf():
    assert loudness_dbfs(np.zeros(5000)) == float("-inf")


def test_normalize_loudness_hits_target_on_the_speech_part():
    sr = 16000
    tone = sine(300.0, sr, 2.0, 0.05)
    x = np.concatenate([np.zeros(sr // 2, np.float32), tone, np.zeros(sr // 2, np.float32)])
    y = normalize_loudness(x, -23.0)
    assert y.dtype == np.float32
    assert level_db(y[sr // 2 : sr // 2 + len(tone)]) == pytest.approx(-23.0, abs=0.3)
    nz = x != 0
    ratio = y[nz] / x[nz]
    assert np.allclose(ratio, ratio[0], rtol=1e-5)


def test_normalize_loudness_respects_max_peak():
    x = sine(1000.0, 16000, 1.0, 0.1)
    capped = normalize_loudness(x, -1.0)  # needs peak 10**(2.01/20) > 1
    assert np.max(np.abs(capped)) == pytest.approx(1.0, rel=1e-5)
    free = normalize_loudness(x, -1.0, max_peak=None)
    assert level_db(free) == pytest.approx(-1.0, abs=0.02)
    assert np.max(np.abs(free)) == pytest.approx(np.sqrt(2) * 10 ** (-1 / 20), rel=1e-3)


def test_normalize_loudness_leaves_silence_alone():
    x = np.zeros(4000, np.float32)
    np.testing.assert_array_equal(normalize_loudness(x), x)


# --------------------------------------------------------------------------- trimming


def _tone_in_silence(sr: int, noise: float = 0.0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(3)
    lead, tail = int(0.37 * sr), int(0.61 * sr)
    tone = sine(440.0, sr, 0.8, 0.5)
    x = np.concatenate([np.zeros(lead, np.float32), tone, np.zeros(tail, np.float32)])
    if channels > 1:
        x = np.stack([x * (0.5 + 0.5 * c) for c in range(channels)])
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32)


@pytest.mark.parametrize(
    "noise, channels, top_db, frame_length, hop_length",
    [
        (0.0, 1, 40.0, 2048, 512),
        (1e-3, 1, 40.0, 2048, 512),
        (1e-3, 1, 25.0, 1024, 256),
        (3e-4, 2, 60.0, 512, 128),
    ],
)
def test_trim_matches_librosa(noise, channels, top_db, frame_length, hop_length):
    sr = 16000
    x = _tone_in_silence(sr, noise, channels)
    ref, (start, end) = librosa.effects.trim(
        x, top_db=top_db, frame_length=frame_length, hop_length=hop_length
    )
    assert 0 < start and end < x.shape[-1]  # the case actually trims
    assert nonsilent_bounds(x, top_db, frame_length, hop_length) == (start, end)
    ours = trim_silence(x, sr, top_db, frame_length, hop_length, pad_ms=0.0)
    np.testing.assert_array_equal(ours, ref)


def test_trim_pads_beyond_librosa_cut():
    sr, pad_ms = 16000, 50.0
    x = _tone_in_silence(sr)
    _, (start, end) = librosa.effects.trim(x, top_db=40.0)
    pad = int(pad_ms * sr / 1000)
    ours = trim_silence(x, sr, pad_ms=pad_ms)
    np.testing.assert_array_equal(ours, x[start - pad : end + pad])
    # padding never runs past the signal
    whole = trim_silence(x, sr, pad_ms=10_000.0)
    np.testing.assert_array_equal(whole, x)


def test_trim_keeps_digital_silence_whole_like_librosa():
    x = np.zeros(5000, np.float32)
    ref, _ = librosa.effects.trim(x)
    np.testing.assert_array_equal(trim_silence(x, 16000, pad_ms=0.0), ref)
    assert len(trim_silence(x, 16000)) == 5000
