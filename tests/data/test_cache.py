"""Feature cache: features against librosa, stats against numpy, resume, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from voiceconv.audio.io import load_audio
from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.audio.processing import normalize_peak, trim_silence
from voiceconv.data.cache import FeatureCache, preprocess
from voiceconv.data.corpora import Utterance, read_speaker_folders
from voiceconv.errors import ConfigError, CorpusError, MelConfigMismatch

SR = 16000
CFG = MelConfig(sample_rate=SR, n_fft=512, hop_length=128, win_length=512, n_mels=40, fmax=8000.0)
PAD_S = 0.15  # near-silent lead-in and tail around each "utterance"


def voiced(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic tone with a smooth envelope, padded with faint noise on both ends."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 8)) * np.hanning(t.size)
    pad = int(PAD_S * SR)
    return np.concatenate(
        [1e-4 * rng.standard_normal(pad), tone, 1e-4 * rng.standard_normal(pad)]
    ).astype(np.float32)


def make_corpus(root: Path, n_per_speaker: int = 3) -> Path:
    for s, (spk, f0) in enumerate((("alto", 220.0), ("bass", 110.0))):
        d = root / spk
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_speaker):
            sf.write(d / f"u{i}.wav", voiced(f0 * (1 + 0.1 * i), 0.25 + 0.05 * i, 10 * s + i), SR)
    return root


def librosa_log_mel(y: np.ndarray) -> np.ndarray:
    """Independent reference for :data:`CFG` (HiFi-GAN style log-mel)."""
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=SR,
        n_fft=CFG.n_fft,
        hop_length=CFG.hop_length,
        win_length=CFG.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=1.0,
        n_mels=CFG.n_mels,
        fmin=CFG.fmin,
        fmax=CFG.fmax,
        htk=False,
        norm="slaney",
    )
    return np.log(np.maximum(mel, CFG.log_floor))


def npy_mtimes(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*.npy")}


@pytest.fixture()
def corpus(tmp_path: Path) -> dict[str, list[Utterance]]:
    return read_speaker_folders(make_corpus(tmp_path / "corpus"))


@pytest.mark.slow  # librosa's first melspectrogram call warms up for seconds
def test_features_match_librosa_and_manifest(corpus, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    summary = preprocess(
        corpus, cache_dir, CFG, workers=1, trim_top_db=None, normalize=None, progress=False
    )
    assert (summary.done, summary.skipped_existing, summary.failed) == (6, 0, [])

    cache = FeatureCache(cache_dir)
    assert cache.mel_config == CFG
    assert cache.speakers == ["alto", "bass"]
    for spk, utts in corpus.items():
        entries = cache.utterances(spk)
        assert [e.utt_id for e in entries] == [u.utt_id for u in utts]
        for u, e in zip(utts, entries, strict=True):
            y, sr = sf.read(u.path, dtype="float32")
            mel = cache.load_mel(spk, u.utt_id)
            assert mel.dtype == np.float32 and mel.shape == (CFG.n_mels, e.n_frames)
            np.testing.assert_allclose(mel, librosa_log_mel(y), atol=1e-3)
            assert e.source == u.path.resolve()
            assert e.feature == cache_dir / "feats" / spk / f"{u.utt_id}.npy"
            assert e.sample_rate == sr == SR
            assert e.duration_s == pytest.approx(y.size / sr, abs=1e-6)


def test_trim_and_peak_normalisation_are_applied(corpus, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    preprocess(
        corpus, cache_dir, CFG, workers=1, trim_top_db=40.0, normalize="peak", progress=False
    )
    cache = FeatureCache(cache_dir)
    for u in corpus["alto"]:
        wav, sr = load_audio(u.path, SR)
        expected = log_mel(normalize_peak(trim_silence(wav, sr, top_db=40.0)), CFG)
        np.testing.assert_allclose(cache.load_mel("alto", u.utt_id), expected, rtol=1e-6, atol=1e-6)
        # the silent padding is gone: librosa's trim, plus at most trim_silence's 50 ms margins
        kept = librosa.effects.trim(wav, top_db=40.0)[0].size / sr
        entry = next(e for e in cache.utterances("alto") if e.utt_id == u.utt_id)
        assert kept - 1e-9 <= entry.duration_s <= kept + 0.1 + 1e-9
        assert entry.duration_s < wav.size / sr


def test_stats_equal_numpy_stats_of_cached_mels(corpus, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    cache = FeatureCache(cache_dir)
    for spk in cache.speakers:
        frames = np.concatenate(cache.load_mels(spk), axis=1).astype(np.float64)
        stats = cache.stats(spk)
        assert stats.n_frames == frames.shape[1]
        np.testing.assert_allclose(stats.mean, frames.mean(axis=1), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(stats.std, frames.std(axis=1), rtol=1e-7, atol=1e-9)

    # a new utterance later: its speaker's stats are recomputed over all its mels
    extra = corpus["bass"][0].path.with_name("u9.wav")
    sf.write(extra, voiced(90.0, 0.3, 99), SR)
    grown = read_speaker_folders(corpus["bass"][0].path.parents[1])
    assert preprocess(grown, cache_dir, CFG, workers=1, progress=False).done == 1
    cache = FeatureCache(cache_dir)
    frames = np.concatenate(cache.load_mels("bass"), axis=1).astype(np.float64)
    assert cache.stats("bass").n_frames == frames.shape[1]
    np.testing.assert_allclose(cache.stats("bass").mean, frames.mean(axis=1), rtol=1e-9, atol=1e-9)


def test_bad_files_are_reported_and_the_rest_processed(corpus, tmp_path: Path) -> None:
    folder = corpus["alto"][0].path.parent
    garbage = folder / "broken.wav"
    garbage.write_bytes(b"this is not a RIFF file at all" * 10)
    short = folder / "blip.wav"
    sf.write(short, voiced(200.0, 0.01, 5)[int(PAD_S * SR) : int(PAD_S * SR) + 100], SR)
    grown = read_speaker_folders(folder.parent)

    cache_dir = tmp_path / "cache"
    summary = preprocess(grown, cache_dir, CFG, workers=1, progress=False)
    assert summary.done == 6 and summary.skipped_existing == 0
    assert [p for p, _ in summary.failed] == sorted([garbage.resolve(), short.resolve()])
    for path, message in summary.failed:
        assert "\n" not in message and str(path) in message
    log = (cache_dir / "errors.log").read_text()
    assert str(garbage.resolve()) in log and str(short.resolve()) in log
    cache = FeatureCache(cache_dir)
    assert [e.utt_id for e in cache.utterances("alto")] == ["u0", "u1", "u2"]


def test_resume_skips_finished_work(corpus, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    before = npy_mtimes(cache_dir)
    manifest = cache_dir / "manifest.jsonl"
    n_lines = len(manifest.read_text().splitlines())

    again = preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    assert (again.done, again.skipped_existing) == (0, 6)
    assert npy_mtimes(cache_dir) == before
    assert len(manifest.read_text().splitlines()) == n_lines

    # a lost feature file is recomputed, and only that one
    lost = cache_dir / "feats" / "bass" / "u1.npy"
    lost.unlink()
    third = preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    assert (third.done, third.skipped_existing) == (1, 5)
    after = npy_mtimes(cache_dir)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {os.path.join("feats", "bass", "u1.npy")}


def test_resume_after_a_run_killed_mid_manifest_line(corpus, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    manifest = cache_dir / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])
    manifest.write_text("".join(lines[:-1]) + lines[-1][:25])  # torn final line

    assert {e.utt_id for e in FeatureCache(cache_dir).utterances(last["speaker"])} == {
        u.utt_id for u in corpus[last["speaker"]]
    } - {last["utt_id"]}
    summary = preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    assert (summary.done, summary.skipped_existing) == (1, 5)
    recs = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(recs) == 6
    assert sorted((r["speaker"], r["utt_id"]) for r in recs) == sorted(
        (u.speaker, u.utt_id) for utts in corpus.values() for u in utts
    )


def test_other_settings_are_refused(corpus, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    other = MelConfig(**{**CFG.to_dict(), "n_mels": 32})
    with pytest.raises(MelConfigMismatch) as err:
        preprocess(corpus, cache_dir, other, workers=1, progress=False)
    assert "n_mels" in str(err.value) and str(cache_dir) in str(err.value)
    with pytest.raises(ConfigError):
        preprocess(corpus, cache_dir, CFG, workers=1, normalize="loudness", progress=False)
    with pytest.raises(ConfigError):
        preprocess(corpus, tmp_path / "c2", CFG, normalize="rms", progress=False)


def test_feature_cache_errors(corpus, tmp_path: Path) -> None:
    with pytest.raises(CorpusError):
        FeatureCache(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CorpusError) as err:
        FeatureCache(tmp_path / "plain")
    assert "mel_config.json" in str(err.value)
    cache_dir = tmp_path / "cache"
    preprocess(corpus, cache_dir, CFG, workers=1, progress=False)
    cache = FeatureCache(cache_dir)
    with pytest.raises(CorpusError) as err:
        cache.utterances("tenor")
    assert "tenor" in str(err.value) and "alto" in str(err.value)
    with pytest.raises(CorpusError):
        cache.load_mel("alto", "u7")
    (cache_dir / "stats" / "alto.json").unlink()
    with pytest.raises(CorpusError):
        cache.stats("alto")


@pytest.mark.slow
def test_worker_processes_give_the_same_cache(corpus, tmp_path: Path) -> None:
    bad = corpus["bass"][0].path.with_name("bad.wav")
    bad.write_bytes(b"RIFF\x00\x01 truncated")
    corpus = read_speaker_folders(bad.parents[1])
    one = tmp_path / "one"
    two = tmp_path / "two"
    preprocess(corpus, one, CFG, workers=1, progress=False)
    summary = preprocess(corpus, two, CFG, workers=2, progress=False)
    assert summary.done == 6
    assert [p for p, _ in summary.failed] == [bad.resolve()]
    assert str(bad.resolve()) in summary.failed[0][1]
    a, b = FeatureCache(one), FeatureCache(two)
    for spk in a.speakers:
        for x, y in zip(a.load_mels(spk), b.load_mels(spk), strict=True):
            np.testing.assert_array_equal(x, y)
