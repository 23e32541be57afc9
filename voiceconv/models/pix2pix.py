"""pix2pix (Isola et al. 2017): paired image-to-image translation with a U-Net and a PatchGAN."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.blocks import NormKind, PatchDiscriminator, norm_layer
from voiceconv.models.init import init_weights
from voiceconv.models.losses import GANLoss


class _UNetLevel(nn.Module):
    """One level of the U-Net: ``down -> inner -> up`` with a skip connection around it.

    Outermost: ``conv -> inner -> ReLU -> convT -> tanh`` (no skip, no norms);
    innermost: ``LReLU -> conv -> ReLU -> convT -> norm``; middle:
    ``LReLU -> conv -> norm -> inner -> ReLU -> convT -> norm [-> dropout]``.
    Non-outermost levels return ``cat([x, f(x)], dim=1)``.
    """

    def __init__(self, outer: int, inner: int, in_ch: int, sub: nn.Module | None,
                 outermost: bool, norm: str, dropout: float) -> None:
        super().__init__()
        bias = norm != "batch"
        self.outermost = outermost
        down_conv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=bias)
        if outermost:
            assert sub is not None
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [down_conv, sub, nn.ReLU(), up_conv, nn.Tanh()]
        elif sub is None:  # innermost
            up_conv = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down_conv, nn.ReLU(), up_conv, norm_layer(norm, outer, 2)]
        else:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down_conv, norm_layer(norm, inner, 2), sub, nn.ReLU(),
                      up_conv, norm_layer(norm, outer, 2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UNetGenerator(SavableModule):
    """U-Net generator of pix2pix (Isola et al. 2017), images ``(B, C, H, W)``.

    ``num_downs`` stride-2 encoder convolutions (4x4) halve the size down to
    ``H / 2**num_downs``; the decoder mirrors them with transposed convolutions and
    every decoder level receives the matching encoder features by concatenation.
    Channels at encoder level ``i`` are ``base_channels * min(2**i, 8)``; levels ``i >= 4``
    other than the innermost use dropout (``dropout=0.5`` in the paper, the only noise
    source, kept at test time there — here ``eval()`` turns it off, call ``train()`` to
    keep it). ``num_downs=8`` is the paper's 256x256 net; ``H`` and ``W`` must be
    divisible by ``2**num_downs``. Output in [-1, 1] (tanh).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: NormKind | str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hparams(in_channels=in_channels, out_channels=out_channels, num_downs=num_downs,
                          base_channels=base_channels, norm=norm, dropout=dropout)
        if num_downs < 2:
            raise ConfigError(f"UNetGenerator needs num_downs >= 2, got {num_downs}")

        def ch(i: int) -> int:
            return base_channels * min(2**i, 8)

        level: nn.Module | None = None
        for i in range(num_downs - 1, 0, -1):
            innermost = i == num_downs - 1
            level = _UNetLevel(ch(i - 1), ch(i), ch(i - 1), level, False, norm,
                               dropout if (i >= 4 and not innermost) else 0.0)
        self.model = _UNetLevel(out_channels, ch(0), in_channels, level, True, norm, 0.0)
        self.num_downs = num_downs

    def forward(self, x: Tensor) -> Tensor:
        factor = 2**self.num_downs
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"UNetGenerator: spatial size {tuple(x.shape[-2:])} not divisible by {factor}")
        return self.model(x)


@dataclass
class Pix2PixOutput:
    """Result of :meth:`Pix2Pix.generator_loss`: graph-carrying ``loss``, detached ``logs``
    and the detached ``fake`` for the discriminator step."""

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    fake: Tensor | None = None


class Pix2Pix(SavableModule):
    """pix2pix: conditional GAN ``G(src) ~ tgt`` with a PatchGAN judging ``(src, image)`` pairs.

    Generator loss: ``adv(D(cat(src, G(src)))) + lambda_l1 * |G(src) - tgt|_1``;
    discriminator loss: ``0.5 * (real term on cat(src, tgt) + fake term on cat(src, fake))``
    (the paper divides D's objective by 2). ``gan_mode`` defaults to
    ``"nonsaturating"``, the paper's ``-log D(x, G(x))`` generator loss (called
    "vanilla" in pytorch-CycleGAN-and-pix2pix). Weights are drawn from N(0, 0.02).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: NormKind | str = "batch",
        dropout: float = 0.5,
        d_base_channels: int = 64,
        d_layers: int = 3,
        gan_mode: str = "nonsaturating",
        lambda_l1: float = 100.0,
    ) -> None:
        super().__init__()
        self.save_hparams(in_channels=in_channels, out_channels=out_channels, num_downs=num_downs,
                          base_channels=base_channels, norm=norm, dropout=dropout,
                          d_base_channels=d_base_channels, d_layers=d_layers, gan_mode=gan_mode,
                          lambda_l1=lambda_l1)
        self.generator = init_weights(
            UNetGenerator(in_channels, out_channels, num_downs, base_channels, norm, dropout))
        self.discriminator = init_weights(
            PatchDiscriminator(in_channels + out_channels, d_base_channels, d_layers, 2, norm))
        self.gan_loss = GANLoss(gan_mode)
        self.lambda_l1 = float(lambda_l1)

    def forward(self, src: Tensor) -> Tensor:
        return self.generator(src)

    @torch.no_grad()
    def translate(self, src: Tensor) -> Tensor:
        """``G(src)`` without gradients (call ``eval()`` first for deterministic output)."""
        return self.generator(src)

    def generator_loss(self, src: Tensor, tgt: Tensor) -> Pix2PixOutput:
        """Adversarial + ``lambda_l1`` * L1 loss of the generator on one paired batch."""
        fake = self.generator(src)
        adv = self.gan_loss.generator_loss(self.discriminator(torch.cat([src, fake], 1)))
        l1 = F.l1_loss(fake, tgt)
        loss = adv + self.lambda_l1 * l1
        logs = {"g_adv": adv.detach(), "l1": l1.detach(), "g_total": loss.detach()}
        return Pix2PixOutput(loss=loss, logs=logs, fake=fake.detach())

    def discriminator_loss(self, src: Tensor, tgt: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``0.5 * (real + fake)`` PatchGAN loss; ``fake`` is detached (no generator pass)."""
        real_logits = self.discriminator(torch.cat([src, tgt], 1))
        fake_logits = self.discriminator(torch.cat([src, fake.detach()], 1))
        loss = 0.5 * self.gan_loss.discriminator_loss(real_logits, fake_logits)
        return loss, {"d_total": loss.detach()}

    def generator_parameters(self) -> Iterator[Parameter]:
        """Parameters of the U-Net."""
        return self.generator.parameters()

    def discriminator_parameters(self) -> Iterator[Parameter]:
        """Parameters of the PatchGAN."""
        return self.discriminator.parameters()


__all__ = ["Pix2Pix", "Pix2PixOutput", "UNetGenerator"]
