"""A deterministic autoencoder (encoder -> code -> decoder), e.g. for compression,
denoising pre-training, or anomaly detection by reconstruction error."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.encoders import (
    ImageSize,
    build_decoder,
    build_encoder,
    check_image_batch,
    output_activation,
)
from voiceconv.models.latent_tools import (
    canonical_likelihood,
    inference_mode_of,
    reconstruction_loss,
)


class Autoencoder(SavableModule):
    """Deterministic autoencoder over images ``(B, C, H, W)`` (or vectors ``(B, C)``).

    Args:
        in_channels: image channels ``C`` (feature count for flat vectors).
        image_size: ``n``, ``(H, W)``, or None for flat vectors (``arch="mlp"`` only).
            With ``arch="conv"`` both sides must be divisible by ``2 ** len(hidden)``.
        latent_dim: size of the code.
        hidden: encoder widths (the decoder mirrors them); None for the family default.
        output: ``"sigmoid"`` for data in [0, 1], ``"linear"`` for unbounded data
            such as log-mel spectrograms.
        recon_loss: ``"mse"`` (squared error), ``"bce"`` (needs ``output="sigmoid"``)
            or ``"l1"``.
        arch: ``"conv"`` (:class:`~voiceconv.models.encoders.ConvEncoder`) or ``"mlp"``.
        norm: ``"batch"`` or ``"none"``.

    :meth:`loss` sums the reconstruction error over pixels and averages it over the
    batch, the same scaling as the VAE family, so that :meth:`reconstruction_error`
    (its per-sample value) is comparable across models.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize | None,
        latent_dim: int,
        hidden: Sequence[int] | None = None,
        output: str = "sigmoid",
        recon_loss: str = "mse",
        arch: str = "conv",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            hidden=None if hidden is None else tuple(hidden),
            output=output,
            recon_loss=recon_loss,
            arch=arch,
            norm=norm,
        )
        if output not in ("sigmoid", "linear"):
            raise ConfigError(f"Autoencoder: output must be 'sigmoid' or 'linear', got {output!r}")
        if canonical_likelihood(recon_loss) == "bernoulli" and output != "sigmoid":
            raise ConfigError("Autoencoder: recon_loss='bce' needs output='sigmoid'")
        self.in_channels = in_channels
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.output = output
        self.recon_loss = recon_loss
        self.encoder = build_encoder(arch, in_channels, image_size, hidden, latent_dim, norm)
        self.decoder = build_decoder(arch, latent_dim, in_channels, image_size, hidden, norm)

    def encode(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> codes ``(B, latent_dim)``."""
        check_image_batch(x, self.in_channels, self.image_size, type(self).__name__)
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Codes ``(B, latent_dim)`` -> reconstructions (after the output activation)."""
        return output_activation(self.output, self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct ``x``."""
        return self.decode(self.encode(x))

    def loss(self, x: Tensor, recon: Tensor | None = None) -> dict[str, Tensor]:
        """Training loss: ``{"loss", "recon"}`` (equal here), per-sample summed error
        averaged over the batch. ``recon`` defaults to ``self(x)``."""
        if recon is None:
            recon = self(x)
        rec = reconstruction_loss(recon, x, self.recon_loss).mean()
        return {"loss": rec, "recon": rec}

    def reconstruction_error(self, x: Tensor) -> Tensor:
        """Per-sample reconstruction error ``(B,)`` (eval mode, no gradients): an
        anomaly score, higher for inputs unlike the training data."""
        with inference_mode_of(self):
            return reconstruction_loss(self(x), x, self.recon_loss)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Reconstructions in eval mode without gradients."""
        with inference_mode_of(self):
            return self(x)
