"""DB-VAE: shapes, the loss composition of Amini et al. (classification for all, VAE
terms for positives only) checked against torch's losses and torch.distributions,
learning on a tiny batch, histogram resampling weights against closed forms,
checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl
from torch.utils.data import DataLoader, TensorDataset

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.dbvae import DBVAE
from voiceconv.models.latent_tools import histogram_sampling_weights

torch.set_num_threads(1)


def _ref_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    q = Normal(mu, torch.exp(0.5 * logvar))
    return torch_kl(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)


@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize("size", [16, (8, 32)])
def test_shapes(arch: str, size) -> None:
    h, w = (size, size) if isinstance(size, int) else size
    model = DBVAE(3, size, latent_dim=4, hidden=(4, 8), arch=arch)
    x = torch.rand(5, 3, h, w)
    out = model(x)
    assert out.recon.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 4)
    assert out.logit.shape == (5,)
    p = model.predict(x)
    assert p.shape == (5,) and bool(((p > 0) & (p < 1)).all())
    assert model.sampling_weights(x).shape == (5,)
    assert model.elbo(x).shape == (5,)


def test_encode_agrees_with_encode_with_logit() -> None:
    model = DBVAE(1, 8, latent_dim=3, hidden=(4,))
    model.eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        logit, mu, logvar = model.encode_with_logit(x)
        mu2, logvar2 = model.encode(x)
        assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
        torch.testing.assert_close(model.predict(x), torch.sigmoid(logit))


def test_loss_is_bce_for_all_plus_vae_terms_for_positives() -> None:
    torch.manual_seed(0)
    model = DBVAE(1, 8, latent_dim=3, hidden=(4,), kl_weight=0.5, classification_weight=3.0)
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([1, 0, 1, 1, 0, 0])
    out = model(x)
    terms = model.loss(x, out, y)
    bce = F.binary_cross_entropy_with_logits(out.logit, y.float(), reduction="none")
    rec = (out.recon - x).abs().flatten(1).sum(1)  # default likelihood: Laplace / L1
    kl = _ref_kl(out.mu, out.logvar)
    expected = (3.0 * bce + y * (rec + 0.5 * kl)).mean()
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["classification"], bce.mean())
    torch.testing.assert_close(terms["recon"], rec[y == 1].mean())
    torch.testing.assert_close(terms["kl"], kl[y == 1].mean())


def test_negatives_do_not_train_the_decoder() -> None:
    torch.manual_seed(0)
    model = DBVAE(1, 8, latent_dim=3, hidden=(4,))
    x = torch.rand(4, 1, 8, 8)
    y = torch.zeros(4)
    out = model(x)
    terms = model.loss(x, out, y)
    cw = model.classification_weight
    assert cw == 64.0  # default: number of values per input (1 x 8 x 8)
    torch.testing.assert_close(terms["loss"], cw * F.binary_cross_entropy_with_logits(out.logit, y))
    terms["loss"].backward()
    for p in model.decoder.parameters():
        assert p.grad is None or not bool(p.grad.any())
    assert float(model.encoder.head.weight.grad.abs().sum()) > 0


def test_bad_targets_raise_config_errors() -> None:
    model = DBVAE(1, 8, latent_dim=2, hidden=(4,))
    x = torch.rand(3, 1, 8, 8)
    out = model(x)
    with pytest.raises(ConfigError, match="targets"):
        model.loss(x, out)
    with pytest.raises(ConfigError, match="0 or 1"):
        model.loss(x, out, torch.tensor([0, 2, 1]))
    with pytest.raises(ConfigError, match="targets"):
        model.loss(x, out, torch.tensor([0, 1]))


def test_loss_falls_and_classifier_learns_on_fixed_batch() -> None:
    torch.manual_seed(0)
    model = DBVAE(1, 16, latent_dim=4, hidden=(8, 16))
    pos = (torch.rand(1, 1, 16, 16) > 0.5).float().repeat(4, 1, 1, 1)
    neg = torch.rand(4, 1, 16, 16)
    x = torch.cat([pos, neg])
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(x, model(x), y)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    p = model.predict(x)
    assert bool((p[:4] > 0.5).all()) and bool((p[4:] < 0.5).all())


# ---------------------------------------------------------------- resampling weights
@pytest.mark.parametrize("dims", [1, 3])
def test_histogram_weights_match_closed_form_for_two_clusters(dims: int) -> None:
    n_common, n_rare, alpha = 45, 5, 1e-3
    g = np.random.default_rng(0)
    common = 0.001 * g.standard_normal((n_common, dims))
    rare = 5.0 + 0.001 * g.standard_normal((n_rare, dims))
    w = histogram_sampling_weights(np.concatenate([common, rare]), bins=10, smoothing=alpha)
    assert w.shape == (50,)
    assert w.sum() == pytest.approx(1.0)
    # clusters land in the two end bins of every dimension: weights are
    # prod_i 1 / (fraction + alpha), equal within a cluster
    ratio = ((n_common / 50 + alpha) / (n_rare / 50 + alpha)) ** dims
    assert np.allclose(w[:n_common], w[0]) and np.allclose(w[n_common:], w[-1])
    assert w[-1] / w[0] == pytest.approx(ratio, rel=1e-9)


def test_histogram_weights_agree_with_numpy_histogram_counts() -> None:
    g = np.random.default_rng(1)
    z = g.standard_normal((200, 2))
    w = histogram_sampling_weights(z, bins=7, smoothing=0.01)
    expected = np.ones(200)
    for i in range(2):
        counts, edges = np.histogram(z[:, i], bins=7)
        idx = np.searchsorted(edges, z[:, i], side="right") - 1
        idx = np.minimum(idx, 6)  # the maximum belongs to the last (closed) bin
        expected /= counts[idx] / 200 + 0.01
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-10)


def test_max_combination_also_upweights_the_rare_cluster() -> None:
    z = np.concatenate([np.zeros((30, 2)), np.ones((3, 2))])
    w = histogram_sampling_weights(z, combine="max")
    assert w.sum() == pytest.approx(1.0)
    assert w[30:].min() > w[:30].max()


def test_dbvae_weights_favour_a_rare_cluster_of_inputs() -> None:
    torch.manual_seed(0)
    model = DBVAE(1, 8, latent_dim=3, hidden=(4, 8))
    g = torch.Generator().manual_seed(0)
    look_a = torch.rand(1, 1, 8, 8, generator=g)
    look_b = torch.rand(1, 1, 8, 8, generator=g)
    x = torch.cat([look_a.repeat(40, 1, 1, 1), look_b.repeat(4, 1, 1, 1)])  # 40 common, 4 rare
    w = model.sampling_weights(x, bins=10, smoothing=1e-3)
    assert model.training  # restored after the eval-mode pass
    assert w.sum() == pytest.approx(1.0)
    assert w[40:].min() > w[:40].max()
    # each latent dimension holds two values (the two looks) in its end bins, so the
    # weight ratio is prod over the 3 dims of (40/44 + alpha) / (4/44 + alpha)
    assert w[-1] / w[0] == pytest.approx(((40 / 44 + 1e-3) / (4 / 44 + 1e-3)) ** 3, rel=1e-6)
    # the weights are those of the posterior means, from a tensor or a (non-shuffling) loader
    model.eval()
    with torch.no_grad():
        mu = model.encode(x)[0]
    np.testing.assert_allclose(w, histogram_sampling_weights(mu), rtol=1e-6)
    loader = DataLoader(TensorDataset(x, torch.zeros(44)), batch_size=7, shuffle=False)
    np.testing.assert_allclose(model.sampling_weights(loader), w, rtol=1e-6)


def test_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = DBVAE(2, (8, 16), latent_dim=3, hidden=(4, 8), likelihood="gaussian", kl_weight=0.1)
    x = torch.randn(4, 2, 8, 16)
    model(x)
    model.eval()
    path = tmp_path / "dbvae.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is DBVAE and loaded.kl_weight == 0.1
    loaded.eval()
    with torch.no_grad():
        torch.manual_seed(5)
        a = model(x)
        torch.manual_seed(5)
        b = loaded(x)
    for got, want in zip(b, a, strict=True):
        assert torch.equal(got, want)
