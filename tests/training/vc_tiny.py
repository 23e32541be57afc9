"""Tiny VC training set-ups shared by the training tests (and the DDP worker processes).

Not a test module: plain helpers, importable by name from spawned processes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceconv.audio.mel import MelConfig
from voiceconv.audio.stats import SpeakerStats
from voiceconv.data.crops import CropSampler
from voiceconv.models.vc import build_vc_model
from voiceconv.training.distributed import DistContext
from voiceconv.training.seeding import seed_everything
from voiceconv.training.vc_trainer import RunInfo, TrainerSettings, VCTrainer

N_MELS = 16
CROP = 16
TINY_WIDTHS = dict(base_channels=4, residual_channels=8, residual_hidden=8, n_residual=1,
                   d_base_channels=4)
MEL_CFG = MelConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=64, n_mels=N_MELS,
                    fmax=4000.0)


def synthetic_mels(speaker_seed: int, offset: float, lengths: tuple[int, ...] = (40, 52, 33)) -> list[np.ndarray]:
    """Random log-mel-like arrays ``(N_MELS, T)`` with a speaker-specific level."""
    rng = np.random.default_rng(speaker_seed)
    return [
        (offset + rng.normal(0.0, 1.0, (N_MELS, t)) + np.linspace(0, -3, N_MELS)[:, None]).astype(np.float32)
        for t in lengths
    ]


def tiny_model(name: str = "maskcyclegan_vc_small", **overrides: Any) -> Any:
    return build_vc_model(name, n_mels=N_MELS, **{**TINY_WIDTHS, **overrides})


def make_trainer(
    run_dir: Path,
    *,
    max_steps: int,
    seed: int = 0,
    ctx: DistContext | None = None,
    model_name: str = "maskcyclegan_vc_small",
    model_overrides: dict[str, Any] | None = None,
    decay_start: int = 1,
    total_steps: int | None = 6,
    ckpt_every: int = 2,
    keep_last: int = 2,
    lr_g: float = 2e-4,
    lr_d: float = 1e-4,
    batch_size: int = 1,
    log_every: int = 0,
    image_every: int = 0,
    sampler: Any = None,
    optimizer: str = "adam",
    dtype: torch.dtype = torch.float32,
    precision: str = "fp32",
) -> VCTrainer:
    """A seeded trainer of a tiny model on synthetic two-speaker mels."""
    ctx = ctx or DistContext()
    seed_everything(seed, ctx.rank)
    mels_a, mels_b = synthetic_mels(1, 0.0), synthetic_mels(2, 2.0)
    stats = {"A": SpeakerStats.from_mels(mels_a), "B": SpeakerStats.from_mels(mels_b)}
    if sampler is None:
        sampler = CropSampler(mels_a, mels_b, stats["A"], stats["B"], crop_frames=CROP,
                              batch_size=batch_size, seed=seed, rank=ctx.rank)
    model = tiny_model(model_name, **(model_overrides or {})).to(dtype)
    if dtype != torch.float32:
        sampler = CastSampler(sampler, dtype)
    settings = TrainerSettings(
        max_steps=max_steps, decay_start=decay_start, total_steps=total_steps, precision=precision,
        ckpt_every=ckpt_every, keep_last=keep_last, log_every=log_every, image_every=image_every,
        progress=False, seed=seed,
    )
    info = RunInfo(mel_config=MEL_CFG, stats=stats, speakers={"A": "spk_a", "B": "spk_b"},
                   config={"note": "tiny test run"})
    if optimizer == "adam":
        make_g = functools.partial(torch.optim.Adam, lr=lr_g, betas=(0.5, 0.999))
        make_d = functools.partial(torch.optim.Adam, lr=lr_d, betas=(0.5, 0.999))
    else:  # plain SGD: updates proportional to gradients (no Adam sign amplification)
        make_g = functools.partial(torch.optim.SGD, lr=lr_g)
        make_d = functools.partial(torch.optim.SGD, lr=lr_d)
    return VCTrainer(model, make_g, make_d, sampler, settings, run_dir, info, ctx=ctx)


def flat_params(module: torch.nn.Module) -> torch.Tensor:
    """Every parameter, concatenated (in registration order)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


class CastSampler:
    """A sampler whose batches are cast to ``dtype`` (float64 comparisons)."""

    def __init__(self, sampler: Any, dtype: torch.dtype) -> None:
        self.sampler, self.dtype = sampler, dtype

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.sampler.next_batch()
        return a.to(self.dtype), b.to(self.dtype)

    def batch_at(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.sampler.batch_at(index)
        return a.to(self.dtype), b.to(self.dtype)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


class ConcatSampler:
    """Batches of several rank samplers concatenated: what one process sees when it
    trains alone on the union of the crops the DDP ranks draw (the DDP reference)."""

    def __init__(self, samplers: list[CropSampler]) -> None:
        self.samplers = samplers
        self.batches_drawn = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [s.batch_at(self.batches_drawn) for s in self.samplers]
        self.batches_drawn += 1
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def state_dict(self) -> dict[str, Any]:
        return {"batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches_drawn = int(state["batches_drawn"])


def rank_sampler(rank: int, seed: int = 0) -> CropSampler:
    """The sampler :func:`make_trainer` gives rank ``rank``."""
    mels_a, mels_b = synthetic_mels(1, 0.0), synthetic_mels(2, 2.0)
    return CropSampler(mels_a, mels_b, SpeakerStats.from_mels(mels_a), SpeakerStats.from_mels(mels_b),
                       crop_frames=CROP, batch_size=1, seed=seed, rank=rank)


#: the DDP test's set-up: no random masks (CycleGAN-VC2), SGD, float64 (see test_ddp.py)
DDP_SETUP: dict[str, Any] = dict(model_name="cyclegan_vc2_small", ckpt_every=2, decay_start=2,
                                 total_steps=4, optimizer="sgd", lr_g=0.05, lr_d=0.05,
                                 dtype=torch.float64)


def ddp_worker(rank: int, world_size: int, port: int, run_dir: str, result_file: str) -> None:
    """One DDP rank (gloo, CPU): train 2 steps, then gather every rank's parameters."""
    import os

    import torch.distributed as dist

    from voiceconv.training.distributed import all_gather_objects, cleanup, init_distributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    ctx = init_distributed(device="cpu")
    try:
        assert dist.get_backend() == "gloo"
        trainer = make_trainer(Path(run_dir), max_steps=2, ctx=ctx, **DDP_SETUP)
        first_crop = trainer.sampler.batch_at(0)[0]
        trainer.fit()
        params = all_gather_objects(ctx, flat_params(trainer.model))
        crops = all_gather_objects(ctx, first_crop)
        if ctx.is_main:
            torch.save({"params": params, "crops": crops}, result_file)
        # leave together: a rank that tears gloo down while its peer is still connected
        # can abort the peer ("terminate called without an active exception", seen once in CI)
        dist.barrier()
    finally:
        cleanup(ctx)
