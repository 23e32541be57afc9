"""Variational autoencoders: :class:`VAE`, :class:`BetaVAE`, :class:`ConditionalVAE`.

One interface for the family (in the style of PyTorch-VAE):

* ``encode(x) -> (mu, logvar)`` of the diagonal-Gaussian posterior q(z|x);
* ``reparameterize(mu, logvar) -> z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``;
* ``decode(z) -> x``; ``forward(x) -> VAEOutput(recon, mu, logvar, z)``;
* ``loss(x, out) -> {"loss", "recon", "kl"}``: reconstruction negative
  log-likelihood summed over pixels plus the closed-form KL to N(0, I) summed over
  latent dimensions, both averaged over the batch (the negative ELBO per sample);
* inference helpers that run in eval mode without gradients (restoring the mode):
  ``sample``, ``reconstruct``, ``elbo``, ``outlier_score``, ``latent_traversal``.

Every method that sees data takes an optional ``labels`` argument: unconditional
models reject it, :class:`ConditionalVAE` requires it. Inputs are images
``(B, C, H, W)`` (``arch="conv"`` or ``"mlp"``) or flat vectors ``(B, C)``
(``arch="mlp"``, ``image_size=None``). For log-mel patches use ``in_channels=1``,
``image_size=(n_mels, frames)``, ``likelihood="gaussian"`` (linear output).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
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
    kl_divergence,
    reconstruction_loss,
    traverse_latent,
)


class VAEOutput(NamedTuple):
    """What :meth:`VAE.forward` returns."""

    recon: Tensor
    """Reconstruction (after the output activation), shaped like the input."""
    mu: Tensor
    """Posterior means ``(B, latent_dim)``."""
    logvar: Tensor
    """Posterior log-variances ``(B, latent_dim)``."""
    z: Tensor
    """The reparameterised sample that was decoded ``(B, latent_dim)``."""


class VAE(SavableModule):
    """Variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", 2014).

    Args:
        in_channels: image channels ``C`` (feature count for flat vectors).
        image_size: ``n``, ``(H, W)``, or None for flat vectors (``arch="mlp"``).
            With ``arch="conv"`` both sides must be divisible by ``2 ** len(hidden)``.
        latent_dim: dimension of z.
        hidden: encoder widths (decoder mirrors them); None for the family default.
        likelihood: p(x|z): ``"bernoulli"`` (BCE summed over pixels; data in [0, 1]),
            ``"gaussian"`` (squared error summed: fixed-variance Gaussian, the additive
            constant omitted) or ``"laplace"`` (absolute error summed).
        output: decoder output activation: ``"sigmoid"``, ``"linear"`` or ``"auto"``
            (sigmoid for Bernoulli, linear otherwise).
        arch: ``"conv"`` or ``"mlp"``; norm: ``"batch"`` or ``"none"``.

    Deviation: for the Gaussian and Laplace likelihoods the reported ELBO omits the
    normalising constant of p(x|z) (it does not depend on the model's parameters nor
    on x, so it changes neither training nor outlier rankings).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize | None,
        latent_dim: int,
        hidden: Sequence[int] | None = None,
        likelihood: str = "bernoulli",
        output: str = "auto",
        arch: str = "conv",
        norm: str = "batch",
        *,
        _label_channels: int = 0,
        _extra_outputs: int = 0,
    ) -> None:
        # ``_label_channels`` / ``_extra_outputs`` are for subclasses (conditioning
        # classes, extra encoder heads) and are not recorded as hparams.
        super().__init__()
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            hidden=None if hidden is None else tuple(hidden),
            likelihood=likelihood,
            output=output,
            arch=arch,
            norm=norm,
        )
        kind = canonical_likelihood(likelihood)
        if output == "auto":
            output = "sigmoid" if kind == "bernoulli" else "linear"
        if output not in ("sigmoid", "linear"):
            raise ConfigError(
                f"{type(self).__name__}: output must be 'auto', 'sigmoid' or 'linear', got {output!r}"
            )
        if kind == "bernoulli" and output != "sigmoid":
            raise ConfigError(
                f"{type(self).__name__}: the Bernoulli likelihood needs output='sigmoid'"
            )
        if latent_dim < 1:
            raise ConfigError(f"{type(self).__name__}: latent_dim must be >= 1, got {latent_dim}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.likelihood = kind
        self.output = output
        self.num_classes = _label_channels
        self.encoder = build_encoder(
            arch,
            in_channels + _label_channels,
            image_size,
            hidden,
            2 * latent_dim + _extra_outputs,
            norm,
        )
        self.decoder = build_decoder(
            arch, latent_dim + _label_channels, in_channels, image_size, hidden, norm
        )

    # ------------------------------------------------------------------ conditioning
    def _one_hot(
        self, labels: Tensor | int | None, batch: int, device: torch.device
    ) -> Tensor | None:
        """``None`` for unconditional models; else ``(batch, num_classes)`` float one-hots."""
        name = type(self).__name__
        if self.num_classes == 0:
            if labels is not None:
                raise ConfigError(f"{name} is unconditional but labels were given")
            return None
        if labels is None:
            raise ConfigError(f"{name} is conditional: pass labels (class indices or one-hot rows)")
        lab = torch.as_tensor(labels, device=device)
        if lab.dim() == 0:
            lab = lab.expand(batch)
        if lab.dim() == 1:
            if lab.dtype.is_floating_point or lab.dtype == torch.bool:
                raise ConfigError(
                    f"{name}: 1-D labels must be integer class indices, got {lab.dtype}"
                )
            if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
                raise ConfigError(
                    f"{name}: class labels must lie in [0, {self.num_classes}), got "
                    f"[{int(lab.min())}, {int(lab.max())}]"
                )
            lab = F.one_hot(lab.long(), self.num_classes).float()
        if lab.shape != (batch, self.num_classes):
            raise ConfigError(
                f"{name}: labels must be ({batch},) indices or ({batch}, {self.num_classes}) "
                f"one-hot rows, got {tuple(lab.shape)}"
            )
        return lab.float()

    def _with_labels(self, t: Tensor, onehot: Tensor | None) -> Tensor:
        """Concatenate one-hot labels to ``t`` along dim 1 (as constant planes for images)."""
        if onehot is None:
            return t
        if t.dim() == 4:
            onehot = onehot[:, :, None, None].expand(-1, -1, t.shape[2], t.shape[3])
        return torch.cat([t, onehot.to(t.dtype)], dim=1)

    # ------------------------------------------------------------------ core interface
    def _encode_raw(self, x: Tensor, labels: Tensor | int | None = None) -> Tensor:
        check_image_batch(x, self.in_channels, self.image_size, type(self).__name__)
        return self.encoder(self._with_labels(x, self._one_hot(labels, x.shape[0], x.device)))

    def encode(self, x: Tensor, labels: Tensor | int | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(mu, logvar)``, each ``(B, latent_dim)``."""
        h = self._encode_raw(x, labels)
        d = self.latent_dim
        return h[:, :d], h[:, d : 2 * d]

    def reparameterize(self, mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
        """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` drawn here (or given),
        so gradients reach ``mu`` and ``logvar`` but not the noise."""
        std = torch.exp(0.5 * logvar)
        if eps is None:
            eps = torch.randn_like(std)
        return mu + std * eps

    def decode(self, z: Tensor, labels: Tensor | int | None = None) -> Tensor:
        """Decode ``(B, latent_dim)`` codes to reconstructions (after the output activation)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ConfigError(
                f"{type(self).__name__}: codes must be (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        z_in = self._with_labels(z, self._one_hot(labels, z.shape[0], z.device))
        return output_activation(self.output, self.decoder(z_in))

    def forward(self, x: Tensor, labels: Tensor | int | None = None) -> VAEOutput:
        """Encode, draw one reparameterised sample, decode."""
        mu, logvar = self.encode(x, labels)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(self.decode(z, labels), mu, logvar, z)

    def loss_terms(self, x: Tensor, out: VAEOutput) -> tuple[Tensor, Tensor]:
        """Per-sample ``(recon_nll, kl)``, each ``(B,)``."""
        return reconstruction_loss(out.recon, x, self.likelihood), kl_divergence(out.mu, out.logvar)

    def loss(self, x: Tensor, out: VAEOutput) -> dict[str, Tensor]:
        """Negative ELBO averaged over the batch: ``{"loss": recon + kl, "recon", "kl"}``."""
        rec, kl = self.loss_terms(x, out)
        rec, kl = rec.mean(), kl.mean()
        return {"loss": rec + kl, "recon": rec, "kl": kl}

    # ------------------------------------------------------------------ inference helpers
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def sample(
        self, n: int, device: torch.device | str | None = None, labels: Tensor | int | None = None
    ) -> Tensor:
        """Decode ``n`` codes drawn from the prior N(0, I) (eval mode, no gradients)."""
        device = torch.device(device) if device is not None else self._device()
        with inference_mode_of(self):
            z = torch.randn(n, self.latent_dim, device=device)
            return self.decode(z, labels)

    def reconstruct(self, x: Tensor, labels: Tensor | int | None = None) -> Tensor:
        """Decode the posterior mean of each input (deterministic; eval mode, no gradients)."""
        with inference_mode_of(self):
            mu, _ = self.encode(x, labels)
            return self.decode(mu, labels)

    def elbo(self, x: Tensor, labels: Tensor | int | None = None, n_samples: int = 1) -> Tensor:
        """Per-sample evidence lower bound ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``, shape ``(B,)``.

        The expectation is a Monte-Carlo average over ``n_samples`` draws of z; the KL
        is closed-form. Always the plain ELBO (no beta or capacity term). Eval mode,
        no gradients.
        """
        if n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
        with inference_mode_of(self):
            mu, logvar = self.encode(x, labels)
            rec = torch.zeros(x.shape[0], device=x.device, dtype=mu.dtype)
            for _ in range(n_samples):
                z = self.reparameterize(mu, logvar)
                rec += reconstruction_loss(self.decode(z, labels), x, self.likelihood)
            return -(rec / n_samples) - kl_divergence(mu, logvar)

    def outlier_score(
        self, x: Tensor, labels: Tensor | int | None = None, n_samples: int = 1
    ) -> Tensor:
        """Per-sample negative ELBO ``(B,)``: higher for inputs the model finds unlikely."""
        return -self.elbo(x, labels, n_samples)

    def latent_traversal(
        self,
        x: Tensor | None = None,
        dim: int = 0,
        values: Sequence[float] | Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
        *,
        z: Tensor | None = None,
        labels: Tensor | int | None = None,
    ) -> Tensor:
        """Decode codes that differ from a base code only in dimension ``dim``.

        The base codes are the posterior means of images ``x`` or the given codes
        ``z`` (exactly one of the two); dimension ``dim`` is set to each of ``values``
        (absolute values), all others held. Returns ``(B, V, C, H, W)``; pass it to
        :func:`voiceconv.models.latent_tools.image_grid` for a picture.
        """
        if (x is None) == (z is None):
            raise ConfigError("latent_traversal needs exactly one of x (images) or z (codes)")
        with inference_mode_of(self):
            base = self.encode(x, labels)[0] if x is not None else z
            assert base is not None
            grid = traverse_latent(base, dim, values)
            b, v = grid.shape[:2]
            onehot = self._one_hot(labels, b, base.device)
            flat_labels = None if onehot is None else onehot.repeat_interleave(v, dim=0)
            images = self.decode(grid.reshape(b * v, -1), flat_labels)
            return images.view(b, v, *images.shape[1:])


class BetaVAE(VAE):
    """beta-VAE: the KL term weighted by ``beta`` (Higgins et al., ICLR 2017).

    ``loss = recon + beta * KL``; ``beta > 1`` pressures the posterior towards the
    factorised prior and favours disentangled latents (``beta = 1`` is the VAE).

    Capacity annealing (Burgess et al., "Understanding disentangling in beta-VAE",
    2018), enabled by ``capacity_max`` (nats): ``loss = recon + gamma * |KL - C|``
    with ``C`` rising linearly from 0 to ``capacity_max`` over ``capacity_steps``
    training steps, then held; ``beta`` is unused in that mode. The step is the
    ``step`` argument of :meth:`loss`, or else an internal counter (saved with the
    weights) that advances on each :meth:`loss` call in training mode.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize | None,
        latent_dim: int,
        hidden: Sequence[int] | None = None,
        beta: float = 4.0,
        likelihood: str = "bernoulli",
        capacity_max: float | None = None,
        capacity_steps: int = 100_000,
        gamma: float = 1000.0,
        output: str = "auto",
        arch: str = "conv",
        norm: str = "batch",
    ) -> None:
        super().__init__(
            in_channels, image_size, latent_dim, hidden, likelihood, output, arch, norm
        )
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            hidden=None if hidden is None else tuple(hidden),
            beta=beta,
            likelihood=likelihood,
            capacity_max=capacity_max,
            capacity_steps=capacity_steps,
            gamma=gamma,
            output=output,
            arch=arch,
            norm=norm,
        )
        if beta <= 0:
            raise ConfigError(f"BetaVAE: beta must be > 0, got {beta}")
        if capacity_max is not None and (capacity_max < 0 or capacity_steps < 1 or gamma <= 0):
            raise ConfigError("BetaVAE: need capacity_max >= 0, capacity_steps >= 1 and gamma > 0")
        self.beta = float(beta)
        self.capacity_max = None if capacity_max is None else float(capacity_max)
        self.capacity_steps = int(capacity_steps)
        self.gamma = float(gamma)
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))

    def capacity(self, step: int) -> float:
        """Target KL ``C`` (nats) at a training step (0 when annealing is off)."""
        if self.capacity_max is None:
            return 0.0
        return self.capacity_max * min(1.0, max(step, 0) / self.capacity_steps)

    def loss(self, x: Tensor, out: VAEOutput, step: int | None = None) -> dict[str, Tensor]:
        """``{"loss", "recon", "kl"}`` (plus ``"capacity"`` when annealing): see class doc."""
        rec, kl = self.loss_terms(x, out)
        rec, kl = rec.mean(), kl.mean()
        if self.capacity_max is None:
            return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl}
        if step is None:
            step = int(self.num_steps)
            if self.training:
                self.num_steps += 1
        c = self.capacity(step)
        total = rec + self.gamma * (kl - c).abs()
        return {
            "loss": total,
            "recon": rec,
            "kl": kl,
            "capacity": torch.tensor(c, device=rec.device),
        }


class ConditionalVAE(VAE):
    """Conditional VAE (Sohn et al., "Learning Structured Output Representation using
    Deep Conditional Generative Models", 2015, in its common label-conditioned form).

    The one-hot class label is concatenated to the encoder input (as ``num_classes``
    constant channels for images) and to z before decoding, so both q(z|x, y) and
    p(x|z, y) see it and z is free to model what the label does not. Every method
    that takes data needs ``labels``: ``(B,)`` class indices, ``(B, num_classes)``
    one-hot (or soft) rows, or an int for the whole batch.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: ImageSize | None,
        latent_dim: int,
        num_classes: int,
        hidden: Sequence[int] | None = None,
        likelihood: str = "bernoulli",
        output: str = "auto",
        arch: str = "conv",
        norm: str = "batch",
    ) -> None:
        if num_classes < 1:
            raise ConfigError(f"ConditionalVAE: num_classes must be >= 1, got {num_classes}")
        super().__init__(
            in_channels,
            image_size,
            latent_dim,
            hidden,
            likelihood,
            output,
            arch,
            norm,
            _label_channels=num_classes,
        )
        self.save_hparams(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            num_classes=num_classes,
            hidden=None if hidden is None else tuple(hidden),
            likelihood=likelihood,
            output=output,
            arch=arch,
            norm=norm,
        )
