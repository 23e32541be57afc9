"""The pixel models behind the likelihood-ratio outlier scores: the local one and the
full-context PixelCNN."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN, PixelCNN

torch.set_num_threads(1)


def _fitted_nll(model: torch.nn.Module, batch: Callable[[int, torch.Generator], torch.Tensor], steps: int) -> float:
    """Adam (3e-3) on ``steps`` batches of 32 from ``batch(n, generator)``; the mean NLL of
    512 fresh images afterwards."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        loss = model.nll(batch(32, g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model.nll(batch(512, g)).mean().item()


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


@pytest.mark.parametrize("dilated", [True, False])
def test_pixelcnn_logits_see_only_earlier_pixels_and_far_ones(dilated: bool) -> None:
    torch.manual_seed(0)
    m = PixelCNN(channels=1, width=8, layers=6, dilated=dilated)
    for p in m.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    x = torch.rand(1, 1, 24, 24)
    i, j = 5, 6
    y = x.clone()
    y[0, 0, i, j] += 1.0
    diff = (m(x) - m(y)).abs()[0, 0] > 1e-7
    order = torch.arange(24 * 24).view(24, 24)
    assert not bool(diff[order <= i * 24 + j].any())  # causal: itself and every earlier pixel untouched
    reach = 3 + (1 + 2 + 4) * 2 if dilated else 3 + 6  # rows below that still see the pixel
    assert bool(diff[i + reach, j]) and not bool(diff[min(23, i + reach + 1):, j].any())


def test_pixelcnn_learns_a_long_range_copy_the_local_model_cannot() -> None:
    # Known answer: 16x16 binary images whose bottom 8 rows copy the top 8 (random bits):
    # the true NLL is 128 log 2 = 88.7 nats; a model that cannot see 8 rows up pays 256 log 2.
    def batch(n: int, g: torch.Generator) -> torch.Tensor:
        top = (torch.rand(n, 1, 8, 16, generator=g) < 0.5).float()
        return torch.cat([top, top], 2)

    results = {}
    for name, model in (("full", PixelCNN(1, width=16, layers=6)), ("local", LocalPixelCNN(1, 5, 16))):
        results[name] = _fitted_nll(model, batch, steps=150)
    true, uniform = 128 * math.log(2), 256 * math.log(2)
    assert results["full"] < true + 0.05 * (uniform - true)
    assert results["local"] > uniform - 0.01 * uniform


def test_pixelcnn_save_load_and_arguments(tmp_path) -> None:
    m = PixelCNN(1, width=8, layers=3)
    save_model(m, tmp_path / "pc.pt")
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(load_model(tmp_path / "pc.pt").nll(x), m.nll(x))
    with pytest.raises(ConfigError):
        PixelCNN(1, width=0)


def test_gated_pixelcnn_is_causal_and_has_no_blind_spot() -> None:
    # Which input pixels move the logit at (i, j): exactly the earlier ones within reach,
    # the upper right included (stacked masked convolutions never see that corner).
    torch.manual_seed(0)
    m = GatedPixelCNN(channels=1, width=8, layers=4, kernel=5).double()
    x = torch.rand(1, 1, 20, 20, dtype=torch.double, requires_grad=True)
    i, j = 12, 6
    (g,) = torch.autograd.grad(m(x)[0, 0, i, j], x)
    seen = g[0, 0].abs() > 0
    order = torch.arange(400).view(20, 20)
    assert not bool(seen[order >= i * 20 + j].any())  # itself and everything after it: unseen
    # first layer: 3 rows up, 2 columns either side, 3 to the left; then kernel // 2 per layer
    up, side = 3 + 2 * 3, 2 + 2 * 3
    rows, cols = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    window = (rows >= i - up) & (rows < i) & ((cols - j).abs() <= side)
    window |= (rows == i) & (cols < j) & (cols >= j - up)
    assert torch.equal(seen, window)
    # the plain PixelCNN misses the pixel five columns right of the one above
    p = PixelCNN(1, width=8, layers=6, dilated=False).double()
    (gp,) = torch.autograd.grad(p(x)[0, 0, i, j], x)
    assert bool(seen[i - 1, j + 5]) and not bool(gp[0, 0, i - 1, j + 5].abs() > 0)


def test_gated_pixelcnn_learns_an_upper_right_dependency_the_plain_one_cannot() -> None:
    # Known answer: 16x16 binary images whose every row is the row above moved 5 columns
    # left, with 5 fresh random bits on the right: 16 + 15 * 5 = 91 random bits, true NLL
    # 91 log 2 = 63.1 nats. Each copied bit's only earlier copies lie up and to the right,
    # in the plain PixelCNN's blind spot, so it pays log 2 for every pixel (256 log 2).
    def batch(n: int, g: torch.Generator) -> torch.Tensor:
        rows = [(torch.rand(n, 16, generator=g) < 0.5).float()]
        for _ in range(15):
            rows.append(torch.cat([rows[-1][:, 5:], (torch.rand(n, 5, generator=g) < 0.5).float()], 1))
        return torch.stack(rows, 1)[:, None]

    results = {}
    for name, model in (("gated", GatedPixelCNN(1, width=16, layers=4, kernel=5)),
                        ("plain", PixelCNN(1, width=16, layers=6, dilated=False))):
        results[name] = _fitted_nll(model, batch, steps=200)
    true, uniform = 91 * math.log(2), 256 * math.log(2)
    assert results["gated"] < true + 0.05 * (uniform - true)
    assert results["plain"] > uniform - 0.02 * uniform


def test_gated_pixelcnn_save_load_and_arguments(tmp_path) -> None:
    m = GatedPixelCNN(1, width=8, layers=2, kernel=3)
    save_model(m, tmp_path / "g.pt")
    x = torch.rand(2, 1, 10, 10)
    torch.testing.assert_close(load_model(tmp_path / "g.pt").nll(x), m.nll(x))
    with pytest.raises(ConfigError):
        GatedPixelCNN(1, kernel=4)


def test_gated_layer_gate_is_tanh_times_sigmoid() -> None:
    """The gate's one-sigmoid form equals van den Oord et al.'s ``tanh(a) * sigmoid(b)``."""
    layer = GatedPixelCNN(1, width=4, layers=1).layers[0]
    x = torch.randn(3, 8, 5, 5) * 4
    a, b = x[:, :4], x[:, 4:]
    torch.testing.assert_close(layer._gate(x), torch.tanh(a) * torch.sigmoid(b), atol=1e-6, rtol=1e-5)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(layer._gate(x_nhwc), torch.tanh(a) * torch.sigmoid(b), atol=1e-6, rtol=1e-5)
