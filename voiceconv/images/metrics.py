"""Metrics for the image experiments: disentanglement (MIG), sample quality
(Frechet distance between feature sets), outlier detection (AUROC) and
classification accuracy (overall, per class, per group).

All functions take numpy arrays or torch tensors and return plain floats / dicts,
so results go straight into ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from voiceconv.errors import ConfigError

ArrayLike = np.ndarray | torch.Tensor


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------- MIG


def discretize(latents: ArrayLike, n_bins: int = 20) -> np.ndarray:
    """Histogram-discretise each latent dimension into ``n_bins`` equal-width bins
    over its own range (as in Chen et al. 2018 / disentanglement_lib); returns
    int64 codes ``(N, D)``. A constant dimension falls in a single bin."""
    z = _np(latents).astype(np.float64)
    if z.ndim != 2:
        raise ConfigError(f"discretize: latents must be (N, D), got shape {z.shape}")
    if n_bins < 2:
        raise ConfigError(f"discretize: n_bins must be >= 2, got {n_bins}")
    out = np.zeros(z.shape, dtype=np.int64)
    for j in range(z.shape[1]):
        col = z[:, j]
        lo, hi = col.min(), col.max()
        if hi > lo:
            edges = np.linspace(lo, hi, n_bins + 1)[1:-1]
            out[:, j] = np.digitize(col, edges)
    return out


def entropy(codes: ArrayLike) -> float:
    """Entropy (nats) of the empirical distribution of discrete ``codes``."""
    _, counts = np.unique(_np(codes), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(a: ArrayLike, b: ArrayLike) -> float:
    """Mutual information (nats) between two discrete sequences of equal length,
    from their empirical joint distribution."""
    a, b = _np(a).ravel(), _np(b).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"mutual_information: lengths differ ({a.size} vs {b.size})")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


@dataclass
class MIGResult:
    """MIG and its parts: ``score`` is the mean of ``per_factor`` over factors with
    non-zero entropy; ``mi[j, k]`` is I(z_j; v_k) in nats; ``entropies[k]`` H(v_k)."""

    score: float
    per_factor: list[float | None]
    mi: np.ndarray
    entropies: list[float]

    def to_dict(self, factor_names: list[str] | tuple[str, ...] | None = None) -> dict:
        """JSON-friendly view (per-factor gaps keyed by name when given)."""
        names = list(factor_names) if factor_names is not None else [str(k) for k in range(len(self.per_factor))]
        return {
            "mig": self.score,
            "per_factor": dict(zip(names, self.per_factor, strict=True)),
            "entropy": dict(zip(names, self.entropies, strict=True)),
        }


def mig(latents: ArrayLike, factors: ArrayLike, n_bins: int = 20) -> MIGResult:
    """Mutual Information Gap (Chen et al., 2018, "Isolating Sources of
    Disentanglement in VAEs").

    For each ground-truth factor ``v_k`` the gap between the largest and second
    largest mutual information with any single latent dimension, normalised by
    H(v_k): ``MIG = mean_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k)``. Latents are
    discretised per dimension into ``n_bins`` histogram bins (the estimator of
    disentanglement_lib; the paper's own estimator integrates over q(z|x)). Factors
    that never vary (H = 0) are reported as ``None`` and left out of the mean.
    Needs at least two latent dimensions.
    """
    z = discretize(latents, n_bins)
    v = _np(factors)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or len(v) != len(z):
        raise ConfigError(f"mig: factors must be (N, K) with N={len(z)}, got shape {v.shape}")
    if z.shape[1] < 2:
        raise ConfigError("mig: need at least two latent dimensions")
    d, k = z.shape[1], v.shape[1]
    mi = np.zeros((d, k))
    for j in range(d):
        for f in range(k):
            mi[j, f] = mutual_information(z[:, j], v[:, f])
    ent = [entropy(v[:, f]) for f in range(k)]
    gaps: list[float | None] = []
    for f in range(k):
        if ent[f] <= 1e-12:
            gaps.append(None)
            continue
        top = np.sort(mi[:, f])[::-1]
        gaps.append(float((top[0] - top[1]) / ent[f]))
    valid = [g for g in gaps if g is not None]
    if not valid:
        raise ConfigError("mig: every factor is constant")
    return MIGResult(score=float(np.mean(valid)), per_factor=gaps, mi=mi, entropies=ent)


# ---------------------------------------------------------------- Frechet distance


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigh,
    with round-off negatives clipped to zero)."""
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike
) -> float:
    """Squared 2-Wasserstein (Frechet) distance between N(mu1, S1) and N(mu2, S2):
    ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    ``Tr (S1 S2)^(1/2)`` is computed as ``Tr (S1^(1/2) S2 S1^(1/2))^(1/2)`` (equal
    because S1 S2 is similar to that symmetric PSD matrix), using only symmetric
    eigendecompositions: no complex round-off as with ``scipy.linalg.sqrtm``.
    """
    m1, m2 = _np(mu1).astype(np.float64).ravel(), _np(mu2).astype(np.float64).ravel()
    s1, s2 = np.atleast_2d(_np(sigma1).astype(np.float64)), np.atleast_2d(_np(sigma2).astype(np.float64))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ConfigError(
            f"frechet: shape mismatch mu {m1.shape}/{m2.shape}, sigma {s1.shape}/{s2.shape}"
        )
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    w = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    diff = m1 - m2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt, 0.0))


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N, D)`` and
    ``(M, D)`` (the FID formula, Heusel et al. 2017, here in whatever feature space
    the caller chooses). Uses unbiased covariances; needs N, M >= 2."""
    a, b = _np(feats_a).astype(np.float64), _np(feats_b).astype(np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError(f"frechet_distance: need (N, D) and (M, D), got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("frechet_distance: need at least two samples per set")
    return gaussian_frechet_distance(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )


# ---------------------------------------------------------------- AUROC


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with tied values sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the ROC curve for telling outliers from inliers by score
    (higher score = more outlying): ``P(s_out > s_in) + P(s_out = s_in) / 2``.

    Computed from the Mann-Whitney U statistic with average ranks, so ties count
    one half, in O((n + m) log(n + m)).
    """
    s_in, s_out = _np(scores_in).astype(np.float64).ravel(), _np(scores_out).astype(np.float64).ravel()
    if s_in.size == 0 or s_out.size == 0:
        raise ConfigError("auroc: both score sets must be non-empty")
    if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
        raise ConfigError("auroc: scores must be finite")
    ranks = _average_ranks(np.concatenate([s_in, s_out]))
    u = ranks[s_in.size :].sum() - s_out.size * (s_out.size + 1) / 2.0
    return float(u / (s_in.size * s_out.size))


# ---------------------------------------------------------------- accuracy


def predictions(logits_or_labels: ArrayLike) -> np.ndarray:
    """Class predictions: argmax over the last axis of ``(N, C)`` logits, a
    threshold at 0 for ``(N,)`` float logits of a binary classifier, or the input
    itself when it already holds integer labels."""
    x = _np(logits_or_labels)
    if x.ndim == 2:
        return x.argmax(axis=1)
    if np.issubdtype(x.dtype, np.floating):
        return (x > 0).astype(np.int64)
    return x.astype(np.int64)


def accuracy(logits_or_preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of correct predictions (see :func:`predictions`)."""
    p, y = predictions(logits_or_preds), _np(labels).astype(np.int64).ravel()
    if p.shape != y.shape or y.size == 0:
        raise ConfigError(f"accuracy: {p.shape} predictions for {y.shape} labels")
    return float((p == y).mean())


def per_class_accuracy(logits_or_preds: ArrayLike, labels: ArrayLike) -> dict[int, float]:
    """Accuracy within each class present in ``labels``."""
    p, y = predictions(logits_or_preds), _np(labels).astype(np.int64).ravel()
    return {int(c): float((p[y == c] == c).mean()) for c in np.unique(y)}


def group_accuracy(logits_or_preds: ArrayLike, labels: ArrayLike, groups: ArrayLike) -> dict[str, float]:
    """Accuracy within each group (e.g. minority / majority), plus ``"overall"`` and
    ``"worst"`` (the lowest group accuracy)."""
    p, y = predictions(logits_or_preds), _np(labels).astype(np.int64).ravel()
    g = _np(groups).ravel()
    if not (p.shape == y.shape == g.shape):
        raise ConfigError(f"group_accuracy: shapes differ {p.shape}, {y.shape}, {g.shape}")
    out = {str(k.item() if hasattr(k, "item") else k): float((p[g == k] == y[g == k]).mean()) for k in np.unique(g)}
    worst = min(out.values())
    out["overall"] = float((p == y).mean())
    out["worst"] = worst
    return out


# ---------------------------------------------------------------- translation


def foreground(images: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Foreground mask ``(N, H, W)`` of ``(N, C, H, W)`` images in [0, 1]: pixels whose
    brightest channel exceeds ``threshold``."""
    x = _np(images)
    if x.ndim != 4:
        raise ConfigError(f"foreground: expected (N, C, H, W) images, got shape {x.shape}")
    return x.max(axis=1) > threshold


def foreground_iou(pred: ArrayLike, truth: ArrayLike, threshold: float = 0.5) -> float:
    """Mean over images of the intersection over union of the thresholded foregrounds
    (:func:`foreground`) of ``pred`` and ``truth``; an image where both are empty
    counts 1. Unlike L1 over mostly-background pixels, an all-black output scores 0."""
    p, t = foreground(pred, threshold), foreground(truth, threshold)
    if p.shape != t.shape:
        raise ConfigError(f"foreground_iou: shapes differ {p.shape} vs {t.shape}")
    inter = (p & t).reshape(len(p), -1).sum(1)
    union = (p | t).reshape(len(p), -1).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())
