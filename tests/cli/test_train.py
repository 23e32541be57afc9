"""``voiceconv-train`` end to end: two folders of tones -> cache -> checkpoints; resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voiceconv.cli.train import CONF_DIR_ENV, conf_dir
from voiceconv.training.checkpoint import load_checkpoint

SR = 8000
TINY = [
    "model=maskcyclegan_vc_small", "trainer=debug", "trainer.ckpt_every=1", "trainer.image_every=0",
    "model.base_channels=4", "model.residual_channels=8", "model.residual_hidden=8",
    "model.n_residual=1", "model.d_base_channels=4",
    f"mel.sample_rate={SR}", "mel.n_fft=256", "mel.win_length=256", "mel.hop_length=64",
    "mel.n_mels=16", "mel.fmax=4000", "data.crop_frames=16", "data.workers=1",
]


def _speaker(folder: Path, f0: float, n: int = 3) -> Path:
    """A 'speaker': harmonic tones around ``f0`` (a low and a high voice)."""
    folder.mkdir(parents=True)
    t = np.arange(int(0.6 * SR)) / SR
    for i in range(n):
        wav = sum(0.2 / k * np.sin(2 * np.pi * f0 * (1 + 0.04 * i) * k * t) for k in range(1, 6))
        sf.write(folder / f"utt{i}.wav", wav.astype(np.float32), SR)
    return folder


def _train(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CONF_DIR_ENV}
    env.update({"OMP_NUM_THREADS": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "voiceconv.cli.train", *args], capture_output=True,
                          text=True, env=env, timeout=240)


def test_conf_dir_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv(CONF_DIR_ENV, raising=False)
    assert (conf_dir() / "train.yaml").is_file()
    monkeypatch.setenv(CONF_DIR_ENV, str(tmp_path))
    assert conf_dir() == tmp_path.resolve()


@pytest.mark.slow
def test_train_then_resume_with_more_steps(tmp_path):
    a = _speaker(tmp_path / "low", 110.0)
    b = _speaker(tmp_path / "high", 220.0)
    out = tmp_path / "run"
    common = [f"data.a_dir={a}", f"data.b_dir={b}", f"out_dir={out}", *TINY]

    first = _train(*common, "trainer.max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    last = out / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(last)
    assert ckpt["step"] == 2 and ckpt["speakers"] == {"A": "low", "B": "high"}
    assert (out / "config.yaml").is_file() and (out / "mel_config.json").is_file()
    assert sorted(p.name for p in (out / "stats").iterdir()) == ["A.json", "B.json", "speakers.json"]
    manifest = (out / "cache" / "manifest.jsonl").read_text()
    assert manifest.count("\n") == 6
    assert not (out / ".hydra").exists() and not list(out.glob("*.log"))
    weights_after_2 = ckpt["model"]["state_dict"]

    second = _train(*common, "trainer.max_steps=3")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed" in second.stdout + second.stderr
    ckpt = load_checkpoint(last)
    assert ckpt["step"] == 3 and ckpt["sampler"]["batches_drawn"] == 3
    assert (out / "cache" / "manifest.jsonl").read_text() == manifest  # cache reused as is
    assert "max_steps: 3" in (out / "config.yaml").read_text()
    step2 = load_checkpoint(out / "checkpoints" / "step_0000002.ckpt")["model"]["state_dict"]
    assert all(torch.equal(step2[k], weights_after_2[k]) for k in weights_after_2)
    assert any(not torch.equal(ckpt["model"]["state_dict"][k], weights_after_2[k]) for k in weights_after_2)


@pytest.mark.slow
def test_bad_folder_is_one_line_error(tmp_path):
    b = _speaker(tmp_path / "high", 220.0)
    missing = tmp_path / "nowhere"
    proc = _train(f"data.a_dir={missing}", f"data.b_dir={b}", f"out_dir={tmp_path / 'run'}", *TINY)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("voiceconv-train:")]
    assert len(lines) == 1 and str(missing) in lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_conf_dir_is_reported(tmp_path):
    proc = _train("out_dir=x", env_extra={CONF_DIR_ENV: str(tmp_path)})
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr and "train.yaml" in proc.stderr


def test_missing_out_dir_is_one_line_error(tmp_path):
    proc = _train("data.a_dir=a", "data.b_dir=b")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "voiceconv-train: missing setting out_dir: give it on the command line (out_dir=...)"
