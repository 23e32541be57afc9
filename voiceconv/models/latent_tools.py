"""Model-independent helpers for latent-variable models.

Closed-form Gaussian quantities (KL to the prior, diagonal-Gaussian log-density),
per-sample reconstruction losses, latent traversals and image grids, histogram
density weights for debiasing (DB-VAE), and a context manager that runs a model in
inference mode. Pure functions of their arguments; nothing here keeps state.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.errors import ConfigError

LOG_2PI = math.log(2.0 * math.pi)

_LIKELIHOOD_ALIASES = {
    "bernoulli": "bernoulli",
    "bce": "bernoulli",
    "gaussian": "gaussian",
    "mse": "gaussian",
    "laplace": "laplace",
    "l1": "laplace",
}


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ), summed over the last (latent) dimension.

    Closed form (Kingma & Welling, 2014, appendix B):
    ``-1/2 * sum(1 + logvar - mu^2 - exp(logvar))``. Returns shape ``mu.shape[:-1]``
    (one value per sample); callers average over the batch.
    """
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def gaussian_log_density(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(x; mu, diag(exp(logvar)))`` summed over the last dimension (broadcasting)."""
    return -0.5 * torch.sum(LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar), dim=-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * torch.sum(LOG_2PI + z.pow(2), dim=-1)


def canonical_likelihood(name: str) -> str:
    """Map ``"bernoulli"/"bce"``, ``"gaussian"/"mse"``, ``"laplace"/"l1"`` to the first name."""
    try:
        return _LIKELIHOOD_ALIASES[name]
    except KeyError:
        raise ConfigError(
            f"unknown reconstruction likelihood {name!r}; use one of {sorted(_LIKELIHOOD_ALIASES)}"
        ) from None


def reconstruction_loss(recon: Tensor, x: Tensor, likelihood: str) -> Tensor:
    """Per-sample reconstruction loss, summed over every non-batch dimension.

    * ``"bernoulli"`` (``"bce"``): binary cross-entropy of ``recon`` (probabilities in
      [0, 1]) against ``x`` in [0, 1]; the exact negative Bernoulli log-likelihood.
    * ``"gaussian"`` (``"mse"``): squared error; the negative log-likelihood of
      ``N(recon, 1/2 I)`` up to an additive constant.
    * ``"laplace"`` (``"l1"``): absolute error; the negative log-likelihood of a unit
      Laplace up to an additive constant.

    Returns shape ``(B,)``.
    """
    if recon.shape != x.shape:
        raise ConfigError(
            f"reconstruction shape {tuple(recon.shape)} != input shape {tuple(x.shape)}"
        )
    kind = canonical_likelihood(likelihood)
    if kind == "bernoulli":
        per_value = F.binary_cross_entropy(recon, x, reduction="none")
    elif kind == "gaussian":
        per_value = (recon - x).pow(2)
    else:
        per_value = (recon - x).abs()
    return per_value.flatten(1).sum(dim=1)


def traverse_latent(z: Tensor, dim: int, values: Sequence[float] | Tensor) -> Tensor:
    """Copies of each code in ``z`` (``(B, D)``) with dimension ``dim`` set to each of
    ``values`` (absolute values, e.g. ``torch.linspace(-3, 3, 7)``), every other
    dimension held fixed. Returns ``(B, V, D)``."""
    if z.dim() != 2:
        raise ConfigError(f"latent codes must be (B, D), got {tuple(z.shape)}")
    if not -z.shape[1] <= dim < z.shape[1]:
        raise ConfigError(f"latent dimension {dim} out of range for {z.shape[1]} latent dims")
    vals = torch.as_tensor(values, dtype=z.dtype, device=z.device).flatten()
    if vals.numel() == 0:
        raise ConfigError("latent traversal needs at least one value")
    grid = z.detach().unsqueeze(1).repeat(1, vals.numel(), 1)
    grid[:, :, dim] = vals
    return grid


def image_grid(
    images: Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 0.0
) -> Tensor:
    """Tile images into one ``(C, H', W')`` picture for plotting or saving.

    ``images`` is ``(R, K, C, H, W)`` (``R`` rows of ``K``, e.g. a traversal) or
    ``(N, C, H, W)`` laid out ``nrow`` per row (default: ceil(sqrt(N))).
    """
    if images.dim() == 5:
        rows, cols = images.shape[:2]
        flat = images.reshape(rows * cols, *images.shape[2:])
    elif images.dim() == 4:
        flat = images
        cols = nrow if nrow is not None else math.ceil(math.sqrt(images.shape[0]))
        rows = math.ceil(images.shape[0] / cols)
    else:
        raise ConfigError(
            f"image_grid expects (N, C, H, W) or (R, K, C, H, W), got {tuple(images.shape)}"
        )
    c, h, w = flat.shape[1:]
    out = flat.new_full(
        (c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value
    )
    for i, img in enumerate(flat):
        r, k = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        out[:, top : top + h, left : left + w] = img
    return out


def histogram_sampling_weights(
    latents: np.ndarray | Tensor, bins: int = 10, smoothing: float = 1e-3, combine: str = "product"
) -> np.ndarray:
    """Sampling weights inversely proportional to the latent density (Amini et al., 2019).

    For each latent dimension ``i`` a ``bins``-bin histogram of ``latents[:, i]`` gives
    the fraction ``Q_i(b)`` of samples in bin ``b``; a sample's weight is
    ``prod_i 1 / (Q_i(b_i(x)) + smoothing)`` (the paper's Algorithm 1), so samples in
    sparsely populated regions of latent space get larger weights. ``combine="max"``
    instead takes the maximum over dimensions of the per-dimension weights (each
    normalised to sum 1), as in the MIT 6.S191 lab's implementation.

    Deviation (documented): histograms are normalised to bin *fractions* (summing to
    1) rather than densities (integrating to 1), so ``smoothing`` means the same
    thing whatever the latent scale; the lab does the same. The product is taken in
    log space to avoid overflow with many latent dimensions.

    Returns float64 weights of shape ``(N,)`` summing to 1 (usable as
    ``torch.utils.data.WeightedRandomSampler`` weights).
    """
    arr = (
        latents.detach().cpu().double().numpy()
        if isinstance(latents, Tensor)
        else np.asarray(latents, np.float64)
    )
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ConfigError(f"latents must be a non-empty (N, D) array, got shape {arr.shape}")
    if bins < 1 or smoothing < 0:
        raise ConfigError(
            f"need bins >= 1 and smoothing >= 0, got bins={bins}, smoothing={smoothing}"
        )
    if combine not in ("product", "max"):
        raise ConfigError(f"combine must be 'product' or 'max', got {combine!r}")
    n, d = arr.shape
    log_w = np.zeros(n)
    max_w = np.zeros(n)
    for i in range(d):
        column = arr[:, i]
        edges = np.histogram_bin_edges(column, bins=bins)
        # Bin b is [edges[b], edges[b+1]), the last one closed: digitize on the inner
        # edges; counting the same indices keeps counts and look-ups consistent.
        idx = np.digitize(column, edges[1:-1], right=False)
        counts = np.bincount(idx, minlength=bins)
        q = counts / n + smoothing
        if combine == "product":
            log_w -= np.log(q[idx])
        else:
            w_i = 1.0 / q[idx]
            max_w = np.maximum(max_w, w_i / w_i.sum())
    if combine == "product":
        w = np.exp(log_w - log_w.max())
    else:
        w = max_w
    return w / w.sum()


@contextlib.contextmanager
def inference_mode_of(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode without autograd, restoring its previous mode after.

    Scoring helpers (ELBO, outlier scores, reconstructions, traversals, sampling) use
    this so that batch-norm statistics, not the current batch, normalise inputs and
    the scores of one sample do not depend on the others in its batch.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
