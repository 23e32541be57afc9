"""Image metrics against closed forms, brute force and an independent matrix sqrt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import sqrtm

from voiceconv.errors import ConfigError
from voiceconv.images.metrics import (
    accuracy,
    auroc,
    discretize,
    entropy,
    frechet_distance,
    gaussian_frechet_distance,
    group_accuracy,
    mig,
    mutual_information,
    per_class_accuracy,
)

# ------------------------------------------------------------------ Frechet


def test_fd_of_shifted_identity_gaussians_is_squared_mean_distance() -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=6)
    eye = np.eye(6)
    assert gaussian_frechet_distance(np.zeros(6), eye, mu, eye) == pytest.approx(mu @ mu, rel=1e-9)
    assert gaussian_frechet_distance(mu, eye, mu, eye) == pytest.approx(0.0, abs=1e-9)


def test_fd_of_diagonal_gaussians_closed_form() -> None:
    # Commuting covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu = np.array([1.0, -2.0, 0.5])
    expected = mu @ mu + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = gaussian_frechet_distance(np.zeros(3), np.diag(a), mu, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)


def test_fd_general_covariances_vs_scipy_sqrtm() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
        s1, s2 = m1 @ m1.T, m2 @ m2.T + 0.1 * np.eye(5)
        mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
        ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
        assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_fd_handles_singular_covariances() -> None:
    # rank-1 covariances: the distance between N(0, u u^T) and N(0, v v^T) with
    # orthogonal unit u, v is 2 (W2^2 between two orthogonal segments' Gaussians).
    u, v = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    got = gaussian_frechet_distance(np.zeros(3), np.outer(u, u), np.zeros(3), np.outer(v, v))
    assert got == pytest.approx(2.0, abs=1e-9)


def test_fd_from_samples() -> None:
    rng = np.random.default_rng(2)
    mu = np.array([0.5, -1.0, 2.0, 0.0])
    a = rng.normal(size=(5000, 4))
    # the same cloud shifted: equal covariances, mean difference exactly mu
    assert frechet_distance(a, a + mu) == pytest.approx(mu @ mu, rel=1e-9)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-8)
    # scaled by 2: covariance 4S, trace term Tr(S + 4S - 2 * 2S) = Tr(S) (about 4)
    assert frechet_distance(a, 2.0 * a) == pytest.approx(
        (a.mean(0) ** 2).sum() + np.trace(np.cov(a, rowvar=False)), rel=1e-9
    )
    # independent draws: close to the population value ||mu||^2 (5 standard errors)
    b = rng.normal(size=(5000, 4)) + mu
    assert frechet_distance(a, b) == pytest.approx(mu @ mu, abs=5 * 2 * np.sqrt(2 / 5000) * np.linalg.norm(mu))
    with pytest.raises(ConfigError):
        frechet_distance(a[:, :3], b)


# ------------------------------------------------------------------ AUROC


def _brute_auroc(s_in: np.ndarray, s_out: np.ndarray) -> float:
    total = 0.0
    for o in s_out:
        total += (o > s_in).sum() + 0.5 * (o == s_in).sum()
    return total / (len(s_in) * len(s_out))


def test_auroc_known_cases() -> None:
    assert auroc([0, 1, 2], [3, 4]) == 1.0
    assert auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 1, 1], [1, 1]) == 0.5
    # one of four pairs wrong: out=[2, 5] vs in=[1, 3] -> pairs (2>1 yes, 2>3 no, 5>1, 5>3)
    assert auroc([1, 3], [2, 5]) == 0.75


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=30),
    st.lists(st.integers(-5, 5), min_size=1, max_size=30),
)
def test_auroc_equals_brute_force_pairwise_count(s_in: list[int], s_out: list[int]) -> None:
    a, b = np.asarray(s_in, float), np.asarray(s_out, float)
    assert auroc(a, b) == pytest.approx(_brute_auroc(a, b), abs=1e-12)


def test_auroc_of_shifted_gaussians_matches_closed_form() -> None:
    # For N(0,1) inliers and N(d,1) outliers, AUROC = Phi(d / sqrt(2)).
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    d = 1.0
    got = auroc(rng.normal(size=4000), rng.normal(size=4000) + d)
    assert got == pytest.approx(norm.cdf(d / np.sqrt(2)), abs=0.015)
    with pytest.raises(ConfigError):
        auroc([], [1.0])


# ------------------------------------------------------------------ MIG


def test_entropy_and_mutual_information_closed_forms() -> None:
    v = np.repeat(np.arange(4), 25)
    assert entropy(v) == pytest.approx(np.log(4))
    assert mutual_information(v, v) == pytest.approx(np.log(4))
    # a deterministic relabelling keeps all the information
    assert mutual_information(v, (v * 7) % 4 + 10) == pytest.approx(np.log(4))
    # product design: exactly independent -> 0
    a, b = np.meshgrid(np.arange(3), np.arange(5))
    assert mutual_information(a.ravel(), b.ravel()) == pytest.approx(0.0, abs=1e-12)
    # two bits, one shared: I = log 2
    x, y = np.meshgrid(np.arange(2), np.arange(2))
    assert mutual_information(x.ravel(), (x + 2 * y).ravel()) == pytest.approx(np.log(2))


def test_discretize_bins() -> None:
    z = np.stack([np.linspace(0, 1, 100), np.full(100, 3.0)], axis=1)
    codes = discretize(z, n_bins=10)
    assert codes[:, 0].min() == 0 and codes[:, 0].max() == 9
    assert np.bincount(codes[:, 0]).tolist() == [10] * 10
    assert (codes[:, 1] == 0).all()


def _factors(n: int, sizes: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)


def test_mig_is_one_for_a_copy_and_zero_for_noise() -> None:
    v = _factors(5000, (3, 6, 10), seed=0)
    rng = np.random.default_rng(1)
    # one latent per factor (an affine copy, plus jitter well inside a bin) and two noise dims
    copy = np.concatenate(
        [2.0 * v + 0.05 * rng.normal(size=v.shape) - 1, rng.normal(size=(len(v), 2))], axis=1
    )
    res = mig(copy, v, n_bins=20)
    assert res.score > 0.95
    assert all(g > 0.95 for g in res.per_factor)
    noise = mig(rng.normal(size=(5000, 5)), v, n_bins=20)
    assert noise.score < 0.02


def test_mig_is_zero_when_two_latents_copy_one_factor() -> None:
    # full product design: the two factors are exactly independent in the sample
    g0, g1 = np.meshgrid(np.arange(4), np.arange(4))
    v = np.tile(np.stack([g0.ravel(), g1.ravel()], axis=1), (50, 1))
    z = np.stack([v[:, 0], v[:, 0], v[:, 1]], axis=1).astype(float)
    res = mig(z, v, n_bins=10)
    assert res.per_factor[0] == pytest.approx(0.0, abs=1e-12)
    assert res.per_factor[1] == pytest.approx(1.0, abs=1e-9)
    assert res.score == pytest.approx(0.5, abs=1e-9)


def test_mig_skips_constant_factors() -> None:
    v = _factors(1000, (4,), seed=3)
    v = np.concatenate([v, np.zeros((1000, 1), int)], axis=1)
    z = np.stack([v[:, 0], np.full(1000, 0.3)], axis=1)  # second latent carries nothing
    res = mig(z, v)
    assert res.per_factor[1] is None and res.score == pytest.approx(1.0, abs=1e-9)
    d = res.to_dict(["a", "b"])
    assert d["per_factor"]["b"] is None and d["mig"] == res.score


# ------------------------------------------------------------------ accuracy


def test_accuracy_helpers() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    assert accuracy(logits, labels) == 0.75
    assert accuracy(torch.tensor([0.3, -1.0]), [1, 0]) == 1.0  # binary logits
    assert accuracy(np.array([1, 2, 3]), [1, 2, 0]) == pytest.approx(2 / 3)
    assert per_class_accuracy(logits, labels) == {0: 1.0, 1: pytest.approx(2 / 3)}
    g = group_accuracy(logits, labels, np.array([False, False, True, True]))
    assert g["True"] == 0.5 and g["False"] == 1.0 and g["overall"] == 0.75 and g["worst"] == 0.5


def test_foreground_iou_known_values() -> None:
    from voiceconv.images.metrics import foreground_iou

    truth = np.zeros((2, 3, 4, 4))
    truth[0, 1, :2, :2] = 0.9  # 4 lit pixels (green channel)
    truth[1, 0, 0, 0] = 1.0  # 1 lit pixel
    pred = np.zeros_like(truth)
    pred[0, 2, :2, :3] = 0.8  # 6 lit pixels, 4 of them shared: IoU 4/6
    # image 1: nothing predicted: IoU 0
    assert foreground_iou(pred, truth) == pytest.approx((4 / 6 + 0.0) / 2)
    assert foreground_iou(truth, truth) == 1.0
    assert foreground_iou(np.zeros_like(truth), np.zeros_like(truth)) == 1.0  # both empty
    assert foreground_iou(pred * 0.5, truth) == 0.0  # 0.4 is below the 0.5 threshold
