"""Class-conditional GAN: label-embedding generator and projection discriminator."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import Parameter

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.blocks import maybe_spectral_norm
from voiceconv.models.gan import DCGANDiscriminator, DCGANGenerator
from voiceconv.models.losses import GANLoss


class ConditionalGAN(SavableModule):
    """Class-conditional GAN over images (Mirza & Osindero 2014; Miyato & Koyama 2018).

    Generator: a learned label embedding (``embed_dim``) is concatenated to ``z`` and fed to
    a :class:`~voiceconv.models.gan.DCGANGenerator`.

    Discriminator: the *projection* discriminator of Miyato & Koyama, not label maps
    concatenated as input channels: with ``phi(x)`` the DCGAN trunk features after
    LeakyReLU, summed over space (``h``, shape ``(B, C)``),
    ``D(x, y) = psi(h) + <V[y], h>`` where ``psi`` is linear and ``V`` a class embedding.
    As in that paper the discriminator uses spectral normalisation (``spectral_norm=True``,
    also on ``psi`` and ``V``) and no batch norm, and the default loss is hinge.
    """

    def __init__(
        self,
        num_classes: int,
        latent_dim: int = 64,
        channels: int = 1,
        image_size: int = 32,
        base_channels: int = 64,
        embed_dim: int = 32,
        gan_mode: str = "hinge",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.save_hparams(num_classes=num_classes, latent_dim=latent_dim, channels=channels,
                          image_size=image_size, base_channels=base_channels, embed_dim=embed_dim,
                          gan_mode=gan_mode, spectral_norm=spectral_norm)
        if num_classes < 1:
            raise ConfigError(f"ConditionalGAN needs num_classes >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.label_embedding = nn.Embedding(num_classes, embed_dim)
        self.generator = DCGANGenerator(latent_dim + embed_dim, channels, image_size, base_channels)
        self.d_net = DCGANDiscriminator(channels, image_size, base_channels, "none", spectral_norm,
                                        head=False)
        feat = self.d_net.feature_channels
        self.d_act = nn.LeakyReLU(0.2)
        self.d_linear = maybe_spectral_norm(nn.Linear(feat, 1), spectral_norm)
        self.d_projection = maybe_spectral_norm(nn.Embedding(num_classes, feat), spectral_norm)
        self.gan_loss = GANLoss(gan_mode)

    def _check_labels(self, labels: Tensor) -> Tensor:
        labels = labels.long()
        if labels.dim() != 1:
            raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        return labels

    def generate(self, z: Tensor, labels: Tensor) -> Tensor:
        """``G(z, y)`` with gradients: ``z`` is ``(B, latent_dim)``, ``labels`` ``(B,)``."""
        labels = self._check_labels(labels)
        return self.generator(torch.cat([z, self.label_embedding(labels)], dim=1))

    def discriminate(self, x: Tensor, labels: Tensor) -> Tensor:
        """Projection-discriminator logits ``(B,)`` for images ``x`` with ``labels``."""
        labels = self._check_labels(labels)
        h = self.d_act(self.d_net.features(x)).sum(dim=(2, 3))
        return self.d_linear(h).squeeze(1) + (self.d_projection(labels) * h).sum(dim=1)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.generate(z, labels)

    @torch.no_grad()
    def sample(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per label, ``z ~ N(0, I)``, without gradients (call ``eval()`` first)."""
        device = next(self.parameters()).device
        z = torch.randn(labels.shape[0], self.latent_dim, device=device, generator=generator)
        return self.generate(z, labels.to(device))

    def generator_loss(self, labels: Tensor) -> Tensor:
        """Generator loss on fresh samples of the given ``labels``."""
        z = torch.randn(labels.shape[0], self.latent_dim, device=labels.device)
        return self.gan_loss.generator_loss(self.discriminate(self.generate(z, labels), labels))

    def discriminator_loss(self, real: Tensor, labels: Tensor, fake: Tensor | None = None) -> Tensor:
        """Loss on ``(real, labels)`` vs ``(fake, labels)``; ``fake`` defaults to fresh detached
        samples of the same labels."""
        if fake is None:
            with torch.no_grad():
                z = torch.randn(labels.shape[0], self.latent_dim, device=labels.device)
                fake = self.generate(z, labels)
        return self.gan_loss.discriminator_loss(self.discriminate(real, labels),
                                                self.discriminate(fake.detach(), labels))

    def generator_parameters(self) -> Iterator[Parameter]:
        """Generator and its label embedding."""
        yield from self.label_embedding.parameters()
        yield from self.generator.parameters()

    def discriminator_parameters(self) -> Iterator[Parameter]:
        """Trunk, ``psi`` and projection embedding."""
        for m in (self.d_net, self.d_linear, self.d_projection):
            yield from m.parameters()


__all__ = ["ConditionalGAN"]
