"""Tiny untrained VC checkpoints and test signals for the conversion and CLI tests.

Everything is small enough to convert a few seconds of audio in well under a second
on one CPU core: 8 kHz audio, 16 mel bins, hop 64, a MaskCycleGAN-VC with a few
channels and two residual blocks (receptive-field radius ~51 frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.audio.stats import SpeakerStats
from voiceconv.models.base import model_payload
from voiceconv.models.vc import build_vc_model
from voiceconv.training.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

TINY_MEL = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16,
                     fmin=0.0, fmax=4000.0)
TINY_MODEL = dict(n_mels=16, base_channels=4, residual_channels=8, residual_hidden=8,
                  n_residual=2, d_base_channels=2, use_d2=False)


class FrameVocoder(torch.nn.Module):
    """A deterministic stand-in vocoder (Vocoder protocol): frame ``t`` -> samples
    ``[t * hop, (t + 1) * hop)``, a ramp scaled by the frame's mean log-mel. Unlike
    Griffin-Lim it does not amplify 1e-6 input differences, so pipelines around it can
    be compared to the last bit."""

    def __init__(self, mel_config: MelConfig = TINY_MEL) -> None:
        super().__init__()
        self.mel_config = mel_config

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        hop = self.mel_config.hop_length
        level = 0.3 * torch.tanh(log_mel.mean(dim=1) + 4.0)  # (B, T)
        ramp = torch.linspace(0.5, 1.5, hop, device=log_mel.device)
        return (level[..., None] * ramp).reshape(log_mel.shape[0], -1)


def tiny_model(seed: int = 0, **overrides):
    """An untrained, seeded tiny MaskCycleGAN-VC (``build_vc_model`` with small overrides)."""
    torch.manual_seed(seed)
    return build_vc_model("maskcyclegan_vc_small", **{**TINY_MODEL, **overrides})


def speech_like(seconds: float, sr: int = TINY_MEL.sample_rate, seed: int = 0, f0: float = 120.0) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1.0 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 10))
    y = y * (0.3 + 0.7 * np.sin(2 * np.pi * 3.0 * t) ** 2) + 0.01 * rng.standard_normal(t.size)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def tiny_stats(seed: int, f0: float) -> SpeakerStats:
    return SpeakerStats.from_mels([log_mel(speech_like(2.0, seed=seed, f0=f0), TINY_MEL)])


def write_checkpoint(path: Path, model=None, mel_config: MelConfig = TINY_MEL,
                     preparation: dict | None = None) -> Path:
    """A training checkpoint with the keys conversion reads (and VCTrainer writes);
    without ``preparation`` it is like one written before checkpoints stored it."""
    model = model if model is not None else tiny_model()
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": 0,
        "model": model_payload(model),
        "config": {},
        "mel_config": mel_config.to_dict(),
        "stats": {"A": tiny_stats(1, 110.0).to_dict(), "B": tiny_stats(2, 210.0).to_dict()},
        "speakers": {"A": "low", "B": "high"},
    }
    if preparation is not None:
        state["preparation"] = preparation
    return save_checkpoint(state, path)


def write_wav(path: Path, wav: np.ndarray, sr: int = TINY_MEL.sample_rate) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, sr, subtype="PCM_16")
    return path


def write_vocos(path: Path, seed: int = 0, mel_config: MelConfig = TINY_MEL, **kw: object) -> Path:
    """An untrained, seeded tiny Vocos shaped like ``vocos_small_integrated`` (magnitude prior,
    integrated phase; ``kw`` overrides), saved in the vocoder checkpoint format (``save_model``)."""
    from voiceconv.models.base import save_model
    from voiceconv.vocoders.vocos import VocosGenerator

    torch.manual_seed(seed)
    net = VocosGenerator(mel_config.to_dict(), dim=16, intermediate_dim=32, num_layers=2,
                         **{"magnitude_prior": True, "phase": "integrated", **kw})
    save_model(net, path)
    return path


def write_hifigan(path: Path, seed: int = 0, source: str | None = None) -> Path:
    """An untrained, seeded tiny HiFi-GAN for TINY_MEL (hop 64 = 8 x 8); ``source="griffinlim"``
    gives the Griffin-Lim-source variant."""
    from voiceconv.models.base import save_model
    from voiceconv.vocoders.hifigan import HiFiGANGenerator

    torch.manual_seed(seed)
    net = HiFiGANGenerator(TINY_MEL.to_dict(), upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16),
                           upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=(3,),
                           resblock_dilation_sizes=((1, 3),), source=source, source_iters=2)
    save_model(net, path)
    return path


def push_pieces(sc, wav: np.ndarray, sizes) -> list[np.ndarray]:
    """What a streaming converter returns for ``wav`` pushed in ``sizes`` (the rest in one
    piece), then ``flush()``: one array per call."""
    out, i = [], 0
    for k in sizes:
        if i >= wav.shape[0]:
            break
        out.append(sc.push(wav[i : i + k]))
        i += k
    if i < wav.shape[0]:
        out.append(sc.push(wav[i:]))
    out.append(sc.flush())
    return out
