"""Building blocks and weight init, checked against torch.nn.functional references and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from voiceconv.errors import ConfigError
from voiceconv.models.blocks import (
    ConvNormAct,
    GatedConv,
    GatedUpsample,
    PatchDiscriminator,
    PixelShuffle1d,
    PixelUnshuffle1d,
    ResidualBlock,
    maybe_spectral_norm,
    norm_layer,
    pixel_shuffle,
)
from voiceconv.models.init import init_weights

torch.set_num_threads(1)


def _conv(dim: int):
    return F.conv1d if dim == 1 else F.conv2d


def _x(dim: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (2, channels, 16) if dim == 1 else (2, channels, 8, 10)
    return torch.randn(shape, generator=g)


@pytest.mark.parametrize("dim", [1, 2])
def test_instance_norm_normalises_each_example_and_channel(dim: int) -> None:
    x = _x(dim) * 3 + 2
    y = norm_layer("instance", 3, dim)(x)
    axes = tuple(range(2, x.dim()))
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, keepdim=True, unbiased=False)
    torch.testing.assert_close(y, (x - mean) / torch.sqrt(var + 1e-5))


@pytest.mark.parametrize("dim", [1, 2])
def test_norm_layer_batch_and_none(dim: int) -> None:
    x = _x(dim)
    assert torch.equal(norm_layer("none", 3, dim)(x), x)
    bn = norm_layer("batch", 3, dim)
    y = bn(x)
    axes = (0, *range(2, x.dim()))
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, keepdim=True, unbiased=False)
    torch.testing.assert_close(y, (x - mean) / torch.sqrt(var + 1e-5))
    with pytest.raises(ConfigError):
        norm_layer("layer", 3, dim)
    with pytest.raises(ConfigError):
        norm_layer("instance", 3, 3)


@pytest.mark.parametrize("dim", [1, 2])
def test_gated_conv_equals_glu_of_one_conv_split_in_halves(dim: int) -> None:
    gc = GatedConv(3, 4, 3, dim=dim, norm="none")
    x = _x(dim)
    w = torch.cat([gc.conv_a.weight, gc.conv_b.weight], dim=0)
    b = torch.cat([gc.conv_a.bias, gc.conv_b.bias], dim=0)
    ref = F.glu(_conv(dim)(x, w, b, padding=1), dim=1)
    torch.testing.assert_close(gc(x), ref)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("norm", ["none", "instance"])
def test_gated_conv_with_constant_gate_is_half_the_linear_branch(dim: int, norm: str) -> None:
    gc = GatedConv(3, 4, 3, dim=dim, norm=norm)
    with torch.no_grad():
        gc.conv_b.weight.zero_()
        gc.conv_b.bias.zero_()
    x = _x(dim)
    lin = _conv(dim)(x, gc.conv_a.weight, gc.conv_a.bias, padding=1)
    if norm == "instance":
        axes = tuple(range(2, x.dim()))
        lin = (lin - lin.mean(axes, keepdim=True)) / torch.sqrt(
            lin.var(axes, keepdim=True, unbiased=False) + 1e-5)
    torch.testing.assert_close(gc(x), 0.5 * lin)


def test_gated_conv_is_not_self_gating() -> None:
    gc = GatedConv(4, 4, 3, dim=1, norm="none")
    x = _x(1, channels=4)
    lin = F.conv1d(x, gc.conv_a.weight, gc.conv_a.bias, padding=1)
    assert not torch.allclose(gc(x), lin * torch.sigmoid(lin), atol=1e-3)
    assert not torch.allclose(gc(x), x * torch.sigmoid(x), atol=1e-3)


def test_gated_conv_stride_and_tuple_kernel_shapes() -> None:
    y = GatedConv(1, 6, (5, 15), dim=2)(torch.randn(2, 1, 20, 40))
    assert y.shape == (2, 6, 20, 40)
    y = GatedConv(6, 8, 5, stride=2, padding=2, dim=2)(y)
    assert y.shape == (2, 8, 10, 20)


def test_pixel_shuffle_1d_against_index_formula() -> None:
    b, c, r, t = 2, 3, 4, 5
    x = torch.randn(b, c * r, t)
    y = PixelShuffle1d(r)(x)
    assert y.shape == (b, c, t * r)
    for ci in range(c):
        for ti in range(t):
            for i in range(r):
                assert y[0, ci, ti * r + i] == x[0, ci * r + i, ti]
                assert y[1, ci, ti * r + i] == x[1, ci * r + i, ti]
    torch.testing.assert_close(PixelUnshuffle1d(r)(y), x, rtol=0, atol=0)


def test_pixel_shuffle_factory_and_2d_matches_torch() -> None:
    assert isinstance(pixel_shuffle(2, 1), PixelShuffle1d)
    x = torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(pixel_shuffle(2, 2)(x), F.pixel_shuffle(x, 2))


@pytest.mark.parametrize("dim", [1, 2])
def test_gated_upsample_doubles_every_axis(dim: int) -> None:
    x = _x(dim, channels=6)
    y = GatedUpsample(6, 5, 5, upscale_factor=2, dim=dim)(x)
    assert y.shape[:2] == (2, 5)
    assert y.shape[2:] == tuple(2 * s for s in x.shape[2:])


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_residual_block_adds_its_input(dim: int, kind: str) -> None:
    block = ResidualBlock(4, dim=dim, norm="none", kind=kind)
    x = _x(dim, channels=4)
    assert block(x).shape == x.shape
    last_conv = [m for m in block.body if isinstance(m, nn.Conv1d | nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.weight.zero_()
        last_conv.bias.zero_()
    torch.testing.assert_close(block(x), x)
    with pytest.raises(ConfigError):
        ResidualBlock(4, dim=dim, kind="dense")


def test_conv_norm_act_drops_bias_before_batch_norm() -> None:
    assert ConvNormAct(3, 4, 3, norm="batch")[0].bias is None
    assert ConvNormAct(3, 4, 3, norm="instance")[0].bias is not None
    y = ConvNormAct(3, 4, 3, dim=1, norm="none", act="tanh")(_x(1))
    assert y.abs().max() < 1


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def test_patch_discriminator_output_size_follows_conv_arithmetic() -> None:
    n = 256
    for s in (2, 2, 2, 1, 1):
        n = _conv_out(n, 4, s, 1)
    d = PatchDiscriminator(3, base_channels=2, n_layers=3, dim=2)
    with torch.no_grad():
        y = d(torch.randn(1, 3, 256, 256))
    assert y.shape == (1, 1, n, n)
    y1 = PatchDiscriminator(80, base_channels=4, n_layers=3, dim=1)(torch.randn(2, 80, 64))
    n1 = 64
    for s in (2, 2, 2, 1, 1):
        n1 = _conv_out(n1, 4, s, 1)
    assert y1.shape == (2, 1, n1)


@pytest.mark.parametrize("dim", [1, 2])
def test_patch_discriminator_receptive_field_is_70(dim: int) -> None:
    # Closed form: 1 + sum_i (k - 1) * prod(strides before layer i) = 1 + 3 * (1+2+4+8+8) = 70.
    strides = [2, 2, 2, 1, 1]
    expected = 1 + sum(3 * math.prod(strides[:i]) for i in range(len(strides)))
    d = PatchDiscriminator(1, base_channels=2, n_layers=3, dim=dim, norm="none")
    size = 160
    x = torch.randn((1, 1, size) if dim == 1 else (1, 1, size, size), requires_grad=True)
    y = d(x)
    centre = tuple(s // 2 for s in y.shape[2:])
    y[(0, 0, *centre)].backward()
    nz = x.grad[0, 0].abs() > 0
    extent = [int(nz.any(dim=other).sum()) for other in range(nz.dim())] if dim == 2 else [int(nz.sum())]
    assert extent == [expected] * dim


def test_spectral_norm_bounds_the_weight() -> None:
    lin = nn.Linear(6, 5)
    assert maybe_spectral_norm(lin, False) is lin
    sn = maybe_spectral_norm(nn.Linear(6, 5), True)
    for _ in range(30):  # power iteration runs in training mode
        sn(torch.randn(2, 6))
    sigma = torch.linalg.matrix_norm(sn.weight.detach(), ord=2)
    assert abs(float(sigma) - 1.0) < 1e-3
    d = PatchDiscriminator(3, base_channels=4, n_layers=2, spectral_norm=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    assert all(parametrize.is_parametrized(m, "weight") for m in convs)


@torch.no_grad()
def test_init_weights_normal_and_xavier_statistics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 64, 4), nn.BatchNorm2d(64), nn.Linear(256, 128))
    init_weights(net, "normal", 0.02)
    w = net[0].weight
    assert abs(float(w.std()) - 0.02) < 0.02 * 0.03
    assert abs(float(w.mean())) < 0.02 * 0.03
    assert torch.count_nonzero(net[0].bias) == 0
    assert abs(float(net[1].weight.mean()) - 1.0) < 0.02
    init_weights(net, "xavier", 0.02)
    fan_in, fan_out = 64 * 16, 64 * 16
    assert abs(float(net[0].weight.std()) / (0.02 * math.sqrt(2 / (fan_in + fan_out))) - 1) < 0.03
    init_weights(net, "kaiming")
    assert abs(float(net[2].weight.std()) / math.sqrt(2 / 256) - 1) < 0.03
    init_weights(net, "orthogonal", 1.0)
    w2 = net[2].weight  # (128, 256): orthonormal rows
    torch.testing.assert_close(w2 @ w2.T, torch.eye(128), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError):
        init_weights(net, "uniform")


@torch.no_grad()
def test_init_weights_reaches_through_spectral_norm() -> None:
    sn = maybe_spectral_norm(nn.Conv2d(64, 64, 4), True)
    init_weights(sn, "normal", 0.5)
    assert abs(float(sn.parametrizations.weight.original.std()) - 0.5) < 0.5 * 0.03
