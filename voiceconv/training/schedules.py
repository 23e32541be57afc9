"""Learning-rate schedules: constant, then linear decay to zero (CycleGAN-VC papers).

Kaneko et al. (CycleGAN-VC2, ICASSP 2019) keep the learning rate of each network
at its base value for the first half of training and decay it linearly to zero over
the second half. Here the knee (``decay_start``) and the end (``total_steps``) are
parameters. The generator and the discriminator each get THEIR OWN scheduler bound
to their own optimizer and base learning rate (2e-4 and 1e-4 by default); the public
MaskCycleGAN-VC implementation decayed the discriminator's rate on the generator's
optimizer, which both decays G twice as fast and never decays D.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from voiceconv.errors import ConfigError


def linear_decay_factor(step: int, decay_start: int, total_steps: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps.

    1 while ``step <= decay_start``; then ``(total_steps - step) / (total_steps -
    decay_start)``, reaching exactly 0 at ``total_steps`` and staying 0 after it.
    """
    if step >= total_steps:
        return 0.0
    if step <= decay_start:
        return 1.0
    return (total_steps - step) / (total_steps - decay_start)


class LinearDecayLR(LRScheduler):
    """Constant learning rate, then a linear ramp to 0 at ``total_steps``.

    Call :meth:`step` once after every ``optimizer.step()``. The rate is a closed
    form of the step count (no multiplicative drift), so :meth:`reschedule` can move
    the knee or the end of a resumed run and the rate jumps straight to the new curve.
    Its :meth:`state_dict` holds plain values only (it loads with ``weights_only=True``).
    """

    def __init__(
        self, optimizer: Optimizer, decay_start: int, total_steps: int, last_epoch: int = -1
    ) -> None:
        _check_schedule(decay_start, total_steps)
        self.decay_start = int(decay_start)
        self.total_steps = int(total_steps)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        factor = linear_decay_factor(max(self.last_epoch, 0), self.decay_start, self.total_steps)
        return [base * factor for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def reschedule(self, decay_start: int, total_steps: int) -> None:
        """Change the knee/end (e.g. a resumed run with a longer schedule) and re-apply."""
        _check_schedule(decay_start, total_steps)
        self.decay_start = int(decay_start)
        self.total_steps = int(total_steps)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # Put the restored step's rate into the optimizer (LRScheduler does not).
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr


def _check_schedule(decay_start: int, total_steps: int) -> None:
    if total_steps <= 0 or decay_start < 0 or decay_start > total_steps:
        raise ConfigError(
            f"learning-rate schedule needs 0 <= decay_start <= total_steps and total_steps > 0;"
            f" got decay_start={decay_start}, total_steps={total_steps}"
        )


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the optimizer's first parameter group (for logging)."""
    return float(optimizer.param_groups[0]["lr"])
