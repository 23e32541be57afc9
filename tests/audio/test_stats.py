"""SpeakerStats against np.mean / np.std of the concatenated frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceconv.audio.stats import STD_FLOOR, SpeakerStats
from voiceconv.errors import AudioError, ConfigError, FileProblem


def utterances(seed: int, n_mels: int = 12, lengths=(37, 1, 250, 90)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    offset = rng.normal(-4.0, 2.0, size=(n_mels, 1))
    return [(offset + rng.normal(0.0, 1.5, size=(n_mels, t))).astype(np.float32) for t in lengths]


def test_matches_concatenation() -> None:
    mels = utterances(0)
    cat = np.concatenate([m.astype(np.float64) for m in mels], axis=1)
    stats = SpeakerStats.from_mels(iter(mels))  # a one-shot iterator is enough
    assert stats.n_frames == cat.shape[1]
    np.testing.assert_allclose(stats.mean, cat.mean(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, cat.std(axis=1), rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=8).filter(lambda x: sum(x) > 0),
    offset=st.floats(-1e4, 1e4),
    seed=st.integers(0, 2**31),
)
def test_matches_concatenation_any_split(lengths: list[int], offset: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mels = [offset + rng.standard_normal((3, t)) for t in lengths]
    cat = np.concatenate(mels, axis=1)
    stats = SpeakerStats.from_mels(mels)
    np.testing.assert_allclose(stats.mean, cat.mean(axis=1), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(stats.std, cat.std(axis=1), rtol=1e-7, atol=1e-9)


def test_large_offset_no_cancellation() -> None:
    # Naive E[x^2] - E[x]^2 loses every digit here; the pairwise update does not.
    rng = np.random.default_rng(3)
    mels = [1e8 + 1e-3 * rng.standard_normal((2, 500)) for _ in range(6)]
    cat = np.concatenate(mels, axis=1)
    stats = SpeakerStats.from_mels(mels)
    np.testing.assert_allclose(stats.std, cat.std(axis=1), rtol=1e-6)


def test_merge_equals_from_all() -> None:
    a, b = utterances(1), utterances(2, lengths=(10, 300))
    merged = SpeakerStats.from_mels(a).merge(SpeakerStats.from_mels(b))
    cat = np.concatenate([m.astype(np.float64) for m in a + b], axis=1)
    assert merged.n_frames == cat.shape[1]
    np.testing.assert_allclose(merged.mean, cat.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(merged.std, cat.std(axis=1), rtol=1e-10)


def test_torch_inputs_accepted() -> None:
    mels = utterances(4)
    a = SpeakerStats.from_mels(torch.from_numpy(m) for m in mels)
    cat = np.concatenate([m.astype(np.float64) for m in mels], axis=1)
    np.testing.assert_allclose(a.mean, cat.mean(axis=1), rtol=1e-12)


def test_normalize_numpy_gives_zero_mean_unit_std_and_round_trips() -> None:
    mels = utterances(5)
    stats = SpeakerStats.from_mels(mels)
    z = np.concatenate([stats.normalize(m) for m in mels], axis=1)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(stats.denormalize(stats.normalize(mels[0])), mels[0], atol=1e-5)


def test_normalize_torch_batched_keeps_dtype_and_broadcasts() -> None:
    stats = SpeakerStats(mean=np.array([1.0, -2.0]), std=np.array([2.0, 0.5]), n_frames=10)
    x = torch.tensor([[[3.0, 1.0], [-2.0, -1.0]]] * 4, dtype=torch.float32)  # (4, 2, 2)
    z = stats.normalize(x)
    assert z.dtype == torch.float32 and z.shape == x.shape
    expected = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]] * 4)
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(stats.denormalize(z), x)


def test_constant_bin_uses_floor() -> None:
    mels = [np.vstack([np.full((1, 50), np.log(1e-5)), np.linspace(-3, 3, 50)[None]])]
    stats = SpeakerStats.from_mels(mels)
    assert stats.std[0] == pytest.approx(0.0, abs=1e-12)
    assert stats.scale[0] == STD_FLOOR
    z = stats.normalize(mels[0])
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[0], 0.0, atol=1e-6)


def test_save_load_round_trip_exact(tmp_path) -> None:
    stats = SpeakerStats.from_mels(utterances(6))
    path = tmp_path / "spk" / "stats.json"
    stats.save(path)
    back = SpeakerStats.load(path)
    assert back.n_frames == stats.n_frames
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.std, stats.std)
    assert [p.name for p in path.parent.iterdir()] == ["stats.json"]  # no temp file left
    assert SpeakerStats.from_dict(json.loads(path.read_text())).n_mels == 12


def test_bad_inputs() -> None:
    with pytest.raises(AudioError, match="no mel frames"):
        SpeakerStats.from_mels([])
    with pytest.raises(AudioError, match="cache/x: mel #1 has 5 bins"):
        SpeakerStats.from_mels([np.zeros((4, 3)), np.zeros((5, 3))], source="cache/x")
    with pytest.raises(AudioError, match="NaN"):
        SpeakerStats.from_mels([np.full((4, 3), np.nan)])
    with pytest.raises(AudioError, match="expected"):
        SpeakerStats.from_mels([np.zeros(4)])
    stats = SpeakerStats.from_mels(utterances(7))
    with pytest.raises(ConfigError, match="12 mel bins"):
        stats.normalize(np.zeros((80, 10)))


def test_load_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(FileProblem, match="missing.json: .*not found"):
        SpeakerStats.load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FileProblem, match="bad.json: unreadable"):
        SpeakerStats.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"mean": [0.0], "std": [1.0]}))
    with pytest.raises(FileProblem, match="wrong.json: bad speaker statistics"):
        SpeakerStats.load(wrong)
