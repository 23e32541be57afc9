"""Encoder and decoder networks shared by the latent-variable models.

Two families, both taking images ``(B, C, H, W)``:

* :class:`ConvEncoder` / :class:`ConvDecoder`: DCGAN-style (Radford et al., 2016)
  stacks of 4x4 stride-2 convolutions. Each stage halves (encoder) or doubles
  (decoder) both height and width, so ``H`` and ``W`` must each be divisible by
  ``2 ** len(hidden)``. Sizes need not be square nor powers of two: a log-mel patch
  of 80 mel bins by 64 frames works with ``image_size=(80, 64)`` and up to four
  stages (80 = 5 * 16).
* :class:`MLPEncoder` / :class:`MLPDecoder`: fully connected stacks for small
  images or flat feature vectors (``image_size=None`` means inputs are ``(B, C)``).

Encoders end in a linear layer producing ``out_features`` numbers per sample (a
model splits them into e.g. ``mu`` and ``logvar``); decoders map a ``(B, latent_dim)``
code to *pre-activation* outputs (logits): the owning model applies its output
non-linearity, so that one decoder serves Bernoulli (sigmoid) and Gaussian (linear)
likelihoods alike.

DCGAN conventions kept: no normalisation on the first encoder convolution nor on
the last decoder layer, LeakyReLU(0.2) in encoders, ReLU in decoders, batch norm
elsewhere (``norm="batch"``) or none at all (``norm="none"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule

ImageSize = int | Sequence[int]
"""An image size: ``n`` for ``n x n`` or ``(height, width)``."""

NORMS = ("batch", "none")
ARCHS = ("conv", "mlp")
DEFAULT_HIDDEN = {"conv": (32, 64, 128), "mlp": (512, 256)}


def as_hw(image_size: ImageSize) -> tuple[int, int]:
    """Normalise an image size to ``(height, width)``; raise :class:`ConfigError` if invalid."""
    if isinstance(image_size, int):
        hw = (image_size, image_size)
    else:
        hw = tuple(int(s) for s in image_size)
        if len(hw) != 2:
            raise ConfigError(f"image_size must be an int or (height, width), got {image_size!r}")
    if hw[0] < 1 or hw[1] < 1:
        raise ConfigError(f"image_size must be positive, got {image_size!r}")
    return hw  # type: ignore[return-value]


def _check_hidden(hidden: Sequence[int], what: str) -> tuple[int, ...]:
    widths = tuple(int(h) for h in hidden)
    if not widths or any(h < 1 for h in widths):
        raise ConfigError(
            f"{what}: hidden must be a non-empty list of positive widths, got {hidden!r}"
        )
    return widths


def _check_norm(norm: str, what: str) -> None:
    if norm not in NORMS:
        raise ConfigError(f"{what}: norm must be one of {NORMS}, got {norm!r}")


def conv_bottleneck(
    image_size: ImageSize, n_stages: int, what: str = "ConvEncoder"
) -> tuple[int, int]:
    """Spatial size after ``n_stages`` halvings; raise :class:`ConfigError` if not exact."""
    h, w = as_hw(image_size)
    factor = 2**n_stages
    if h % factor or w % factor:
        raise ConfigError(
            f"{what}: image_size {h}x{w} must be divisible by 2**{n_stages} = {factor} "
            f"(one halving per hidden layer); use fewer hidden layers or pad/crop the input"
        )
    return h // factor, w // factor


def check_image_batch(x: Tensor, channels: int, image_size: ImageSize | None, what: str) -> None:
    """Raise :class:`ConfigError` unless ``x`` is ``(B, channels, H, W)`` (or ``(B, channels)``
    when ``image_size`` is None)."""
    expected = (channels,) if image_size is None else (channels, *as_hw(image_size))
    if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ConfigError(
            f"{what} expects input of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
        )


class ConvEncoder(SavableModule):
    """Strided-convolution encoder: ``(B, C, H, W) -> (B, out_features)``.

    Stage ``i`` is ``Conv2d(k=4, s=2, p=1)`` to ``hidden[i]`` channels, then batch
    norm (except stage 0) and LeakyReLU(0.2); a final linear layer maps the
    flattened ``hidden[-1] x H/2^n x W/2^n`` feature map to ``out_features``.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize,
        hidden: Sequence[int] = DEFAULT_HIDDEN["conv"],
        out_features: int = 128,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        widths = _check_hidden(hidden, "ConvEncoder")
        _check_norm(norm, "ConvEncoder")
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            hidden=widths,
            out_features=out_features,
            norm=norm,
        )
        self.in_channels = in_channels
        self.image_size = as_hw(image_size)
        bh, bw = conv_bottleneck(image_size, len(widths), "ConvEncoder")
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            use_norm = norm == "batch" and i > 0
            layers.append(
                nn.Conv2d(prev, width, kernel_size=4, stride=2, padding=1, bias=not use_norm)
            )
            if use_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2))
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * bh * bw, out_features)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``(B, C, H, W)`` images to ``(B, out_features)``."""
        check_image_batch(x, self.in_channels, self.image_size, "ConvEncoder")
        return self.head(self.features(x).flatten(1))


class ConvDecoder(SavableModule):
    """Transposed-convolution decoder: ``(B, latent_dim) -> (B, C, H, W)`` logits.

    A linear layer maps the code to a ``hidden[-1] x H/2^n x W/2^n`` map, then each
    stage doubles the size with ``ConvTranspose2d(k=4, s=2, p=1)``, going through
    ``reversed(hidden)`` widths (batch norm + ReLU) and ending at ``out_channels``
    with no normalisation or activation. Mirrors :class:`ConvEncoder` given the same
    ``hidden``.
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: ImageSize,
        hidden: Sequence[int] = DEFAULT_HIDDEN["conv"],
        norm: str = "batch",
    ) -> None:
        super().__init__()
        widths = _check_hidden(hidden, "ConvDecoder")
        _check_norm(norm, "ConvDecoder")
        self.save_hparams(
            latent_dim=latent_dim,
            out_channels=out_channels,
            image_size=image_size,
            hidden=widths,
            norm=norm,
        )
        self.latent_dim = latent_dim
        self.out_channels = out_channels
        self.image_size = as_hw(image_size)
        self._bottleneck = conv_bottleneck(image_size, len(widths), "ConvDecoder")
        rev = widths[::-1]
        use_norm = norm == "batch"
        self.project = nn.Linear(
            latent_dim, rev[0] * math.prod(self._bottleneck), bias=not use_norm
        )
        self.project_act = nn.Sequential(
            *([nn.BatchNorm2d(rev[0])] if use_norm else []),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for width_in, width_out in zip(rev[:-1], rev[1:], strict=True):
            layers.append(
                nn.ConvTranspose2d(
                    width_in, width_out, kernel_size=4, stride=2, padding=1, bias=not use_norm
                )
            )
            if use_norm:
                layers.append(nn.BatchNorm2d(width_out))
            layers.append(nn.ReLU())
        layers.append(nn.ConvTranspose2d(rev[-1], out_channels, kernel_size=4, stride=2, padding=1))
        self.upsample = nn.Sequential(*layers)
        self._first_width = rev[0]

    def forward(self, z: Tensor) -> Tensor:
        """Decode ``(B, latent_dim)`` codes to ``(B, C, H, W)`` pre-activation outputs."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ConfigError(
                f"ConvDecoder expects codes of shape (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        bh, bw = self._bottleneck
        h = self.project(z).view(z.shape[0], self._first_width, bh, bw)
        return self.upsample(self.project_act(h))


class MLPEncoder(SavableModule):
    """Fully connected encoder: ``(B, C, H, W)`` (or ``(B, C)`` with ``image_size=None``)
    flattened, then ``Linear -> [BatchNorm1d] -> LeakyReLU(0.2)`` per hidden width and a
    final ``Linear`` to ``out_features``."""

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize | None,
        hidden: Sequence[int] = DEFAULT_HIDDEN["mlp"],
        out_features: int = 128,
        norm: str = "none",
    ) -> None:
        super().__init__()
        widths = _check_hidden(hidden, "MLPEncoder")
        _check_norm(norm, "MLPEncoder")
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            hidden=widths,
            out_features=out_features,
            norm=norm,
        )
        self.in_channels = in_channels
        self.image_size = None if image_size is None else as_hw(image_size)
        prev = in_channels * (1 if self.image_size is None else math.prod(self.image_size))
        layers: list[nn.Module] = []
        for width in widths:
            layers.append(nn.Linear(prev, width, bias=norm != "batch"))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(0.2))
            prev = width
        layers.append(nn.Linear(prev, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch to ``(B, out_features)``."""
        check_image_batch(x, self.in_channels, self.image_size, "MLPEncoder")
        return self.net(x.flatten(1))


class MLPDecoder(SavableModule):
    """Fully connected decoder: ``(B, latent_dim) -> (B, C, H, W)`` logits (``(B, C)``
    with ``image_size=None``), through ``reversed(hidden)`` widths with ReLU."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: ImageSize | None,
        hidden: Sequence[int] = DEFAULT_HIDDEN["mlp"],
        norm: str = "none",
    ) -> None:
        super().__init__()
        widths = _check_hidden(hidden, "MLPDecoder")
        _check_norm(norm, "MLPDecoder")
        self.save_hparams(
            latent_dim=latent_dim,
            out_channels=out_channels,
            image_size=image_size,
            hidden=widths,
            norm=norm,
        )
        self.latent_dim = latent_dim
        self.out_shape: tuple[int, ...] = (
            (out_channels,) if image_size is None else (out_channels, *as_hw(image_size))
        )
        prev = latent_dim
        layers: list[nn.Module] = []
        for width in widths[::-1]:
            layers.append(nn.Linear(prev, width, bias=norm != "batch"))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            prev = width
        layers.append(nn.Linear(prev, math.prod(self.out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Decode ``(B, latent_dim)`` codes to pre-activation outputs."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ConfigError(
                f"MLPDecoder expects codes of shape (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        return self.net(z).view(z.shape[0], *self.out_shape)


def build_encoder(
    arch: str,
    in_channels: int,
    image_size: ImageSize | None,
    hidden: Sequence[int] | None,
    out_features: int,
    norm: str,
) -> nn.Module:
    """Build a :class:`ConvEncoder` (``arch="conv"``) or :class:`MLPEncoder` (``"mlp"``);
    ``hidden=None`` picks the family's default widths."""
    if arch not in ARCHS:
        raise ConfigError(f"arch must be one of {ARCHS}, got {arch!r}")
    widths = DEFAULT_HIDDEN[arch] if hidden is None else hidden
    if arch == "conv":
        if image_size is None:
            raise ConfigError("arch='conv' needs an image_size; use arch='mlp' for flat vectors")
        return ConvEncoder(in_channels, image_size, widths, out_features, norm)
    return MLPEncoder(in_channels, image_size, widths, out_features, norm)


def build_decoder(
    arch: str,
    latent_dim: int,
    out_channels: int,
    image_size: ImageSize | None,
    hidden: Sequence[int] | None,
    norm: str,
) -> nn.Module:
    """Build the :class:`ConvDecoder` or :class:`MLPDecoder` mirroring :func:`build_encoder`."""
    if arch not in ARCHS:
        raise ConfigError(f"arch must be one of {ARCHS}, got {arch!r}")
    widths = DEFAULT_HIDDEN[arch] if hidden is None else hidden
    if arch == "conv":
        if image_size is None:
            raise ConfigError("arch='conv' needs an image_size; use arch='mlp' for flat vectors")
        return ConvDecoder(latent_dim, out_channels, image_size, widths, norm)
    return MLPDecoder(latent_dim, out_channels, image_size, widths, norm)


def output_activation(name: str, logits: Tensor) -> Tensor:
    """Apply a decoder output non-linearity: ``"sigmoid"`` or ``"linear"`` (identity)."""
    if name == "sigmoid":
        return torch.sigmoid(logits)
    if name == "linear":
        return logits
    raise ConfigError(f"output must be 'sigmoid' or 'linear', got {name!r}")
