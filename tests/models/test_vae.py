"""VAE, BetaVAE, ConditionalVAE and latent_tools, checked against torch.distributions
(closed-form and Monte-Carlo KL, log-densities), torch's loss functions, and the
defining properties of each model (gradients through the sample, beta weighting,
one-dimension traversals, label conditioning, outlier scores)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.latent_tools import (
    gaussian_log_density,
    image_grid,
    kl_divergence,
    standard_normal_log_density,
    traverse_latent,
)
from voiceconv.models.vae import VAE, BetaVAE, ConditionalVAE

torch.set_num_threads(1)

SIZES = [16, (8, 32)]


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size


def _ref_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(q || N(0, I)) from torch.distributions."""
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch_kl(q, p).sum(-1)


def _make(kind: str, size, arch: str = "conv", **kw):
    common = dict(in_channels=2, image_size=size, latent_dim=3, hidden=(4, 8), arch=arch, **kw)
    if kind == "vae":
        return VAE(**common)
    if kind == "beta":
        return BetaVAE(beta=4.0, **common)
    return ConditionalVAE(num_classes=3, **common)


def _labels(kind: str, n: int):
    return torch.arange(n) % 3 if kind == "cvae" else None


# ---------------------------------------------------------------- latent_tools
def test_kl_closed_form_matches_torch_and_monte_carlo() -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, generator=g)
    logvar = torch.randn(3, 4, generator=g) * 0.7
    ours = kl_divergence(mu, logvar)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, _ref_kl(mu, logvar))
    # Monte-Carlo estimate E_q[log q(z) - log p(z)] with torch.distributions densities
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(ours, mc, rtol=0.03, atol=0.02)


def test_kl_is_zero_at_the_prior() -> None:
    assert torch.equal(kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2))


def test_gaussian_log_densities_match_torch() -> None:
    g = torch.Generator().manual_seed(1)
    x, mu, logvar = (torch.randn(4, 6, generator=g) for _ in range(3))
    ref = Normal(mu, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_density(x, mu, logvar), ref)
    torch.testing.assert_close(standard_normal_log_density(x), Normal(0.0, 1.0).log_prob(x).sum(-1))


def test_traverse_latent_and_image_grid() -> None:
    z = torch.randn(2, 4)
    grid = traverse_latent(z, 2, [-1.0, 0.5, 3.0])
    assert grid.shape == (2, 3, 4)
    for b in range(2):
        for v, value in enumerate([-1.0, 0.5, 3.0]):
            assert grid[b, v, 2] == value
            assert torch.equal(grid[b, v, [0, 1, 3]], z[b, [0, 1, 3]])
    images = torch.arange(2 * 3 * 1 * 2 * 2, dtype=torch.float32).view(2, 3, 1, 2, 2)
    pic = image_grid(images, padding=1, pad_value=-1.0)
    assert pic.shape == (1, 2 * 3 + 1, 3 * 3 + 1)
    # image (row 1, column 2) sits at top = 1 + 1 * 3, left = 1 + 2 * 3
    assert torch.equal(pic[:, 4:6, 7:9], images[1, 2])
    assert float(pic[0, 0, 0]) == -1.0


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("kind", ["vae", "beta", "cvae"])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize("size", SIZES)
def test_shapes(kind: str, arch: str, size) -> None:
    h, w = _hw(size)
    model = _make(kind, size, arch)
    x = torch.rand(4, 2, h, w)
    y = _labels(kind, 4)
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (4, 3)
    out = model(x, y)
    assert out.recon.shape == x.shape and out.z.shape == (4, 3)
    assert set(model.loss(x, out)) >= {"loss", "recon", "kl"}
    assert model.elbo(x, y, n_samples=2).shape == (4,)
    assert model.outlier_score(x, y).shape == (4,)
    assert model.reconstruct(x, y).shape == x.shape
    assert model.sample(5, labels=None if kind != "cvae" else 1).shape == (5, 2, h, w)
    assert model.latent_traversal(
        x[:2], dim=1, values=[0.0, 1.0], labels=None if y is None else y[:2]
    ).shape == (
        2,
        2,
        2,
        h,
        w,
    )


def test_mel_patch_as_one_channel_image() -> None:
    model = VAE(1, (80, 64), latent_dim=4, hidden=(2, 4, 4, 8), likelihood="gaussian")
    x = torch.randn(2, 1, 80, 64)
    out = model(x)
    assert out.recon.shape == x.shape
    assert model.output == "linear"


def test_flat_vectors_with_mlp() -> None:
    model = VAE(5, None, latent_dim=2, hidden=(16,), arch="mlp", likelihood="gaussian")
    x = torch.randn(3, 5)
    assert model(x).recon.shape == (3, 5)
    assert model.sample(4).shape == (4, 5)


def test_bad_settings_and_inputs_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="sigmoid"):
        VAE(1, 8, 2, hidden=(4,), likelihood="bernoulli", output="linear")
    with pytest.raises(ConfigError, match="likelihood"):
        VAE(1, 8, 2, hidden=(4,), likelihood="poisson")
    model = VAE(1, 8, 2, hidden=(4,))
    with pytest.raises(ConfigError, match="unconditional"):
        model(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(2, 3, 8, 8))
    cvae = ConditionalVAE(1, 8, 2, num_classes=3, hidden=(4,))
    with pytest.raises(ConfigError, match="labels"):
        cvae(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="labels"):
        cvae(torch.rand(2, 1, 8, 8), torch.tensor([0, 3]))


# ---------------------------------------------------------------- reparameterisation
def test_gradients_flow_through_reparameterised_sample(monkeypatch) -> None:
    drawn: list[torch.Tensor] = []
    real_randn_like = torch.randn_like

    def spy(t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        eps = real_randn_like(t, *args, **kwargs)
        drawn.append(eps)
        return eps

    monkeypatch.setattr(torch, "randn_like", spy)
    model = VAE(1, 8, 4, hidden=(4,))
    mu = torch.randn(3, 4, requires_grad=True)
    logvar = torch.randn(3, 4, requires_grad=True)
    z = model.reparameterize(mu, logvar)
    assert len(drawn) == 1 and not drawn[0].requires_grad
    eps = drawn[0]
    torch.testing.assert_close(z.detach(), mu.detach() + torch.exp(0.5 * logvar.detach()) * eps)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))  # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)
    assert bool((logvar.grad != 0).all())


def test_model_gradients_reach_encoder_through_sample() -> None:
    torch.manual_seed(0)
    model = VAE(1, 8, 3, hidden=(4,))
    x = torch.rand(4, 1, 8, 8)
    out = model(x)
    # a loss on the decoded sample only (no KL): gradient must reach the encoder via z
    F.binary_cross_entropy(out.recon, x).backward()
    assert model.encoder.head.weight.grad is not None
    assert float(model.encoder.head.weight.grad.abs().sum()) > 0


# ---------------------------------------------------------------- losses
def test_vae_loss_is_bce_plus_kl() -> None:
    torch.manual_seed(0)
    model = VAE(1, 8, 3, hidden=(4,))
    x = torch.rand(5, 1, 8, 8)
    out = model(x)
    terms = model.loss(x, out)
    rec = F.binary_cross_entropy(out.recon, x, reduction="sum") / 5
    kl = _ref_kl(out.mu, out.logvar).mean()
    torch.testing.assert_close(terms["recon"], rec)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["loss"], rec + kl)


def test_gaussian_likelihood_is_summed_squared_error() -> None:
    torch.manual_seed(0)
    model = VAE(1, 8, 3, hidden=(4,), likelihood="gaussian")
    x = torch.randn(5, 1, 8, 8)
    out = model(x)
    torch.testing.assert_close(
        model.loss(x, out)["recon"], F.mse_loss(out.recon, x, reduction="sum") / 5
    )


@pytest.mark.parametrize("beta", [0.5, 4.0, 10.0])
def test_beta_scales_the_kl_term(beta: float) -> None:
    torch.manual_seed(0)
    model = BetaVAE(1, 8, 3, hidden=(4,), beta=beta)
    x = torch.rand(5, 1, 8, 8)
    out = model(x)
    rec = F.binary_cross_entropy(out.recon, x, reduction="sum") / 5
    kl = _ref_kl(out.mu, out.logvar).mean()
    torch.testing.assert_close(model.loss(x, out)["loss"], rec + beta * kl)


def test_capacity_annealing_targets_a_rising_kl() -> None:
    torch.manual_seed(0)
    model = BetaVAE(1, 8, 3, hidden=(4,), capacity_max=20.0, capacity_steps=100, gamma=50.0)
    x = torch.rand(5, 1, 8, 8)
    out = model(x)
    rec = F.binary_cross_entropy(out.recon, x, reduction="sum") / 5
    kl = _ref_kl(out.mu, out.logvar).mean()
    for step, c in [(0, 0.0), (25, 5.0), (100, 20.0), (400, 20.0)]:
        torch.testing.assert_close(
            model.loss(x, out, step=step)["loss"], rec + 50.0 * (kl - c).abs()
        )
    # without an explicit step, the internal counter advances in training mode only
    assert int(model.num_steps) == 0
    model.loss(x, out)
    model.loss(x, out)
    assert int(model.num_steps) == 2
    model.eval()
    model.loss(x, out)
    assert int(model.num_steps) == 2
    torch.testing.assert_close(model.loss(x, out)["capacity"], torch.tensor(20.0 * 2 / 100))


def test_elbo_is_minus_per_sample_loss_for_the_same_noise() -> None:
    torch.manual_seed(0)
    model = VAE(1, 8, 3, hidden=(4,))
    x = torch.rand(4, 1, 8, 8)
    model(x)  # update batch-norm statistics once
    torch.manual_seed(7)
    elbo = model.elbo(x)
    assert model.training  # mode restored
    model.eval()
    torch.manual_seed(7)
    with torch.no_grad():
        out = model(x)
    rec = F.binary_cross_entropy(out.recon, x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(elbo, -(rec + _ref_kl(out.mu, out.logvar)))


# ---------------------------------------------------------------- traversal and conditioning
def _record_decoder_inputs(model) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("kind", ["vae", "cvae"])
def test_traversal_changes_only_the_chosen_latent(kind: str) -> None:
    torch.manual_seed(0)
    model = _make(kind, 8, "conv")
    x = torch.rand(3, 2, 8, 8)
    y = _labels(kind, 3)
    values = [-2.0, 0.0, 1.5, 4.0]
    with torch.no_grad():
        model.eval()
        mu = model.encode(x, y)[0]
    seen = _record_decoder_inputs(model)
    images = model.latent_traversal(x, dim=1, values=values, labels=y)
    assert images.shape == (3, 4, 2, 8, 8)
    (fed,) = seen
    z_fed = fed[:, :3].view(3, 4, 3)
    for b in range(3):
        for v, value in enumerate(values):
            assert float(z_fed[b, v, 1]) == value
            assert torch.equal(z_fed[b, v, [0, 2]], mu[b, [0, 2]])
    # the images differ along the traversal (the decoder does depend on dim 1)
    assert not torch.allclose(images[:, 0], images[:, -1])
    # traversing given codes: base codes used as is
    seen.clear()
    z = torch.randn(2, 3)
    model.latent_traversal(z=z, dim=0, values=[9.0], labels=None if y is None else y[:2])
    assert torch.equal(seen[0][:, 1:3], z[:, 1:3]) and bool((seen[0][:, 0] == 9.0).all())


def test_conditional_vae_feeds_one_hot_labels_to_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    model = ConditionalVAE(2, (8, 16), 3, num_classes=4, hidden=(4,))
    enc_in: list[torch.Tensor] = []
    model.encoder.register_forward_pre_hook(lambda _m, args: enc_in.append(args[0]))
    dec_in = _record_decoder_inputs(model)
    x = torch.rand(3, 2, 8, 16)
    labels = torch.tensor([2, 0, 3])
    model(x, labels)
    onehot = F.one_hot(labels, 4).float()
    assert enc_in[0].shape == (3, 6, 8, 16)
    assert torch.equal(enc_in[0][:, :2], x)
    assert torch.equal(enc_in[0][:, 2:], onehot[:, :, None, None].expand(-1, -1, 8, 16))
    assert torch.equal(dec_in[0][:, 3:], onehot)
    # one-hot rows and indices are the same conditioning
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x, labels), model.reconstruct(x, onehot))


# ---------------------------------------------------------------- learning and persistence
@pytest.mark.parametrize("kind", ["vae", "beta", "cvae"])
def test_loss_falls_on_fixed_batch(kind: str) -> None:
    torch.manual_seed(0)
    model = _make(kind, 16, "conv")
    prototypes = (torch.rand(2, 2, 16, 16) > 0.5).float()  # two binary images, 4 copies each
    x = prototypes.repeat(4, 1, 1, 1)
    y = _labels(kind, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = model.loss(x, model(x, y))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)


@pytest.mark.parametrize("kind", ["vae", "beta", "cvae"])
def test_save_load_round_trip(kind: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = _make(kind, (8, 16), "conv", likelihood="gaussian")
    x = torch.randn(4, 2, 8, 16)
    y = _labels(kind, 4)
    model.loss(x, model(x, y))  # moves batch-norm statistics (and BetaVAE's counter)
    model.eval()
    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.hparams == model.hparams
    loaded.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        a = model(x, y)
        torch.manual_seed(3)
        b = loaded(x, y)
    for got, want in zip(b, a, strict=True):
        assert torch.equal(got, want)


def test_outlier_score_is_higher_out_of_distribution() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def stripes(n: int, flip: bool = False) -> torch.Tensor:
        base = torch.zeros(1, 8, 8)
        base[:, :, :4] = 1.0
        if flip:
            base = base.flip(-1)
        noise = 0.05 * torch.randn(n, 1, 8, 8, generator=g)
        return (0.1 + 0.8 * base.expand(n, 1, 8, 8) + noise).clamp(0, 1)

    model = VAE(1, 8, 2, hidden=(8, 16))
    x = stripes(64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model.loss(x, model(x))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    inlier = model.outlier_score(stripes(32), n_samples=4)
    mirrored = model.outlier_score(stripes(32, flip=True), n_samples=4)
    noise = model.outlier_score(torch.rand(32, 1, 8, 8, generator=g), n_samples=4)
    assert float(mirrored.min()) > float(inlier.max())
    assert float(noise.min()) > float(inlier.max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_gpu() -> None:
    model = ConditionalVAE(1, 16, 4, num_classes=2, hidden=(4, 8)).to("cuda")
    x = torch.rand(3, 1, 16, 16, device="cuda")
    out = model(x, torch.tensor([0, 1, 1], device="cuda"))
    model.loss(x, out)["loss"].backward()
    assert model.sample(2, labels=1).device.type == "cuda"
    assert model.elbo(x, torch.tensor([0, 1, 1], device="cuda")).device.type == "cuda"
