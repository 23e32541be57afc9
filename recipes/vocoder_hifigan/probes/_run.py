"""What the probes share: a vocoder run's front end, trimming and level rule, and its Vocos."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from eval_vocoder import _run_settings  # noqa: E402

from voiceconv.audio.mel import LogMel, MelConfig  # noqa: E402
from voiceconv.audio.preparation import Preparation  # noqa: E402
from voiceconv.vocoders.base import load_vocoder  # noqa: E402


def open_run(run: Path, vocoder: Path) -> tuple[MelConfig, LogMel, Preparation, Any]:
    """The run's MelConfig, its front end, its Preparation (as ``eval_vocoder.py`` uses it) and
    the checkpoint's generator in eval mode; one torch thread."""
    torch.set_num_threads(1)
    data_cfg, cfg = _run_settings(run)
    prep = Preparation(trim_top_db=data_cfg.get("trim_top_db", 40.0), normalize=data_cfg.get("normalize", "peak"))
    return cfg, LogMel(cfg), prep, load_vocoder(vocoder, cfg).net.eval()


def stft_magnitude(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """``|STFT|`` of ``wav`` with the front end's window, hop and centring: ``(n_fft // 2 + 1, T)``."""
    return torch.stft(wav, cfg.n_fft, cfg.hop_length, cfg.win_length, torch.hann_window(cfg.win_length),
                      center=cfg.center, pad_mode=cfg.pad_mode, return_complex=True).abs()
