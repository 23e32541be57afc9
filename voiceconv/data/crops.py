"""Random fixed-length crops of normalised log-mels for non-parallel CycleGAN training.

CycleGAN-VC2 and MaskCycleGAN-VC train on random segments of ``F`` frames (64 in
the papers) cut from randomly chosen utterances of each speaker, one batch holding
crops of speaker A and, drawn independently, crops of speaker B: the two halves are
not parallel (different sentences, different positions).

Each speaker's log-mels are normalised with that speaker's own
:class:`~voiceconv.audio.stats.SpeakerStats` (per-bin mean/std), as the papers do
with their per-speaker statistics, before cropping.

**Utterances shorter than ``F`` frames.** ``short="skip"`` (default, as the papers'
crops always lie inside one utterance) leaves them out; if a speaker then has none
left, :class:`~voiceconv.errors.ConfigError` says so. ``short="pad"`` keeps them and
pads each at the end up to ``F`` frames with its own per-bin minimum over time (the
quietest value of every band, i.e. the nearest thing to silence in the normalised
domain), so a pad never introduces values the utterance does not have.

**Reproducible and resumable.** Batch ``k`` of rank ``r`` is drawn from a fresh
generator ``numpy.random.default_rng([seed, r, k])``: it depends only on the seed,
the rank and the batch counter, never on anything drawn before. The sampler's state
is therefore just that counter (:meth:`CropSampler.state_dict`), which restores the
exact sequence of crops after a resume, and different DDP ranks draw different crops.
Utterances are chosen uniformly (each utterance equally likely, like the papers'
per-utterance sampling), then a start frame uniformly among the valid ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from voiceconv.errors import ConfigError


class Normalizer(Protocol):
    """Anything with ``normalize(mel)``, e.g. :class:`voiceconv.audio.stats.SpeakerStats`."""

    def normalize(self, mel: np.ndarray) -> np.ndarray: ...


SHORT_POLICIES = ("skip", "pad")


def prepare_utterances(
    mels: Sequence[np.ndarray],
    stats: Normalizer | None,
    crop_frames: int,
    short: str = "skip",
    speaker: str = "?",
) -> list[np.ndarray]:
    """Normalise each ``(n_mels, T)`` log-mel and apply the short-utterance policy.

    Returns float32 arrays, each at least ``crop_frames`` long.
    """
    if short not in SHORT_POLICIES:
        raise ConfigError(f"short-utterance policy must be one of {SHORT_POLICIES}, got {short!r}")
    if crop_frames < 1:
        raise ConfigError(f"crop_frames must be >= 1, got {crop_frames}")
    out: list[np.ndarray] = []
    n_mels: int | None = None
    for mel in mels:
        mel = np.asarray(mel)
        if mel.ndim != 2 or mel.shape[1] == 0:
            raise ConfigError(f"speaker {speaker}: expected (n_mels, T) log-mels, got shape {mel.shape}")
        if n_mels is None:
            n_mels = mel.shape[0]
        elif mel.shape[0] != n_mels:
            raise ConfigError(f"speaker {speaker}: mixed mel sizes {n_mels} and {mel.shape[0]}")
        norm = np.asarray(stats.normalize(mel) if stats is not None else mel, dtype=np.float32)
        if norm.shape[1] < crop_frames:
            if short == "skip":
                continue
            pad = np.repeat(norm.min(axis=1, keepdims=True), crop_frames - norm.shape[1], axis=1)
            norm = np.concatenate([norm, pad], axis=1)
        out.append(np.ascontiguousarray(norm))
    if not out:
        raise ConfigError(
            f"speaker {speaker}: no utterance has {crop_frames} frames or more"
            " (use shorter crops or short='pad')"
        )
    return out


class CropSampler:
    """Endless, seeded source of ``(crops_a, crops_b)`` batches, each ``(B, n_mels, F)``.

    Args:
        mels_a, mels_b: log-mels ``(n_mels, T)`` of speaker A and speaker B (unnormalised).
        stats_a, stats_b: each speaker's statistics (``None``: use the mels as given).
        crop_frames: ``F``, frames per crop (64 in CycleGAN-VC2 / MaskCycleGAN-VC).
        batch_size: crops per speaker per batch (1 in the papers).
        seed: base seed; ``rank``: this process's DDP rank (draws its own crops).
        short: ``"skip"`` or ``"pad"`` for utterances shorter than ``F`` (module docstring).
    """

    def __init__(
        self,
        mels_a: Sequence[np.ndarray],
        mels_b: Sequence[np.ndarray],
        stats_a: Normalizer | None = None,
        stats_b: Normalizer | None = None,
        *,
        crop_frames: int = 64,
        batch_size: int = 1,
        seed: int = 0,
        rank: int = 0,
        short: str = "skip",
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.crop_frames = int(crop_frames)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.utts_a = prepare_utterances(mels_a, stats_a, self.crop_frames, short, "A")
        self.utts_b = prepare_utterances(mels_b, stats_b, self.crop_frames, short, "B")
        if self.utts_a[0].shape[0] != self.utts_b[0].shape[0]:
            raise ConfigError(
                f"speakers A and B have different mel sizes: {self.utts_a[0].shape[0]}"
                f" vs {self.utts_b[0].shape[0]}"
            )
        self.batches_drawn = 0

    @property
    def n_mels(self) -> int:
        """Mel bins per frame."""
        return int(self.utts_a[0].shape[0])

    def _crops(self, rng: np.random.Generator, utts: list[np.ndarray]) -> np.ndarray:
        f = self.crop_frames
        idx = rng.integers(0, len(utts), size=self.batch_size)
        batch = np.empty((self.batch_size, utts[0].shape[0], f), dtype=np.float32)
        for i, u in enumerate(idx):
            mel = utts[int(u)]
            start = int(rng.integers(0, mel.shape[1] - f + 1))
            batch[i] = mel[:, start : start + f]
        return batch

    def batch_at(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number ``index`` of this rank (pure: does not move the counter)."""
        rng = np.random.default_rng([self.seed, self.rank, int(index)])
        a = self._crops(rng, self.utts_a)
        b = self._crops(rng, self.utts_b)
        return torch.from_numpy(a), torch.from_numpy(b)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch ``(crops_a, crops_b)`` as CPU float32 tensors."""
        batch = self.batch_at(self.batches_drawn)
        self.batches_drawn += 1
        return batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Plain-valued state (seed, rank, batches drawn); enough for an exact resume."""
        return {"seed": self.seed, "rank": self.rank, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the rank stays this process's own."""
        self.seed = int(state["seed"])
        self.batches_drawn = int(state["batches_drawn"])
