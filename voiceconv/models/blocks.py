"""Convolutional building blocks shared by the image GANs and the VC models.

Every block works in one or two spatial dimensions (``dim=1`` for ``(B, C, T)``
sequences such as mel spectrograms read as 80-channel signals, ``dim=2`` for
``(B, C, H, W)`` images or mels read as one-channel images), so CycleGAN-VC's 1D
nets, CycleGAN-VC2's 2D-1D-2D nets and the image CycleGAN all draw from here.

Names are a fixed contract for :mod:`voiceconv.models.vc` and the other model
files: ``norm_layer``, ``maybe_spectral_norm``, ``ConvNormAct``, ``GatedConv``,
``PixelShuffle1d``, ``pixel_shuffle``, ``GatedUpsample``, ``ResidualBlock``,
``PatchDiscriminator``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.streaming import ChannelNorm

NormKind = Literal["instance", "batch", "channel", "none"]
ActKind = Literal["relu", "leaky_relu", "tanh", "sigmoid", "none"]
KernelSize = int | tuple[int, ...]

_NORMS = ("instance", "batch", "channel", "none")
_ACTS = ("relu", "leaky_relu", "tanh", "sigmoid", "none")
#: how :class:`GatedUpsample` computes its gate
GATES = ("conv", "split")


def _check_dim(dim: int) -> None:
    if dim not in (1, 2):
        raise ConfigError(f"dim must be 1 or 2, got {dim!r}")


def _tuple(value: KernelSize, dim: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dim
    value = tuple(int(v) for v in value)
    if len(value) != dim:
        raise ConfigError(f"expected {dim} values for a {dim}D convolution, got {value!r}")
    return value


def same_padding(kernel_size: KernelSize, dim: int) -> int | tuple[int, ...]:
    """Padding ``k // 2`` per axis: keeps the length for odd kernels at stride 1."""
    pads = tuple(k // 2 for k in _tuple(kernel_size, dim))
    return pads[0] if len(set(pads)) == 1 else pads


def conv_layer(
    in_channels: int,
    out_channels: int,
    kernel_size: KernelSize,
    stride: KernelSize = 1,
    padding: KernelSize | None = None,
    dim: int = 2,
    transpose: bool = False,
    output_padding: KernelSize = 0,
    bias: bool = True,
    padding_mode: str = "zeros",
) -> nn.Module:
    """``nn.Conv{dim}d`` (or ``ConvTranspose{dim}d``) with "same" padding by default."""
    _check_dim(dim)
    if padding is None:
        padding = same_padding(kernel_size, dim)
    if transpose:
        cls = nn.ConvTranspose1d if dim == 1 else nn.ConvTranspose2d
        return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                   output_padding=output_padding, bias=bias)
    cls = nn.Conv1d if dim == 1 else nn.Conv2d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
               bias=bias, padding_mode=padding_mode)


def norm_layer(kind: NormKind | str, channels: int, dim: int, affine: bool = True) -> nn.Module:
    """A per-channel normalisation layer.

    ``"instance"``: ``InstanceNorm{dim}d`` without running statistics (each example
    normalised by its own statistics, as in CycleGAN and CycleGAN-VC);
    ``"batch"``: ``BatchNorm{dim}d``; ``"channel"``: over the channels at each position
    (:class:`~voiceconv.models.streaming.ChannelNorm`, what a streaming net needs);
    ``"none"``: identity.
    """
    _check_dim(dim)
    if kind == "instance":
        cls = nn.InstanceNorm1d if dim == 1 else nn.InstanceNorm2d
        return cls(channels, affine=affine, track_running_stats=False)
    if kind == "batch":
        cls = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
        return cls(channels, affine=affine)
    if kind == "channel":
        return ChannelNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm kind {kind!r} (expected one of {_NORMS})")


def activation(kind: ActKind | str, negative_slope: float = 0.2) -> nn.Module:
    """``relu``, ``leaky_relu`` (slope ``negative_slope``), ``tanh``, ``sigmoid`` or ``none``."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if kind == "tanh":
        return nn.Tanh()
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown activation {kind!r} (expected one of {_ACTS})")


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module``'s ``weight`` in spectral normalisation (Miyato et al. 2018) if enabled.

    Uses :func:`torch.nn.utils.parametrizations.spectral_norm`; its power-iteration
    vectors are buffers, so they are saved with the state dict.
    """
    if not enabled:
        return module
    return nn.utils.parametrizations.spectral_norm(module)


class ConvNormAct(nn.Sequential):
    """Convolution -> normalisation -> activation, in 1D or 2D.

    The convolution drops its bias when followed by batch norm (the norm's shift
    makes it redundant), as in pytorch-CycleGAN-and-pix2pix.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize,
        stride: KernelSize = 1,
        padding: KernelSize | None = None,
        dim: int = 2,
        norm: NormKind | str = "instance",
        act: ActKind | str = "relu",
        transpose: bool = False,
        output_padding: KernelSize = 0,
        bias: bool | None = None,
        spectral_norm: bool = False,
        padding_mode: str = "zeros",
        negative_slope: float = 0.2,
    ) -> None:
        if bias is None:
            bias = norm != "batch"
        conv = conv_layer(in_channels, out_channels, kernel_size, stride, padding, dim,
                          transpose, output_padding, bias, padding_mode)
        super().__init__(
            maybe_spectral_norm(conv, spectral_norm),
            norm_layer(norm, out_channels, dim),
            activation(act, negative_slope),
        )


class GatedConv(nn.Module):
    """Gated linear unit convolution (Dauphin et al. 2017), as used by CycleGAN-VC/-VC2.

    ``y = norm_a(conv_a(x)) * sigmoid(norm_b(conv_b(x)))``: the gate is computed by
    its own convolution, so the unit can learn *which* features to pass — unlike
    ``x * sigmoid(x)`` (SiLU), which gates a signal by itself. Two separate
    convolutions are exactly equivalent to one convolution to ``2 * out_channels``
    whose output is split in halves (each output channel of a convolution, and each
    channel of instance/batch norm, is computed independently); we keep two named
    modules so the gate can be inspected.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize,
        stride: KernelSize = 1,
        padding: KernelSize | None = None,
        dim: int = 1,
        norm: NormKind | str = "instance",
        transpose: bool = False,
        output_padding: KernelSize = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        bias = norm != "batch"

        def make() -> nn.Module:
            conv = conv_layer(in_channels, out_channels, kernel_size, stride, padding, dim,
                              transpose, output_padding, bias)
            return maybe_spectral_norm(conv, spectral_norm)

        self.conv_a = make()
        self.conv_b = make()
        self.norm_a = norm_layer(norm, out_channels, dim)
        self.norm_b = norm_layer(norm, out_channels, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm_a(self.conv_a(x)) * torch.sigmoid(self.norm_b(self.conv_b(x)))


class PixelShuffle1d(nn.Module):
    """1D pixel shuffler (Shi et al. 2016; CycleGAN-VC): ``(B, C*r, T) -> (B, C, T*r)``.

    Channel ``c*r + i`` at time ``t`` goes to channel ``c`` at time ``t*r + i`` — the
    1D analogue of :class:`torch.nn.PixelShuffle`'s ordering.
    """

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        if upscale_factor < 1:
            raise ConfigError(f"upscale_factor must be >= 1, got {upscale_factor}")
        self.upscale_factor = int(upscale_factor)

    def forward(self, x: Tensor) -> Tensor:
        b, cr, t = x.shape
        r = self.upscale_factor
        if cr % r:
            raise ValueError(f"PixelShuffle1d: {cr} channels not divisible by factor {r}")
        return x.reshape(b, cr // r, r, t).transpose(2, 3).reshape(b, cr // r, t * r)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle1d(nn.Module):
    """Inverse of :class:`PixelShuffle1d`: ``(B, C, T*r) -> (B, C*r, T)``."""

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        if downscale_factor < 1:
            raise ConfigError(f"downscale_factor must be >= 1, got {downscale_factor}")
        self.downscale_factor = int(downscale_factor)

    def forward(self, x: Tensor) -> Tensor:
        b, c, tr = x.shape
        r = self.downscale_factor
        if tr % r:
            raise ValueError(f"PixelUnshuffle1d: length {tr} not divisible by factor {r}")
        return x.reshape(b, c, tr // r, r).transpose(2, 3).reshape(b, c * r, tr // r)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


def pixel_shuffle(upscale_factor: int, dim: int) -> nn.Module:
    """``PixelShuffle1d(r)`` for ``dim=1``; ``nn.PixelShuffle(r)`` (``C*r*r -> C``) for ``dim=2``."""
    _check_dim(dim)
    return PixelShuffle1d(upscale_factor) if dim == 1 else nn.PixelShuffle(upscale_factor)


class GatedUpsample(nn.Module):
    """CycleGAN-VC/-VC2 upsampling block: conv -> pixel shuffle -> norm -> GLU.

    Two ways to get the GLU's gate, both a real gated linear unit ``a * sigmoid(b)``
    with a learned gate (never ``x * sigmoid(x)``):

    * ``gate="conv"``: the gate has its own convolution. Each branch is
      ``norm(shuffle(conv(x)))`` with a convolution to ``out_channels * r**dim``
      channels; the output has ``out_channels`` channels.
    * ``gate="split"``: ONE convolution to ``2 * out_channels * r**dim`` channels,
      shuffled and normalised, whose channels are split in halves ``(a, b)``
      (Dauphin et al.'s formulation, :func:`torch.nn.functional.glu`). Same output
      shape as ``"conv"`` for the same ``out_channels``; a CycleGAN-VC2 figure entry
      "c1024 -> PixelShuffler -> GLU" read this way is ``out_channels = 1024 / r**2 / 2``.

    Every spatial axis of the output is ``r`` times longer than the input's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize,
        upscale_factor: int = 2,
        dim: int = 1,
        norm: NormKind | str = "instance",
        padding: KernelSize | None = None,
        gate: Literal["conv", "split"] | str = "conv",
    ) -> None:
        super().__init__()
        if gate not in GATES:
            raise ConfigError(f"GatedUpsample: gate must be one of {GATES}, got {gate!r}")
        self.gate = gate
        bias = norm != "batch"
        expanded = out_channels * upscale_factor**dim

        def branch(factor: int) -> nn.Sequential:
            return nn.Sequential(
                conv_layer(in_channels, factor * expanded, kernel_size, 1, padding, dim, bias=bias),
                pixel_shuffle(upscale_factor, dim),
                norm_layer(norm, factor * out_channels, dim),
            )

        if gate == "conv":
            self.branch_a = branch(1)
            self.branch_b = branch(1)
        else:
            self.branch = branch(2)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate == "conv":
            return self.branch_a(x) * torch.sigmoid(self.branch_b(x))
        a, b = self.branch(x).chunk(2, dim=1)
        return a * torch.sigmoid(b)


class ResidualBlock(nn.Module):
    """Residual block ``x + F(x)`` in 1D or 2D.

    ``kind="plain"`` (Zhu et al. CycleGAN generator; He et al.):
    ``F = conv3-norm-ReLU-[dropout]-conv3-norm`` with reflection padding.
    ``kind="gated"`` (CycleGAN-VC/-VC2): ``F = GatedConv(channels -> hidden) ->
    conv(hidden -> channels) -> norm``; ``hidden_channels`` defaults to
    ``2 * channels`` (512 -> 1024 -> 512 in CycleGAN-VC, 256 -> 512 -> 256 in VC2).
    """

    def __init__(
        self,
        channels: int,
        dim: int = 2,
        norm: NormKind | str = "instance",
        kind: Literal["plain", "gated"] | str = "plain",
        kernel_size: KernelSize = 3,
        hidden_channels: int | None = None,
        dropout: float = 0.0,
        padding_mode: str | None = None,
    ) -> None:
        super().__init__()
        bias = norm != "batch"
        if kind == "plain":
            hidden = hidden_channels or channels
            mode = padding_mode or "reflect"
            layers: list[nn.Module] = [
                conv_layer(channels, hidden, kernel_size, dim=dim, bias=bias, padding_mode=mode),
                norm_layer(norm, hidden, dim),
                nn.ReLU(),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers += [
                conv_layer(hidden, channels, kernel_size, dim=dim, bias=bias, padding_mode=mode),
                norm_layer(norm, channels, dim),
            ]
        elif kind == "gated":
            hidden = hidden_channels or 2 * channels
            mode = padding_mode or "zeros"
            layers = [GatedConv(channels, hidden, kernel_size, dim=dim, norm=norm)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers += [
                conv_layer(hidden, channels, kernel_size, dim=dim, bias=bias, padding_mode=mode),
                norm_layer(norm, channels, dim),
            ]
        else:
            raise ConfigError(f"unknown residual block kind {kind!r} (expected 'plain' or 'gated')")
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PatchDiscriminator(SavableModule):
    """PatchGAN discriminator (Isola et al. 2017; Zhu et al. 2017), 1D or 2D.

    ``conv(k, s2)-LReLU``, then ``n_layers - 1`` blocks ``conv(k, s2)-norm-LReLU``
    with channels doubling up to ``8 * base_channels``, one ``conv(k, s1)-norm-LReLU``
    and a final ``conv(k, s1)`` to one channel. With ``dim=2, kernel_size=4,
    n_layers=3`` every output logit sees a 70x70 input patch (the "70x70 PatchGAN").
    ``dim=1`` is the same stack with 1D convolutions (for ``(B, n_mels, T)`` input).

    Returns raw logits ``(B, 1, *patches)`` — no sigmoid; :class:`GANLoss` takes logits.
    A :class:`SavableModule`, so it can be handed to the CycleGAN container directly.
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 64,
        n_layers: int = 3,
        dim: int = 2,
        norm: NormKind | str = "instance",
        spectral_norm: bool = False,
        kernel_size: int = 4,
    ) -> None:
        super().__init__()
        self.save_hparams(in_channels=in_channels, base_channels=base_channels, n_layers=n_layers,
                          dim=dim, norm=norm, spectral_norm=spectral_norm, kernel_size=kernel_size)
        if n_layers < 1:
            raise ConfigError(f"n_layers must be >= 1, got {n_layers}")
        pad = 1 if kernel_size == 4 else kernel_size // 2
        lrelu = "leaky_relu"
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, base_channels, kernel_size, 2, pad, dim, "none", lrelu,
                        bias=True, spectral_norm=spectral_norm)
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers.append(ConvNormAct(base_channels * prev, base_channels * mult, kernel_size, 2,
                                      pad, dim, norm, lrelu, spectral_norm=spectral_norm))
        prev, mult = mult, min(2**n_layers, 8)
        layers.append(ConvNormAct(base_channels * prev, base_channels * mult, kernel_size, 1, pad,
                                  dim, norm, lrelu, spectral_norm=spectral_norm))
        final = conv_layer(base_channels * mult, 1, kernel_size, 1, pad, dim)
        layers.append(maybe_spectral_norm(final, spectral_norm))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


__all__ = [
    "ActKind",
    "ConvNormAct",
    "GatedConv",
    "GatedUpsample",
    "NormKind",
    "PatchDiscriminator",
    "PixelShuffle1d",
    "PixelUnshuffle1d",
    "ResidualBlock",
    "activation",
    "conv_layer",
    "maybe_spectral_norm",
    "norm_layer",
    "pixel_shuffle",
    "same_padding",
]
