"""precision/threads auto: candidates per CPU, fastest wins, cached, RNG untouched."""

from __future__ import annotations

from pathlib import Path

import torch

from voiceconv.training import autotune
from voiceconv.training.autotune import candidate_settings, choose, fastest


def test_candidates_follow_the_cpu() -> None:
    assert candidate_settings("auto", "auto", 2, native_bf16=False) == [("fp32", 1), ("fp32", 2)]
    assert candidate_settings("auto", "auto", 8, native_bf16=True) == [
        ("fp32", 1), ("fp32", 4), ("fp32", 8), ("bf16", 1), ("bf16", 4), ("bf16", 8)]
    assert candidate_settings("fp32", 3, 8, native_bf16=True) == [("fp32", 3)]


def test_fastest_and_cache(tmp_path: Path) -> None:
    times = {("fp32", 1): 1.5, ("fp32", 2): 1.1, ("bf16", 1): 0.4, ("bf16", 2): 2.4}
    calls: list = []

    def measure(s):
        calls.append(s)
        return times[s]

    path = tmp_path / "autotune.json"
    best, timings, cached = choose(list(times), measure, {"k": 1}, path)
    assert best == ("bf16", 1) and not cached and len(calls) == 4
    best2, _, cached2 = choose(list(times), measure, {"k": 1}, path)
    assert best2 == ("bf16", 1) and cached2 and len(calls) == 4  # no new measurement
    choose(list(times), measure, {"k": 2}, path)  # another workload is measured anew
    assert len(calls) == 8
    assert fastest({("fp32", 2): 1.0, ("fp32", 1): 1.0}) == ("fp32", 1)


def test_apply_measures_real_steps_and_leaves_rng_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(autotune, "has_native_bf16", lambda: False)
    monkeypatch.setattr(autotune, "available_cores", lambda: 2)
    from voiceconv.models.vc import build_vc_model

    model = build_vc_model("maskcyclegan_vc_small", n_mels=16, base_channels=4, residual_channels=8,
                           residual_hidden=8, n_residual=1, d_base_channels=2, use_d2=False)
    before = [p.detach().clone() for p in model.parameters()]
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    got = autotune.apply_machine_settings(model, {"precision": "auto", "threads": "auto"},
                                          torch.device("cpu"), n_mels=16, crop_frames=16, verbose=False)
    assert torch.equal(torch.rand(3), expected)  # random streams as they were
    assert got["precision"] == "fp32" and got["threads"] in (1, 2)
    assert torch.get_num_threads() == got["threads"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert (tmp_path / "autotune.json").is_file()
    torch.set_num_threads(threads)
