"""Tests of voiceconv.audio.io: known signals written with soundfile, every malformed input.

Test audio is generated here (sines of known frequency and amplitude, integer PCM
of known values) and written straight through soundfile, so what ``load_audio``
returns is checked against closed forms, not against itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import windows

from voiceconv.audio.io import AudioInfo, audio_info, load_audio, save_audio
from voiceconv.errors import AudioError


def sine(freq: float, sr: int, seconds: float = 0.25, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def tone_of(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency, amplitude) of the strongest sinusoid (flat-top window, < 0.1 % error)."""
    w = windows.flattop(len(x), sym=False)
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64) * w))
    k = int(np.argmax(spec))
    return k * sr / len(x), 2.0 * spec[k] / w.sum()


def assert_tone(x: np.ndarray, sr: int, freq: float, amp: float, amp_tol: float) -> None:
    f, a = tone_of(x, sr)
    assert abs(f - freq) <= 2 * sr / len(x), (f, freq)
    assert abs(a - amp) <= amp_tol, (a, amp)


def assert_audio_error(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    """The error is an AudioError on one line naming ``path`` and the problem."""
    assert isinstance(err.value, AudioError)
    msg = str(err.value)
    assert str(path) in msg
    for word in words:
        assert word in msg, (word, msg)
    assert "\n" not in msg and "\r" not in msg


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    "ext, subtype, step",
    [
        ("wav", "PCM_U8", 2.0**-7),
        ("wav", "PCM_16", 2.0**-15),
        ("wav", "PCM_24", 2.0**-23),
        ("wav", "PCM_32", 2.0**-31),
        ("wav", "FLOAT", 0.0),
        ("wav", "DOUBLE", 0.0),
        ("flac", "PCM_16", 2.0**-15),
        ("flac", "PCM_24", 2.0**-23),
    ],
)
def test_loads_every_pcm_depth(tmp_path, ext, subtype, step):
    sr, freq, amp = 16000, 1000.0, 0.5
    x = sine(freq, sr, amp=amp)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, x, sr, subtype=subtype)
    wav, rate = load_audio(path)
    assert rate == sr and wav.dtype == np.float32 and wav.shape == x.shape
    # sample-wise: within one quantisation step (plus float32 rounding)
    assert np.max(np.abs(wav - x)) <= step + 1e-6
    assert_tone(wav, sr, freq, amp, amp_tol=2 * step + 1e-3)


def test_int16_samples_scale_by_32768(tmp_path):
    ints = np.array([0, 1, -1, 16384, -16384, 32767, -32768, 1234], dtype=np.int16)
    ints = np.tile(ints, 10)
    path = tmp_path / "ints.wav"
    sf.write(path, ints, 8000, subtype="PCM_16")
    wav, _ = load_audio(path)
    np.testing.assert_array_equal(wav, ints.astype(np.float32) / 32768.0)


def test_int32_samples_scale_by_2_31(tmp_path):
    ints = np.array([0, 1 << 20, -(1 << 30), 2**31 - 1, -(2**31), 123456789], dtype=np.int32)
    path = tmp_path / "ints32.wav"
    sf.write(path, np.tile(ints, 10), 8000, subtype="PCM_32")
    wav, _ = load_audio(path)
    expected = (np.tile(ints, 10).astype(np.float64) / 2.0**31).astype(np.float32)
    np.testing.assert_allclose(wav, expected, rtol=0, atol=2e-7)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 44100, 48000, 96000])
def test_loads_every_sample_rate(tmp_path, sr):
    freq = 1000.0
    path = tmp_path / f"tone_{sr}.wav"
    sf.write(path, sine(freq, sr, amp=0.4), sr, subtype="PCM_16")
    wav, rate = load_audio(path)
    assert rate == sr and len(wav) == int(round(0.25 * sr))
    assert_tone(wav, sr, freq, 0.4, amp_tol=1e-3)


@pytest.mark.parametrize("fmt, subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_loads_lossy_formats(tmp_path, fmt, subtype):
    sr, freq, amp = 44100, 1000.0, 0.5
    path = tmp_path / f"tone.{fmt.lower()}"
    try:
        sf.write(path, sine(freq, sr, seconds=0.5, amp=amp), sr, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    wav, rate = load_audio(path)
    assert rate == sr and wav.dtype == np.float32 and wav.ndim == 1
    core = wav[len(wav) // 4 : -len(wav) // 4]  # skip codec delay and padding
    assert_tone(core, sr, freq, amp, amp_tol=0.03 * amp)


def test_stereo_downmix_is_channel_mean(tmp_path):
    sr = 16000
    left, right = sine(500.0, sr, amp=0.6), sine(2000.0, sr, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="FLOAT")
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, len(left))
    assert_tone(both[0], sr, 500.0, 0.6, amp_tol=1e-3)
    assert_tone(both[1], sr, 2000.0, 0.2, amp_tol=1e-3)


def test_multichannel_keeps_channel_order(tmp_path):
    sr, freqs = 22050, [300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0]
    chans = np.stack([sine(f, sr, amp=0.1 + 0.1 * i) for i, f in enumerate(freqs)], axis=1)
    path = tmp_path / "six.flac"
    sf.write(path, chans, sr, subtype="PCM_24")
    wav, _ = load_audio(path, mono=False)
    assert wav.shape == (6, chans.shape[0])
    for i, f in enumerate(freqs):
        assert_tone(wav[i], sr, f, 0.1 + 0.1 * i, amp_tol=1e-3)


def test_mono_file_with_mono_false_is_one_row(tmp_path):
    path = tmp_path / "mono.wav"
    sf.write(path, sine(440.0, 16000), 16000)
    wav, _ = load_audio(path, mono=False)
    assert wav.shape == (1, 4000)


def test_float_file_beyond_full_scale_is_clipped(tmp_path):
    x = sine(100.0, 8000, amp=1.5)
    path = tmp_path / "hot.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    wav, _ = load_audio(path)
    np.testing.assert_allclose(wav, np.clip(x, -1, 1), atol=1e-6)


@pytest.mark.parametrize("file_sr, target_sr", [(44100, 22050), (48000, 16000), (8000, 22050)])
def test_resamples_on_request(tmp_path, file_sr, target_sr):
    freq, amp = 1000.0, 0.5
    path = tmp_path / "tone.wav"
    sf.write(path, sine(freq, file_sr, seconds=0.5, amp=amp), file_sr, subtype="FLOAT")
    wav, rate = load_audio(path, target_sr)
    assert rate == target_sr and wav.dtype == np.float32
    assert abs(len(wav) - 0.5 * target_sr) <= 1
    core = wav[len(wav) // 8 : -len(wav) // 8]
    assert_tone(core, target_sr, freq, amp, amp_tol=3e-3)


def test_resampling_removes_content_above_new_nyquist(tmp_path):
    path = tmp_path / "high.wav"
    sf.write(path, sine(12000.0, 48000, amp=0.8), 48000, subtype="FLOAT")
    wav, _ = load_audio(path, 16000, allow_silent=True)  # nothing audible is left
    core = wav[500:-500].astype(np.float64)
    assert 20 * np.log10(np.sqrt(2 * np.mean(core**2)) / 0.8 + 1e-30) < -40


def test_allow_silent_returns_zeros(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(1000), 16000)
    wav, _ = load_audio(path, allow_silent=True)
    assert wav.shape == (1000,) and not wav.any()


# --------------------------------------------------------------------------- malformed input


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "not found")


def test_directory(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "empty file", "0 bytes")


@pytest.mark.parametrize("ext, keep", [("wav", 20), ("wav", 36), ("flac", 30), ("ogg", 40)])
def test_truncated_header(tmp_path, ext, keep):
    full = tmp_path / f"full.{ext}"
    sf.write(full, sine(440.0, 16000), 16000)
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(full.read_bytes()[:keep])
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "truncated or corrupt header")


def test_corrupt_data_after_a_good_header(tmp_path):
    full = tmp_path / "full.flac"
    sf.write(full, sine(440.0, 16000, seconds=1.0), 16000)
    data = bytearray(full.read_bytes())
    path = tmp_path / "broken.flac"
    path.write_bytes(bytes(data[: len(data) // 2]))  # cut mid-stream
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "corrupt or truncated audio data")


def test_header_without_samples(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, sine(440.0, 16000), 16000, subtype="PCM_16")
    path = tmp_path / "header_only.wav"
    path.write_bytes(full.read_bytes()[:44])  # canonical 44-byte header, no data
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "no audio samples")


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not a recording\n" * 20)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "not an audio file")


def test_png_renamed_wav(tmp_path):
    path = tmp_path / "picture.wav"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "not an audio file", "PNG")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096).replace(b"RIFF", b"xxxx"))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "not an audio file", "unrecognised format")


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_samples(tmp_path, bad, word):
    x = sine(440.0, 16000)
    x[123] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "non-finite", word, "sample 123")


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_all_silent(tmp_path, subtype):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000), 16000, subtype=subtype)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "silent")


def test_silent_after_downmix(tmp_path):
    x = sine(440.0, 16000)
    path = tmp_path / "antiphase.wav"
    sf.write(path, np.stack([x, -x], axis=1), 16000, subtype="PCM_16")
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "silent after downmix")
    both, _ = load_audio(path, mono=False)  # each channel on its own is fine
    assert both.shape == (2, len(x))


def test_shorter_than_min_samples(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, sine(440.0, 16000, seconds=0.03), 16000)  # 480 samples
    assert load_audio(path, min_samples=480)[0].shape == (480,)
    with pytest.raises(AudioError) as err:
        load_audio(path, min_samples=1024)
    assert_audio_error(err, path, "too short", "480 samples", "1024")


def test_min_samples_counts_after_resampling(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, sine(440.0, 16000, seconds=0.1), 16000)  # 1600 samples
    assert len(load_audio(path, min_samples=1024)[0]) == 1600
    with pytest.raises(AudioError) as err:
        load_audio(path, 8000, min_samples=1024)  # 800 samples at 8 kHz
    assert_audio_error(err, path, "too short", "800 samples")


@pytest.mark.parametrize("sr", [500, 999, 384001, 1_000_000])
def test_absurd_sample_rate_in_file(tmp_path, sr):
    path = tmp_path / f"rate_{sr}.wav"
    sf.write(path, sine(100.0, 8000), sr)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert_audio_error(err, path, "sample rate", str(sr), "outside")
    with pytest.raises(AudioError) as err:
        audio_info(path)
    assert_audio_error(err, path, "sample rate", str(sr))


@pytest.mark.parametrize("sr", [0, 100, 999, 400_000, 22050.5])
def test_absurd_requested_sample_rate(tmp_path, sr):
    path = tmp_path / "fine.wav"
    sf.write(path, sine(100.0, 8000), 8000)
    with pytest.raises(AudioError) as err:
        load_audio(path, sr)
    assert_audio_error(err, path, "requested sample rate")


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of permissions")
    path = tmp_path / "locked.wav"
    sf.write(path, sine(100.0, 8000), 8000)
    path.chmod(0)
    try:
        with pytest.raises(AudioError) as err:
            load_audio(path)
        assert_audio_error(err, path, "cannot be read")
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------- audio_info


def test_audio_info_reads_header(tmp_path):
    path = tmp_path / "stereo.flac"
    sf.write(path, np.zeros((12345, 2)) + 0.1, 22050, subtype="PCM_24")
    info = audio_info(path)
    assert info == AudioInfo(
        sample_rate=22050,
        channels=2,
        frames=12345,
        duration=pytest.approx(12345 / 22050),
        format="FLAC",
        subtype="PCM_24",
    )


def test_audio_info_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError) as err:
        audio_info(missing)
    assert_audio_error(err, missing, "not found")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError) as err:
        audio_info(empty)
    assert_audio_error(err, empty, "empty file")
    text = tmp_path / "text.flac"
    text.write_text("hello\n" * 100)
    with pytest.raises(AudioError) as err:
        audio_info(text)
    assert_audio_error(err, text, "not an audio file")
    full = tmp_path / "full.wav"
    sf.write(full, sine(440.0, 16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:20])
    with pytest.raises(AudioError) as err:
        audio_info(cut)
    assert_audio_error(err, cut, "truncated or corrupt header")
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(full.read_bytes()[:44])
    with pytest.raises(AudioError) as err:
        audio_info(header_only)
    assert_audio_error(err, header_only, "no audio samples")


# --------------------------------------------------------------------------- saving


def test_save_pcm16_round_trip(tmp_path):
    x = sine(440.0, 16000, amp=0.7).astype(np.float32)
    path = save_audio(tmp_path / "out.wav", x, 16000)
    assert path == tmp_path / "out.wav"
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        16000,
        1,
    )
    ints, _ = sf.read(path, dtype="int16")
    # libsndfile maps [-1, 1] onto the int16 range (x * 32768, saturating at 32767)
    expected = np.clip(x.astype(np.float64) * 32768, -32768, 32767)
    assert np.max(np.abs(ints - expected)) <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temp files left


def test_save_float_and_flac(tmp_path):
    x = np.stack([sine(440.0, 22050, amp=0.3), sine(880.0, 22050, amp=0.6)]).astype(np.float32)
    save_audio(tmp_path / "out.wav", x, 22050, subtype="FLOAT")
    back, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert sr == 22050
    np.testing.assert_array_equal(back.T, x)
    save_audio(tmp_path / "out.flac", x, 22050, subtype="PCM_24")
    back, _ = sf.read(tmp_path / "out.flac", dtype="float64")
    assert sf.info(tmp_path / "out.flac").format == "FLAC"
    np.testing.assert_allclose(back.T, x, atol=2.0**-22)


def test_save_clips_to_full_scale(tmp_path):
    x = np.array([0.0, 1.5, -2.0, 0.5, 1.0, -1.0] * 10, dtype=np.float32)
    save_audio(tmp_path / "hot.wav", x, 8000)
    ints, _ = sf.read(tmp_path / "hot.wav", dtype="int16")
    expected = np.clip(np.clip(x, -1, 1).astype(np.float64) * 32768, -32768, 32767)
    assert np.max(np.abs(ints - expected)) <= 1  # no wrap-around


def test_save_overwrites_whole_file(tmp_path):
    dest = tmp_path / "out.wav"
    save_audio(dest, sine(440.0, 16000, seconds=1.0), 16000)
    save_audio(dest, sine(440.0, 16000, seconds=0.1), 16000)
    assert sf.info(dest).frames == 1600


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_save_rejects_non_finite(tmp_path, bad):
    x = sine(440.0, 16000)
    x[10] = bad
    dest = tmp_path / "out.wav"
    with pytest.raises(AudioError) as err:
        save_audio(dest, x, 16000)
    assert_audio_error(err, dest, "non-finite")
    assert not dest.exists()


@pytest.mark.parametrize(
    "name, wav, sr, subtype, words",
    [
        ("out.mp4", np.zeros(100), 16000, None, ("cannot write", ".mp4")),
        ("out.flac", np.zeros(100), 16000, "FLOAT", ("subtype", "FLOAT")),
        ("out.wav", np.zeros((100, 2)), 16000, None, ("(channels, T)",)),
        ("out.wav", np.zeros(100, np.int16), 16000, None, ("float", "int16")),
        ("out.wav", np.zeros(0), 16000, None, ("no samples",)),
        ("out.wav", np.zeros(100), 500, None, ("sample rate", "500")),
    ],
)
def test_save_rejects_bad_requests(tmp_path, name, wav, sr, subtype, words):
    dest = tmp_path / name
    with pytest.raises(AudioError) as err:
        save_audio(dest, wav, sr, subtype=subtype)
    assert_audio_error(err, dest, *words)
    assert not dest.exists()


def _interrupt_half_way(monkeypatch):
    """Make SoundFile.write write the first half of its data, then be interrupted."""
    real_write = sf.SoundFile.write

    def half_then_interrupt(self, data):
        real_write(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(sf.SoundFile, "write", half_then_interrupt)


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    dest = tmp_path / "out.wav"
    _interrupt_half_way(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_audio(dest, sine(440.0, 16000), 16000)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "out.wav"
    save_audio(dest, sine(440.0, 16000), 16000)
    before = dest.read_bytes()
    _interrupt_half_way(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_audio(dest, sine(880.0, 16000, seconds=2.0), 16000)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
