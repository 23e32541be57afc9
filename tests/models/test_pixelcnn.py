"""The local pixel model behind the likelihood-ratio outlier score."""

from __future__ import annotations

import math

import pytest
import torch

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.pixelcnn import LocalPixelCNN

torch.set_num_threads(1)


def test_each_logit_sees_only_earlier_pixels_within_the_kernel() -> None:
    torch.manual_seed(0)
    m = LocalPixelCNN(channels=2, kernel_size=5, hidden=8)
    for p in m.parameters():
        torch.nn.init.normal_(p, 0, 0.5)
    x = torch.rand(1, 2, 9, 9)
    i, j = 4, 4
    y = x.clone()
    y[0, :, i, j] += 1.0  # change one pixel (both channels)
    diff = (m(x) - m(y)).abs().sum(1)[0] > 1e-6  # (H, W): which logits moved
    order = torch.arange(81).view(9, 9)
    assert not bool(diff[order <= i * 9 + j].any())  # itself and everything before it: untouched
    assert bool(diff[i, j + 1]) and bool(diff[i + 2, j - 2]) and bool(diff[i + 1, j])
    assert not bool(diff[i + 3, j]) and not bool(diff[i, j + 3])  # beyond the 5x5 neighbourhood


def test_nll_is_the_bernoulli_closed_form() -> None:
    m = LocalPixelCNN(channels=1, kernel_size=3, hidden=4, layers=1)
    for p in m.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        m.net[-1].bias.fill_(math.log(3.0))  # p(pixel = 1) = 0.75 everywhere
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, :2] = 1  # 8 lit pixels, 8 dark
    expected = torch.tensor([8 * -math.log(0.75) + 8 * -math.log(0.25), 16 * -math.log(0.25)])
    torch.testing.assert_close(m.nll(x), expected)


def test_save_load_and_arguments(tmp_path) -> None:
    m = LocalPixelCNN(1, 5, 8)
    save_model(m, tmp_path / "bg.pt")
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(load_model(tmp_path / "bg.pt").nll(x), m.nll(x))
    with pytest.raises(ConfigError):
        LocalPixelCNN(1, kernel_size=4)
