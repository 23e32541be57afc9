"""Progressive GAN: growth, fade-in endpoints, PGGAN layers against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.progressive import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    ProgressiveGAN,
)

torch.set_num_threads(1)


def _model(**kw) -> ProgressiveGAN:
    args = {"latent_dim": 8, "channels": 3, "max_resolution": 32, "max_channels": 8,
            "channel_base": 64}
    args.update(kw)
    torch.manual_seed(0)
    return ProgressiveGAN(**args)


def _up(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling by repetition (independent of F.interpolate)."""
    return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


def _pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 block means, computed by reshaping."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def test_resolution_after_each_grow() -> None:
    m = _model()
    z = torch.randn(2, 8)
    sizes = [m(z).shape[-1]]
    while m.resolution < 32:
        m.grow()
        assert m.alpha == 0.0
        m.set_alpha(0.5)
        sizes.append(m(z).shape[-1])
        assert m.discriminate(m(z)).shape == (2,)
    assert sizes == [4, 8, 16, 32]
    with pytest.raises(ConfigError):
        m.grow()
    with pytest.raises(ConfigError):
        m.set_stage(12)
    with pytest.raises(ConfigError):
        m.set_stage(16, 1.5)


@pytest.mark.parametrize("res", [8, 16, 32])
def test_generator_fade_endpoints(res: int) -> None:
    m = _model()
    z = torch.randn(3, 8)
    with torch.no_grad():
        m.set_stage(res // 2, 1.0)
        old = _up(m(z))
        m.set_stage(res, 1.0)
        new = m(z)
        m.set_stage(res, 0.0)
        torch.testing.assert_close(m(z), old, rtol=0, atol=0)
        m.set_stage(res, 0.3)
        torch.testing.assert_close(m(z), old + 0.3 * (new - old), rtol=1e-5, atol=1e-6)
        # alpha = 1: the previous resolution's to_rgb is not used at all.
        m.generator.to_rgb[str(res // 2)].weight.add_(1.0)
        m.set_stage(res, 1.0)
        torch.testing.assert_close(m(z), new, rtol=0, atol=0)


@pytest.mark.parametrize("res", [8, 16])
def test_discriminator_fade_endpoints(res: int) -> None:
    m = _model()
    x = torch.randn(4, 3, res, res)
    with torch.no_grad():
        m.set_stage(res // 2, 1.0)
        old = m.discriminate(_pool(x))
        m.set_stage(res, 1.0)
        new = m.discriminate(x)
        m.set_stage(res, 0.0)
        torch.testing.assert_close(m.discriminate(x), old, rtol=1e-5, atol=1e-6)
        m.discriminator.from_rgb[str(res // 2)].weight.add_(1.0)
        m.set_stage(res, 1.0)
        torch.testing.assert_close(m.discriminate(x), new, rtol=0, atol=0)


def test_prepare_real_pools_and_blends() -> None:
    m = _model()
    x = torch.randn(2, 3, 32, 32)
    m.set_stage(8, 1.0)
    torch.testing.assert_close(m.prepare_real(x), _pool(_pool(x)))
    m.set_stage(8, 0.0)
    torch.testing.assert_close(m.prepare_real(x), _up(_pool(_pool(_pool(x)))))
    with pytest.raises(ValueError):
        m.prepare_real(torch.randn(1, 3, 12, 12))


def test_pixel_norm_gives_unit_mean_square() -> None:
    x = torch.randn(2, 5, 3, 3) * 7
    y = PixelNorm()(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), rtol=1e-5, atol=1e-5)


def test_minibatch_stddev_against_numpy() -> None:
    x = torch.randn(8, 3, 2, 2)
    y = MinibatchStdDev(group_size=4)(x)
    assert y.shape == (8, 4, 2, 2)
    torch.testing.assert_close(y[:, :3], x)
    xn = x.numpy().astype(np.float64)
    for i in range(8):
        members = [j for j in range(8) if j % 2 == i % 2]  # groups are strided: i, i+2, i+4, i+6
        expected = np.std(xn[members], axis=0).mean()
        assert np.allclose(y[i, 3].numpy(), expected, rtol=1e-4)
    y6 = MinibatchStdDev(group_size=4)(torch.randn(6, 2, 1, 1))  # largest divisor <= 4 is 3
    assert y6.shape == (6, 3, 1, 1)


def test_equalized_layers_scale_by_he_constant() -> None:
    conv = EqualizedConv2d(8, 4, 3, padding=1)
    x = torch.randn(2, 8, 5, 5)
    ref = F.conv2d(x, conv.weight * math.sqrt(2) / math.sqrt(8 * 9), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)
    lin = EqualizedLinear(16, 3, gain=1.0)
    v = torch.randn(4, 16)
    torch.testing.assert_close(lin(v), v @ (lin.weight / 4.0).T + lin.bias)
    big = EqualizedConv2d(64, 64, 3)
    assert abs(float(big.weight.detach().std()) - 1.0) < 0.03  # N(0, 1) storage


def test_critic_loss_falls_on_a_fixed_split() -> None:
    m = _model()
    m.set_stage(8, 0.5)
    real = torch.rand(4, 3, 8, 8) * 2 - 1
    fake = m.sample(4)
    opt = torch.optim.Adam(m.discriminator_parameters(), 1e-3, betas=(0.0, 0.99))
    losses = []
    for _ in range(20):
        loss = m.discriminator_loss(real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]


def test_nonsaturating_option_and_gradient_routing() -> None:
    m = _model(loss="nonsaturating")
    m.set_stage(16, 0.25)
    real = torch.randn(4, 3, 32, 32)
    m.discriminator_loss(real).backward()
    assert all(p.grad is None for p in m.generator_parameters())
    m.zero_grad(set_to_none=True)
    m.generator_loss(real).backward()
    assert any(p.grad is not None for p in m.generator_parameters())
    with pytest.raises(ConfigError):
        _model(loss="hinge")


def test_save_load_keeps_stage_and_outputs(tmp_path) -> None:
    m = _model()
    m.set_stage(16, 0.4)
    save_model(m, tmp_path / "pg.pt")
    loaded = load_model(tmp_path / "pg.pt")
    assert loaded.resolution == 16 and loaded.alpha == pytest.approx(0.4)
    z = torch.randn(2, 8)
    assert torch.equal(m(z), loaded(z))
