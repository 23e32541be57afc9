"""DCGAN (Radford et al. 2016), network factories, and an unconditional GAN wrapper."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import Parameter

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.blocks import NormKind, PatchDiscriminator, maybe_spectral_norm, norm_layer
from voiceconv.models.cyclegan import ResnetGenerator
from voiceconv.models.init import init_weights
from voiceconv.models.losses import GANLoss
from voiceconv.models.pix2pix import UNetGenerator


def _n_ups(image_size: int) -> int:
    """Number of 2x stages between 4x4 and ``image_size`` (a power of two >= 8)."""
    k = int(math.log2(image_size)) if image_size > 0 else 0
    if image_size < 8 or 2**k != image_size:
        raise ConfigError(f"DCGAN image_size must be a power of two >= 8, got {image_size}")
    return k - 2


class DCGANGenerator(SavableModule):
    """DCGAN generator: ``z -> 4x4`` by a 4x4 transposed conv, then stride-2 transposed
    convs (4x4) with batch norm and ReLU doubling the size, tanh output.

    Channels halve at each step, from ``base_channels * 2**(n-1)`` at 4x4 to
    ``base_channels`` before the output layer (64x64: 512-256-128-64, the paper's net).
    ``forward`` accepts ``z`` of shape ``(B, latent_dim)`` or ``(B, latent_dim, 1, 1)``.
    Weights N(0, 0.02), batch-norm scales N(1, 0.02), as in the paper.
    """

    def __init__(self, latent_dim: int = 100, out_channels: int = 3, image_size: int = 64,
                 base_channels: int = 64) -> None:
        super().__init__()
        self.save_hparams(latent_dim=latent_dim, out_channels=out_channels, image_size=image_size,
                          base_channels=base_channels)
        n = _n_ups(image_size)
        ch = base_channels * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU()
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2),
                       nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        init_weights(self)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.model(z)


class DCGANDiscriminator(SavableModule):
    """DCGAN discriminator: stride-2 4x4 convs with LeakyReLU(0.2) down to 4x4 (no norm
    on the first layer), then a 4x4 valid conv to one logit per image, shape ``(B,)``.

    Channels double from ``base_channels``. ``norm="batch"`` is the paper's;
    ``norm="none"`` with ``spectral_norm=True`` is Miyato et al.'s SN-DCGAN style.
    :meth:`features` returns the ``(B, C, 4, 4)`` trunk output (used by the projection
    discriminator of :class:`~voiceconv.models.cgan.ConditionalGAN`, built with
    ``head=False`` so that no unused parameters are left for the optimiser).
    """

    def __init__(self, in_channels: int = 3, image_size: int = 64, base_channels: int = 64,
                 norm: NormKind | str = "batch", spectral_norm: bool = False,
                 head: bool = True) -> None:
        super().__init__()
        self.save_hparams(in_channels=in_channels, image_size=image_size,
                          base_channels=base_channels, norm=norm, spectral_norm=spectral_norm,
                          head=head)
        n = _n_ups(image_size)
        sn = spectral_norm
        layers: list[nn.Module] = [
            maybe_spectral_norm(nn.Conv2d(in_channels, base_channels, 4, 2, 1), sn),
            nn.LeakyReLU(0.2),
        ]
        ch = base_channels
        for _ in range(n - 1):
            layers += [maybe_spectral_norm(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm != "batch"), sn),
                       norm_layer(norm, ch * 2, 2), nn.LeakyReLU(0.2)]
            ch *= 2
        self.trunk = nn.Sequential(*layers)
        self.feature_channels = ch
        self.head = maybe_spectral_norm(nn.Conv2d(ch, 1, 4, 1, 0), sn) if head else None
        init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        """Trunk activations at 4x4, ``(B, feature_channels, 4, 4)``."""
        return self.trunk(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.head is None:
            raise RuntimeError("DCGANDiscriminator built with head=False: use features()")
        return self.head(self.trunk(x)).flatten()


_G_PRESETS: dict[str, tuple[type[SavableModule], dict[str, Any]]] = {
    "dcgan": (DCGANGenerator, {}),
    "unet": (UNetGenerator, {}),
    "unet_128": (UNetGenerator, {"num_downs": 7}),
    "unet_256": (UNetGenerator, {"num_downs": 8}),
    "resnet": (ResnetGenerator, {}),
    "resnet_6blocks": (ResnetGenerator, {"n_blocks": 6}),
    "resnet_9blocks": (ResnetGenerator, {"n_blocks": 9}),
}
_D_PRESETS: dict[str, tuple[type[SavableModule], dict[str, Any]]] = {
    "dcgan": (DCGANDiscriminator, {}),
    "patch": (PatchDiscriminator, {}),
    "basic": (PatchDiscriminator, {"n_layers": 3}),
}


def _define(table: dict[str, tuple[type[SavableModule], dict[str, Any]]], what: str, name: str,
            init: str | None, init_gain: float, kw: dict[str, Any]) -> SavableModule:
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r} (expected one of {sorted(table)})")
    cls, preset = table[name]
    net = cls(**{**preset, **kw})
    if init is not None:
        init_weights(net, init, init_gain)
    return net


def define_G(name: str, init: str | None = "normal", init_gain: float = 0.02, **kw: Any) -> SavableModule:
    """Build a generator by name, pytorch-CycleGAN-and-pix2pix style.

    ``dcgan`` -> :class:`DCGANGenerator`; ``unet``/``unet_128``/``unet_256`` ->
    :class:`~voiceconv.models.pix2pix.UNetGenerator` (7 / 8 downsamplings);
    ``resnet``/``resnet_6blocks``/``resnet_9blocks`` ->
    :class:`~voiceconv.models.cyclegan.ResnetGenerator`. ``kw`` go to the constructor;
    weights are then initialised by :func:`init_weights` (``init=None`` keeps them).
    """
    return _define(_G_PRESETS, "generator", name, init, init_gain, kw)


def define_D(name: str, init: str | None = "normal", init_gain: float = 0.02, **kw: Any) -> SavableModule:
    """Build a discriminator by name: ``dcgan`` -> :class:`DCGANDiscriminator`;
    ``patch``/``basic`` (70x70 PatchGAN with ``n_layers=3``) -> :class:`PatchDiscriminator`."""
    return _define(_D_PRESETS, "discriminator", name, init, init_gain, kw)


class GAN(SavableModule):
    """Unconditional GAN over images with DCGAN nets and a selectable loss.

    ``gan_mode`` is one of :data:`~voiceconv.models.losses.GAN_MODES` (default
    ``"nonsaturating"``, the loss DCGAN trains with). ``d_norm="none",
    d_spectral_norm=True`` with ``gan_mode="hinge"`` gives an SN-GAN-style setup.
    Real batches are passed to the loss methods; the generator draws ``z ~ N(0, I)``.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 3,
        image_size: int = 64,
        base_channels: int = 64,
        gan_mode: str = "nonsaturating",
        d_norm: NormKind | str = "batch",
        d_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.save_hparams(latent_dim=latent_dim, channels=channels, image_size=image_size,
                          base_channels=base_channels, gan_mode=gan_mode, d_norm=d_norm,
                          d_spectral_norm=d_spectral_norm)
        self.generator = DCGANGenerator(latent_dim, channels, image_size, base_channels)
        self.discriminator = DCGANDiscriminator(channels, image_size, base_channels, d_norm,
                                                d_spectral_norm)
        self.gan_loss = GANLoss(gan_mode)
        self.latent_dim = latent_dim

    def _z(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from ``z ~ N(0, I)`` (no gradients; call ``eval()`` first)."""
        return self.generator(self._z(n, self._device(), generator))

    def generator_loss(self, batch: Tensor) -> Tensor:
        """Generator loss on ``len(batch)`` fresh samples (``batch`` gives size and device)."""
        fake = self.generator(self._z(batch.shape[0], batch.device))
        return self.gan_loss.generator_loss(self.discriminator(fake))

    def discriminator_loss(self, batch: Tensor, fake: Tensor | None = None) -> Tensor:
        """Discriminator loss on real ``batch`` vs ``fake`` (default: fresh detached samples)."""
        if fake is None:
            with torch.no_grad():
                fake = self.generator(self._z(batch.shape[0], batch.device))
        return self.gan_loss.discriminator_loss(self.discriminator(batch),
                                                self.discriminator(fake.detach()))

    def generator_parameters(self) -> Iterator[Parameter]:
        """Parameters of the generator."""
        return self.generator.parameters()

    def discriminator_parameters(self) -> Iterator[Parameter]:
        """Parameters of the discriminator."""
        return self.discriminator.parameters()


__all__ = ["DCGANDiscriminator", "DCGANGenerator", "GAN", "define_D", "define_G"]
