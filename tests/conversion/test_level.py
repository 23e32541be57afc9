"""Conversion prepares audio as training did: level-set, trimmed, and put back in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conversion_tiny import TINY_MEL, speech_like, write_checkpoint

from voiceconv.audio.mel import log_mel
from voiceconv.conversion.converter import VoiceConverter

PEAK_TRIM = {"trim_top_db": 40.0, "normalize": "peak", "peak": 0.95, "loudness_dbfs": -23.0}


def _padded_speech() -> np.ndarray:
    """0.4 s of digital silence, 2 s of speech-like sound, 0.3 s of silence."""
    sr = TINY_MEL.sample_rate
    return np.concatenate([np.zeros(int(0.4 * sr)), speech_like(2.0), np.zeros(int(0.3 * sr))]).astype(np.float32)


def _level_normalised_log_mel(wav: np.ndarray) -> np.ndarray:
    return log_mel(wav / np.max(np.abs(wav)), TINY_MEL)


def _convert_pair(ckpt: Path, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vc = VoiceConverter.from_checkpoint(ckpt, precision="fp32", **options)
    x = _padded_speech()
    loud, _ = vc.convert(x, TINY_MEL.sample_rate, "a2b")
    quiet, _ = vc.convert(0.05 * x, TINY_MEL.sample_rate, "a2b")
    return x, loud, quiet


def test_level_does_not_change_the_conversion(tmp_path: Path) -> None:
    """The same file at 1/20 of the level converts to the same sound (level-normalised
    log-mels within 0.05 nats on average), as long as the input, at the input's level."""
    ckpt = write_checkpoint(tmp_path / "prep.ckpt", preparation=PEAK_TRIM)
    x, loud, quiet = _convert_pair(ckpt)
    assert abs(loud.size - x.size) <= TINY_MEL.hop_length and abs(quiet.size - x.size) <= TINY_MEL.hop_length
    diff = np.mean(np.abs(_level_normalised_log_mel(loud) - _level_normalised_log_mel(quiet)))
    assert diff < 0.05
    # the output keeps the input's loudness: 1/20 of the level in, 1/20 out
    assert np.max(np.abs(quiet)) / np.max(np.abs(loud)) == pytest.approx(0.05, rel=0.02)
    # leading and trailing silence stay where they were (trimming works in 2048-sample
    # frames, librosa's rule, plus a 50 ms margin: most of the 0.4 s / 0.3 s is cut)
    sr = TINY_MEL.sample_rate
    assert np.max(np.abs(loud[: int(0.2 * sr)])) == 0.0
    assert np.max(np.abs(loud[-int(0.05 * sr):])) == 0.0
    assert np.max(np.abs(loud[int(0.5 * sr): int(2.3 * sr)])) > 0.05


def test_without_preparation_the_level_changes_the_conversion(tmp_path: Path) -> None:
    """The yardstick: a checkpoint that stored no preparation (converted as before) gives a
    level-dependent result, so the test above can fail."""
    ckpt = write_checkpoint(tmp_path / "raw.ckpt")
    x, loud, quiet = _convert_pair(ckpt)
    diff = np.mean(np.abs(_level_normalised_log_mel(loud) - _level_normalised_log_mel(quiet)))
    assert diff > 0.1


def test_model_output_level_restores_the_old_behaviour(tmp_path: Path) -> None:
    """``output_level="model"``: both outputs come out at the level the vocoder made."""
    ckpt = write_checkpoint(tmp_path / "prep.ckpt", preparation=PEAK_TRIM)
    _, loud, quiet = _convert_pair(ckpt, output_level="model")
    assert np.max(np.abs(quiet)) == pytest.approx(np.max(np.abs(loud)), rel=0.02)


def test_old_checkpoints_take_their_config_preparation(tmp_path: Path) -> None:
    """A checkpoint from before this change: its config's data settings are used."""
    import torch

    ckpt = write_checkpoint(tmp_path / "old.ckpt")
    state = torch.load(ckpt, weights_only=True)
    state["config"] = {"data": {"trim_top_db": 30.0, "normalize": "loudness"}}
    torch.save(state, ckpt)
    vc = VoiceConverter.from_checkpoint(ckpt, precision="fp32")
    assert (vc.preparation.trim_top_db, vc.preparation.normalize) == (30.0, "loudness")
    out, _ = vc.convert(_padded_speech(), TINY_MEL.sample_rate, "a2b")
    assert out.size == _padded_speech().size
