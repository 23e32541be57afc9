"""Crop sampler: windows of per-speaker-normalised mels, seeded, resumable, rank-aware."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voiceconv.audio.stats import SpeakerStats
from voiceconv.data.crops import CropSampler
from voiceconv.errors import ConfigError

N_MELS = 6
F = 8


def _mels(seed: int, lengths: list[int], offset: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(offset + rng.normal(size=(N_MELS, t))).astype(np.float32) for t in lengths]


def _normalised(mels: list[np.ndarray]) -> list[np.ndarray]:
    """Independent normalisation: numpy mean/std over all frames of the speaker."""
    cat = np.concatenate(mels, axis=1).astype(np.float64)
    mean, std = cat.mean(axis=1, keepdims=True), cat.std(axis=1, keepdims=True)
    return [((m - mean) / std).astype(np.float32) for m in mels]


def _locate(crop: np.ndarray, utts: list[np.ndarray]) -> tuple[int, int]:
    """(utterance, start) of the window equal to ``crop`` (atol 1e-5), or raise."""
    for u, mel in enumerate(utts):
        for s in range(mel.shape[1] - crop.shape[1] + 1):
            if np.allclose(mel[:, s : s + crop.shape[1]], crop, atol=1e-5):
                return u, s
    raise AssertionError("crop is not a window of any utterance")


@pytest.fixture
def speakers():
    mels_a = _mels(1, [20, 9, 31], 0.0)
    mels_b = _mels(2, [12, 25], 5.0)
    return mels_a, mels_b, SpeakerStats.from_mels(mels_a), SpeakerStats.from_mels(mels_b)


def test_crops_are_normalised_windows_of_the_right_speaker(speakers):
    mels_a, mels_b, st_a, st_b = speakers
    sampler = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=4, seed=0)
    norm_a, norm_b = _normalised(mels_a), _normalised(mels_b)
    for _ in range(5):
        a, b = sampler.next_batch()
        assert a.shape == (4, N_MELS, F) and b.shape == (4, N_MELS, F)
        assert a.dtype == torch.float32
        for crop in a.numpy():
            _locate(crop, norm_a)
        for crop in b.numpy():
            _locate(crop, norm_b)


def test_every_start_position_is_drawn(speakers):
    mels_a, mels_b, st_a, st_b = speakers
    sampler = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=8, seed=3)
    norm_a = _normalised(mels_a)
    seen = set()
    for _ in range(60):
        a, _ = sampler.next_batch()
        seen.update(_locate(c, norm_a) for c in a.numpy())
    possible = {(u, s) for u, m in enumerate(norm_a) for s in range(m.shape[1] - F + 1)}
    assert seen == possible  # first and last positions included, nothing outside


def test_a_and_b_are_drawn_independently(speakers):
    mels_a, mels_b, st_a, st_b = speakers
    # B's utterances of A's lengths: a coupled sampler would pick matching windows
    sampler = CropSampler(mels_a, mels_a, st_a, st_a, crop_frames=F, batch_size=16, seed=0)
    a, b = sampler.next_batch()
    assert not torch.equal(a, b)


def test_same_seed_same_batches_and_resume(speakers):
    mels_a, mels_b, st_a, st_b = speakers
    s1 = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=2, seed=11)
    batches = [s1.next_batch() for _ in range(6)]

    s2 = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=2, seed=11)
    for _ in range(3):
        s2.next_batch()
    state = s2.state_dict()
    s3 = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=2, seed=99)
    s3.load_state_dict(state)
    for want in batches[3:]:
        got = s3.next_batch()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])

    other_seed = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=2, seed=12)
    assert not torch.equal(other_seed.next_batch()[0], batches[0][0])


def test_ranks_draw_different_crops(speakers):
    mels_a, mels_b, st_a, st_b = speakers
    r0 = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=4, seed=5, rank=0)
    r1 = CropSampler(mels_a, mels_b, st_a, st_b, crop_frames=F, batch_size=4, seed=5, rank=1)
    assert not torch.equal(r0.next_batch()[0], r1.next_batch()[0])


def test_short_utterances_skipped_or_padded(speakers):
    mels_a, mels_b, st_a, st_b = speakers
    short = _mels(7, [5], 0.0)[0]
    long = _mels(8, [F + 2], 0.0)[0]
    skip = CropSampler([short, long], mels_b, None, st_b, crop_frames=F, batch_size=8, seed=0)
    assert len(skip.utts_a) == 1
    a, _ = skip.next_batch()
    for crop in a.numpy():
        _locate(crop, [long])

    pad = CropSampler([short], mels_b, None, st_b, crop_frames=F, batch_size=2, seed=0, short="pad")
    a, _ = pad.next_batch()
    crop = a[0].numpy()
    np.testing.assert_array_equal(crop[:, :5], short)
    np.testing.assert_array_equal(crop[:, 5:], np.repeat(short.min(axis=1, keepdims=True), F - 5, axis=1))

    with pytest.raises(ConfigError, match="no utterance"):
        CropSampler([short], mels_b, None, st_b, crop_frames=F, short="skip")


def test_mismatched_mel_sizes_are_config_errors(speakers):
    mels_a, _, st_a, _ = speakers
    other = [np.zeros((N_MELS + 1, 20), np.float32)]
    with pytest.raises(ConfigError, match="different mel sizes"):
        CropSampler(mels_a, other, st_a, None, crop_frames=F)
    with pytest.raises(ConfigError, match="short-utterance policy"):
        CropSampler(mels_a, mels_a, crop_frames=F, short="wrap")
