"""The image loops' learning-rate schedule, precision and memory format."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voiceconv.errors import ConfigError
from voiceconv.images.data.sources import TensorImages
from voiceconv.images.loops import LoopConfig, fit_gan, fit_objective, lr_factor


def _images(n: int = 16, channels: int = 1) -> TensorImages:
    return TensorImages(torch.rand(n, channels, 8, 8), torch.zeros(n, dtype=torch.long))


def test_cosine_factor_matches_torch_cosine_annealing() -> None:
    steps, lr = 40, 0.1
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for step in range(steps):
        assert lr * lr_factor(step, steps, "cosine") == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()


def test_warmup_is_linear_then_cosine() -> None:
    assert [lr_factor(s, 1000, "cosine", warmup=4) for s in range(3)] == pytest.approx(
        [0.25 * (1 + torch.cos(torch.tensor(torch.pi * s / 1000)).item()) / 2 * (s + 1) for s in range(3)])
    assert lr_factor(500, 1000, "cosine", warmup=4) == pytest.approx(0.5)
    assert lr_factor(7, 10) == 1.0


def test_fit_objective_follows_the_schedule() -> None:
    """Loss = w has a constant gradient 1, so each Adam step moves w by lr_t / (1 + eps):
    after training, w = -sum of the scheduled learning rates (a closed form)."""
    w = nn.Parameter(torch.zeros(()))
    model = nn.Module()
    model.w = w
    steps, lr = 30, 0.01
    cfg = LoopConfig(steps=steps, batch_size=4, lr=lr, betas=(0.9, 0.999), schedule="cosine", warmup=5)
    fit_objective(model, _images(), cfg, lambda batch: {"loss": model.w * 1.0})
    expected = -sum(lr * lr_factor(s, steps, "cosine", 5) for s in range(steps))
    assert w.item() == pytest.approx(expected, rel=1e-5)
    const = nn.Module()
    const.w = nn.Parameter(torch.zeros(()))
    fit_objective(const, _images(), LoopConfig(steps=steps, lr=lr, betas=(0.9, 0.999)),
                  lambda batch: {"loss": const.w * 1.0})
    assert const.w.item() == pytest.approx(-steps * lr, rel=1e-5)


@pytest.mark.parametrize("precision, channels_last", [("fp32", False), ("bf16", True)])
def test_precision_and_memory_format_reach_the_objective(precision: str, channels_last: bool) -> None:
    conv = nn.Conv2d(3, 2, 3, padding=1)  # 3 channels: NCHW and NHWC strides differ
    seen = {}

    def objective(batch):
        out = conv(batch[0])
        seen.update(dtype=out.dtype, nhwc=batch[0].is_contiguous(memory_format=torch.channels_last)
                    and not batch[0].is_contiguous())
        return {"loss": out.float().pow(2).mean()}

    cfg = LoopConfig(steps=2, batch_size=4, precision=precision, channels_last=channels_last)
    fit_objective(conv, _images(channels=3), cfg, objective)
    assert seen["dtype"] == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert seen["nhwc"] is channels_last
    assert conv.weight.dtype == torch.float32 and conv.weight.is_contiguous()


class _SpyGAN(nn.Module):
    """A one-conv 'GAN' that records the dtype its conv computes in and the memory format
    of the real batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.d = nn.Conv2d(3, 2, 3, padding=1)
        self.g = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.seen: list[tuple[torch.dtype, bool]] = []

    def discriminator_loss(self, real):
        out = self.d(real)
        self.seen.append((out.dtype, real.is_contiguous(memory_format=torch.channels_last) and not real.is_contiguous()))
        return out.pow(2).mean()

    def generator_loss(self, real):
        out = self.d(self.g.expand_as(real))
        self.seen.append((out.dtype, True))
        self.d_trainable_in_g_step = self.d.weight.requires_grad
        return out.mean()

    def generator_parameters(self):
        return iter([self.g])

    def discriminator_parameters(self):
        return self.d.parameters()


@pytest.mark.parametrize("precision, channels_last", [("fp32", False), ("bf16", True)])
def test_gan_loop_honours_precision_and_memory_format(precision: str, channels_last: bool) -> None:
    m = _SpyGAN()
    fit_gan(m, _images(channels=3), LoopConfig(steps=2, batch_size=4, precision=precision, channels_last=channels_last))
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    assert len(m.seen) == 4 and all(dtype == want for dtype, _ in m.seen)
    assert all(nhwc is channels_last for _, nhwc in m.seen[::2])  # the real batches
    assert m.d.weight.dtype == torch.float32 and m.d.weight.is_contiguous()  # saved as before
    assert m.d.weight.grad is not None and m.d.weight.grad.dtype == torch.float32
    assert m.d_trainable_in_g_step is False and m.d.weight.requires_grad  # frozen for G, restored


class _LinearGAN(nn.Module):
    """Losses with constant gradients (1 for each player's one weight): each Adam step moves
    a weight by its scheduled learning rate (a closed form for the schedule)."""

    def __init__(self) -> None:
        super().__init__()
        self.g, self.d = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))

    def discriminator_loss(self, real):
        return self.d * 1.0 + 0 * real.sum()

    def generator_loss(self, real):
        return self.g * 1.0

    def generator_parameters(self):
        return iter([self.g])

    def discriminator_parameters(self):
        return iter([self.d])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_gan_loop_follows_the_schedule_for_both_players(schedule: str) -> None:
    m, steps, lr, d_lr = _LinearGAN(), 30, 0.01, 0.03
    fit_gan(m, _images(), LoopConfig(steps=steps, batch_size=4, lr=lr, d_lr=d_lr, betas=(0.9, 0.999),
                                     schedule=schedule, warmup=3))
    factors = [lr_factor(s, steps, schedule, 3) for s in range(steps)]
    assert m.g.item() == pytest.approx(-lr * sum(factors), rel=1e-5)
    assert m.d.item() == pytest.approx(-d_lr * sum(factors), rel=1e-5)


def test_bad_schedule_or_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="schedule"):
        LoopConfig(schedule="linear")
    with pytest.raises(ConfigError, match="precision"):
        LoopConfig(precision="fp16")
