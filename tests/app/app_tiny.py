"""Runs folders, recordings and a running app for the web-app tests.

Not a test module: plain helpers (the suite imports with ``--import-mode=importlib``;
``conftest.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.audio.stats import SpeakerStats
from voiceconv.models.base import model_payload
from voiceconv.models.vc import build_vc_model
from voiceconv.training.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "conversion"))
from conversion_tiny import TINY_MEL, speech_like, write_wav  # noqa: E402  (the same test signals)

TINY_WIDTHS = dict(base_channels=4, residual_channels=8, residual_hidden=8, n_residual=1,
                   d_base_channels=4)
#: Hydra overrides for a tiny CPU training from the page (cf. tests/cli/test_train.py)
TINY_TRAIN = [
    "trainer=debug", "trainer.image_every=0", "trainer.log_every=0",
    *(f"model.{k}={v}" for k, v in TINY_WIDTHS.items()),
    "mel.sample_rate=8000", "mel.n_fft=256", "mel.win_length=256", "mel.hop_length=64",
    "mel.n_mels=16", "mel.fmax=4000", "data.crop_frames=16", "data.workers=1",
]


def write_run(run_dir: Path, mel: MelConfig = TINY_MEL, model_name: str = "maskcyclegan_vc_small",
              widths: dict | None = None, speakers: tuple[str, str] = ("low", "high"), seed: int = 0) -> Path:
    """An untrained run folder (``checkpoints/last.ckpt`` with what conversion reads)."""
    torch.manual_seed(seed)
    model = build_vc_model(model_name, n_mels=mel.n_mels, **(TINY_WIDTHS if widths is None else widths))
    stats = {role: SpeakerStats.from_mels([log_mel(speech_like(2.0, mel.sample_rate, seed=i, f0=f0), mel)])
             for role, i, f0 in (("A", 1, 110.0), ("B", 2, 210.0))}
    state = {
        "format": CHECKPOINT_FORMAT, "step": 0, "model": model_payload(model),
        "config": {"model": {"name": model_name}, "trainer": {"max_steps": 0}},
        "mel_config": mel.to_dict(), "stats": {k: s.to_dict() for k, s in stats.items()},
        "speakers": {"A": speakers[0], "B": speakers[1]},
    }
    save_checkpoint(state, run_dir / "checkpoints" / "last.ckpt")
    return run_dir


def write_speakers(root: Path, sr: int = 8000, n: int = 3) -> tuple[Path, Path]:
    """Two folders of 'speakers' (low and high harmonic tones) for training and evaluation."""
    for name, f0 in (("low", 110.0), ("high", 220.0)):
        for i in range(n):
            write_wav(root / name / f"utt{i}.wav", speech_like(0.8, sr, seed=i, f0=f0 * (1 + 0.04 * i)), sr)
    return root / "low", root / "high"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """``voiceconv-app`` in a subprocess on a free local port (log in ``log_path``)."""

    def __init__(self, runs: Path, data: Path, log_path: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voiceconv.cli.app", "--runs", str(runs), "--port", str(self.port),
             "--data", str(data), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
        )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voiceconv-app exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"voiceconv-app not ready after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
