"""GAN losses against their closed forms, computed independently in float64 numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voiceconv.errors import ConfigError
from voiceconv.models.losses import GAN_MODES, GANLoss, gradient_penalty

torch.set_num_threads(1)

R = np.array([[2.0, -0.5, 0.3], [1.2, -3.0, 0.0]])
Fk = np.array([[-1.5, 0.7, 4.0], [0.1, -0.2, -2.5]])


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _closed_form(mode: str, r: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(discriminator loss, generator loss) straight from the papers' formulas."""
    if mode in ("vanilla", "nonsaturating"):
        d = -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f)))
        g = np.mean(np.log(1 - _sig(f))) if mode == "vanilla" else -np.mean(np.log(_sig(f)))
    elif mode == "lsgan":
        d = np.mean((r - 1) ** 2) + np.mean(f**2)
        g = np.mean((f - 1) ** 2)
    else:
        d = np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))
        g = -np.mean(f)
    return float(d), float(g)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_losses_match_closed_forms(mode: str) -> None:
    loss = GANLoss(mode)
    d_ref, g_ref = _closed_form(mode, R, Fk)
    assert float(loss.discriminator_loss(_t(R), _t(Fk))) == pytest.approx(d_ref, rel=1e-12)
    assert float(loss.generator_loss(_t(Fk))) == pytest.approx(g_ref, rel=1e-12)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_multiscale_lists_sum_the_scales(mode: str) -> None:
    loss = GANLoss(mode)
    r2, f2 = R[:, :2] * 0.5, Fk[:, 1:] - 1.0
    d1, g1 = _closed_form(mode, R, Fk)
    d2, g2 = _closed_form(mode, r2, f2)
    assert float(loss.discriminator_loss([_t(R), _t(r2)], [_t(Fk), _t(f2)])) == pytest.approx(d1 + d2)
    assert float(loss.generator_loss([_t(Fk), _t(f2)])) == pytest.approx(g1 + g2)
    with pytest.raises(ValueError):
        loss.discriminator_loss([_t(R)], [_t(Fk), _t(f2)])


def test_classic_call_matches_torch_criteria() -> None:
    r = _t(R)
    assert torch.allclose(GANLoss("vanilla")(r, True), nn.BCEWithLogitsLoss()(r, torch.ones_like(r)))
    assert torch.allclose(GANLoss("nonsaturating")(r, False), nn.BCEWithLogitsLoss()(r, torch.zeros_like(r)))
    assert torch.allclose(GANLoss("lsgan")(r, True), nn.MSELoss()(r, torch.ones_like(r)))
    assert torch.allclose(GANLoss("lsgan")(r, False), nn.MSELoss()(r, torch.zeros_like(r)))
    assert float(GANLoss("hinge")(r, True)) == pytest.approx(float(np.mean(np.maximum(0, 1 - R))))


def test_saturating_versus_nonsaturating_gradients() -> None:
    # d/df log(1 - sigmoid(f)) = -sigmoid(f); d/df -log sigmoid(f) = -(1 - sigmoid(f)).
    f = torch.tensor([-6.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    GANLoss("vanilla").generator_loss(f).backward()
    expected = -_sig(f.detach().numpy()) / 3
    np.testing.assert_allclose(f.grad.numpy(), expected, rtol=1e-12)
    f.grad = None
    GANLoss("nonsaturating").generator_loss(f).backward()
    np.testing.assert_allclose(f.grad.numpy(), -(1 - _sig(f.detach().numpy())) / 3, rtol=1e-12)


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        GANLoss("wgan")


def test_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)  # |grad| = 5 everywhere
    x = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    gp = gradient_penalty(x @ w, x)
    assert float(gp) == pytest.approx((5.0 - 1.0) ** 2)
