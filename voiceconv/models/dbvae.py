"""Debiasing VAE (Amini, Soleimany, Schwarting, Bhatia & Rus, "Uncovering and
Mitigating Algorithmic Bias through Learned Latent Structure", AIES 2019)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from voiceconv.errors import ConfigError
from voiceconv.models.encoders import ImageSize, as_hw
from voiceconv.models.latent_tools import histogram_sampling_weights, inference_mode_of
from voiceconv.models.vae import VAE


class DBVAEOutput(NamedTuple):
    """What :meth:`DBVAE.forward` returns: the VAE fields plus the class logit."""

    recon: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor
    logit: Tensor
    """Binary class logit ``(B,)`` (positive class = the one the VAE models)."""


class DBVAE(VAE):
    """DB-VAE: a binary classifier whose encoder is also a VAE encoder over the
    positive class, used to find under-represented inputs and resample them.

    The encoder outputs ``1 + 2 * latent_dim`` numbers: a class logit and the
    ``(mu, logvar)`` of q(z|x); the decoder reconstructs x from z. The loss per
    sample ``i`` is (paper eq. 3, MIT 6.S191 lab)::

        classification_weight * BCE(y_i, logit_i) + 1[y_i = 1] * (recon_i + kl_weight * KL_i)

    averaged over the whole batch: the VAE terms apply only to positive samples
    (faces in the paper), since the latent structure of interest is that of the
    class being debiased. :meth:`sampling_weights` then gives each (positive)
    training sample a weight inversely proportional to the histogram density of its
    latent mean (paper Algorithm 1), for ``torch.utils.data.WeightedRandomSampler``.

    Args beyond :class:`~voiceconv.models.vae.VAE`'s:
        likelihood: default ``"laplace"`` (L1), the paper's/lab's ``||x - x_hat||_1``.
        kl_weight: weight of the KL term (paper's c2 relative to reconstruction).
        classification_weight: weight of the BCE term; None means ``C * H * W`` (the
            number of values per input). Deviation, documented: our reconstruction is
            *summed* over pixels (a proper log-likelihood), the lab's is averaged, so
            this default restores the lab's balance between classification and
            reconstruction; without it a summed reconstruction swamps the classifier.

    Binary (one positive class) as in the paper; no multi-class generalisation.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize | None,
        latent_dim: int,
        hidden: Sequence[int] | None = None,
        likelihood: str = "laplace",
        kl_weight: float = 1.0,
        classification_weight: float | None = None,
        output: str = "auto",
        arch: str = "conv",
        norm: str = "batch",
    ) -> None:
        super().__init__(
            in_channels,
            image_size,
            latent_dim,
            hidden,
            likelihood,
            output,
            arch,
            norm,
            _extra_outputs=1,
        )
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            hidden=None if hidden is None else tuple(hidden),
            likelihood=likelihood,
            kl_weight=kl_weight,
            classification_weight=classification_weight,
            output=output,
            arch=arch,
            norm=norm,
        )
        if kl_weight < 0:
            raise ConfigError(f"DBVAE: kl_weight must be >= 0, got {kl_weight}")
        if classification_weight is None:
            n_values = in_channels * (1 if image_size is None else math.prod(as_hw(image_size)))
            classification_weight = float(n_values)
        if classification_weight <= 0:
            raise ConfigError(
                f"DBVAE: classification_weight must be > 0, got {classification_weight}"
            )
        self.kl_weight = float(kl_weight)
        self.classification_weight = float(classification_weight)

    def encode_with_logit(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logit (B,), mu (B, latent_dim), logvar (B, latent_dim))``."""
        h = self._encode_raw(x)
        d = self.latent_dim
        return h[:, 2 * d], h[:, :d], h[:, d : 2 * d]

    def forward(self, x: Tensor, labels: Tensor | int | None = None) -> DBVAEOutput:
        """Classify, encode, draw one reparameterised z, decode. (``labels`` must be
        None: the DB-VAE is not class-conditional; targets go to :meth:`loss`.)"""
        if labels is not None:
            raise ConfigError("DBVAE is not class-conditional; pass targets to loss(), not labels")
        logit, mu, logvar = self.encode_with_logit(x)
        z = self.reparameterize(mu, logvar)
        return DBVAEOutput(self.decode(z), mu, logvar, z, logit)

    def loss(  # type: ignore[override]
        self, x: Tensor, out: DBVAEOutput, targets: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``{"loss", "classification", "recon", "kl"}``; ``targets`` are ``(B,)`` 0/1.

        ``"loss"`` is the batch mean of the per-sample objective in the class doc;
        ``"classification"`` is the mean BCE; ``"recon"`` and ``"kl"`` are means over
        the positive samples only (0 when the batch has none).
        """
        if targets is None:
            raise ConfigError("DBVAE.loss needs targets: (B,) binary class labels")
        y = torch.as_tensor(targets, device=x.device).float().reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ConfigError(f"DBVAE.loss: {y.shape[0]} targets for a batch of {x.shape[0]}")
        if bool(((y != 0) & (y != 1)).any()):
            raise ConfigError("DBVAE.loss: targets must be 0 or 1")
        cls = F.binary_cross_entropy_with_logits(out.logit, y, reduction="none")
        rec, kl = self.loss_terms(x, out)
        vae = rec + self.kl_weight * kl
        total = (self.classification_weight * cls + y * vae).mean()
        n_pos = y.sum().clamp_min(1.0)
        return {
            "loss": total,
            "classification": cls.mean(),
            "recon": (y * rec).sum() / n_pos,
            "kl": (y * kl).sum() / n_pos,
        }

    def predict(self, x: Tensor) -> Tensor:
        """Positive-class probabilities ``(B,)`` (eval mode, no gradients)."""
        with inference_mode_of(self):
            return torch.sigmoid(self.encode_with_logit(x)[0])

    def latent_means(self, data: Tensor | Iterable[object], batch_size: int = 256) -> Tensor:
        """Posterior means ``(N, latent_dim)`` on the CPU for a tensor of inputs or for
        a loader yielding tensors or tuples/lists whose first item is the input."""
        device = self._device()
        batches: Iterable[object]
        if isinstance(data, Tensor):
            batches = data.split(batch_size)
        else:
            batches = data
        means: list[Tensor] = []
        with inference_mode_of(self):
            for batch in batches:
                xb = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(xb, Tensor):
                    raise ConfigError(
                        f"DBVAE: expected tensors from the loader, got {type(xb).__name__}"
                    )
                means.append(self.encode(xb.to(device))[0].cpu())
        if not means:
            raise ConfigError("DBVAE: no data to compute latent means from")
        return torch.cat(means)

    def sampling_weights(
        self,
        data: Tensor | Iterable[object],
        bins: int = 10,
        smoothing: float = 1e-3,
        combine: str = "product",
        batch_size: int = 256,
    ) -> np.ndarray:
        """Per-sample resampling weights ``(N,)`` summing to 1, inversely proportional
        to the histogram-estimated density of each sample's latent mean (see
        :func:`~voiceconv.models.latent_tools.histogram_sampling_weights`; ``smoothing``
        is the paper's alpha). Pass the positive-class training inputs, in the order
        the sampler will index them (a loader must not shuffle)."""
        return histogram_sampling_weights(
            self.latent_means(data, batch_size), bins, smoothing, combine
        )
