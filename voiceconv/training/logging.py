"""TensorBoard logging for training runs (rank 0 only).

:class:`TrainLogger` writes to ``<run_dir>/tb``: scalars (losses, learning rates,
steps/s), log-mel images (source / converted / cycled, drawn with matplotlib's
Agg backend, so no display is needed) and, when a ``vocode`` callable is injected,
audio of those mels. ``vocode`` takes a DEnormalised log-mel ``(n_mels, T)`` array
and returns a 1-D waveform; the Griffin-Lim vocoder of :mod:`voiceconv.vocoders`
fits. On ranks other than 0 (``enabled=False``) every method is a no-op and no
file is opened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceconv.training.schedules import current_lr

Vocode = Callable[[np.ndarray], np.ndarray]


class StepRate:
    """Optimizer steps per second between successive calls (the first: since construction)."""

    def __init__(self, step: int) -> None:
        self._time, self._step = time.perf_counter(), step

    def __call__(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self._step) / max(now - self._time, 1e-9)
        self._time, self._step = now, step
        return rate


def train_scalars(losses: Mapping[str, float], opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                  steps_per_s: float) -> dict[str, float]:
    """The scalars a GAN training loop logs: ``loss/<name>``, both learning rates, speed."""
    return {
        **{f"loss/{k}": v for k, v in losses.items()},
        "lr/generator": current_lr(opt_g),
        "lr/discriminator": current_lr(opt_d),
        "speed/steps_per_s": steps_per_s,
    }


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def mel_figure(mels: Mapping[str, Any], title: str | None = None) -> Any:
    """A matplotlib figure with one log-mel image ``(n_mels, T)`` per entry, stacked."""
    # A bare Figure (no pyplot) renders through Agg and leaves no global figure state.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.2 * len(mels)), dpi=80)
    axes = fig.subplots(len(mels), 1, squeeze=False)[:, 0]
    for ax, (name, mel) in zip(axes, mels.items(), strict=True):
        img = ax.imshow(_to_numpy(mel), origin="lower", aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("mel bin")
        fig.colorbar(img, ax=ax)
    axes[-1].set_xlabel("frame")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class TrainLogger:
    """Rank-0 TensorBoard writer with mel-image and optional audio helpers.

    Args:
        log_dir: where the event files go (e.g. ``run_dir/tb``).
        enabled: False on non-zero ranks: nothing is written or opened.
        vocode: optional ``vocode(denormalised_log_mel) -> waveform``.
        sample_rate: rate of the waveforms ``vocode`` returns.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        enabled: bool = True,
        vocode: Vocode | None = None,
        sample_rate: int = 22050,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self.vocode = vocode
        self.sample_rate = int(sample_rate)
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, step: int, values: Mapping[str, float | torch.Tensor]) -> None:
        """Log each ``name: value`` as a scalar at ``step``."""
        if self._writer is None:
            return
        for name, value in values.items():
            v = value.item() if isinstance(value, torch.Tensor) else float(value)
            self._writer.add_scalar(name, v, global_step=step)

    def mel_images(self, step: int, tag: str, mels: Mapping[str, Any]) -> None:
        """One figure of stacked log-mel images (e.g. source, converted, cycled)."""
        if self._writer is None:
            return
        fig = mel_figure(mels, title=f"{tag} @ step {step}")
        self._writer.add_figure(tag, fig, global_step=step, close=False)

    def audio(self, step: int, tag: str, log_mel_denormalised: Any) -> None:
        """Vocode a denormalised log-mel ``(n_mels, T)`` and log it (needs ``vocode``)."""
        if self._writer is None or self.vocode is None:
            return
        wav = np.asarray(self.vocode(_to_numpy(log_mel_denormalised)), dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(wav))) if wav.size else 0.0
        if peak > 1.0:
            wav = wav / peak
        self._writer.add_audio(tag, torch.from_numpy(wav), global_step=step, sample_rate=self.sample_rate)

    def flush(self) -> None:
        """Push pending events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
