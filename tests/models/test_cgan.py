"""Class-conditional GAN with a projection discriminator."""

from __future__ import annotations

import pytest
import torch

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.cgan import ConditionalGAN

torch.set_num_threads(1)


def _model(**kw) -> ConditionalGAN:
    args = {"num_classes": 3, "latent_dim": 4, "channels": 1, "image_size": 8, "base_channels": 4,
            "embed_dim": 3}
    args.update(kw)
    return ConditionalGAN(**args)


def test_sample_shapes_and_label_dependence() -> None:
    torch.manual_seed(0)
    m = _model()
    labels = torch.tensor([0, 1, 2, 1])
    x = m.sample(labels)
    assert x.shape == (4, 1, 8, 8)
    m.eval()
    z = torch.randn(1, 4).repeat(3, 1)
    y = m.generate(z, torch.tensor([0, 1, 2]))
    # conditional batch norm starts as plain batch norm (gamma 1, beta 0 for every class,
    # de Vries et al.), so at first the label changes nothing ...
    assert torch.allclose(y[0], y[1]) and torch.allclose(y[1], y[2])
    with torch.no_grad():  # ... and once the per-class scales and shifts differ, it does
        for norm in m.generator.norms:
            norm.gamma.weight.normal_(1.0, 0.5)
            norm.beta.weight.normal_(0.0, 0.5)
    y = m.generate(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(y[0], y[1]) and not torch.allclose(y[1], y[2])
    assert m.discriminate(x, labels).shape == (4,)


def test_projection_is_the_only_label_path_in_the_discriminator() -> None:
    # D(x, y) = psi(phi(x)) + <V[y], phi(x)>: with V = 0 the logit cannot depend on y, and
    # D(x, y1) - D(x, y2) = <V[y1] - V[y2], phi(x)> is linear in V.
    torch.manual_seed(0)
    m = _model(spectral_norm=False)
    x = torch.randn(2, 1, 8, 8)
    y0, y1 = torch.tensor([0, 0]), torch.tensor([2, 2])
    assert not torch.allclose(m.discriminate(x, y0), m.discriminate(x, y1))
    diff = m.discriminate(x, y0) - m.discriminate(x, y1)
    with torch.no_grad():
        m.d_projection.weight.mul_(3.0)
    diff3 = m.discriminate(x, y0) - m.discriminate(x, y1)
    torch.testing.assert_close(diff3, 3 * diff)
    with torch.no_grad():
        m.d_projection.weight.zero_()
    torch.testing.assert_close(m.discriminate(x, y0), m.discriminate(x, y1))


def test_discriminator_loss_falls_on_a_fixed_split() -> None:
    torch.manual_seed(0)
    m = _model(base_channels=8, mismatch_weight=0.0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    real = torch.rand(6, 1, 8, 8) * 2 - 1
    fake = m.sample(labels)
    opt = torch.optim.Adam(m.discriminator_parameters(), 2e-3, betas=(0.0, 0.9))
    losses = []
    for _ in range(40):
        loss = m.discriminator_loss(real, labels, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_mismatch_term_is_the_hinge_on_real_images_with_the_other_label() -> None:
    # two classes: the wrong label is 1 - y, so the extra term is known in closed form
    torch.manual_seed(0)
    m = _model(num_classes=2, mismatch_weight=0.7).eval()  # eval: batch norm with fixed statistics
    real, fake, y = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        with_term = m.discriminator_loss(real, y, fake)
        m.mismatch_weight = 0.0
        without = m.discriminator_loss(real, y, fake)
        expected = 0.7 * torch.relu(1 + m.discriminate(real, 1 - y)).mean()
    torch.testing.assert_close(with_term - without, expected)


def test_losses_route_gradients_to_the_right_player() -> None:
    m = _model()
    labels = torch.tensor([0, 2])
    m.discriminator_loss(torch.randn(2, 1, 8, 8), labels).backward()
    assert all(p.grad is None for p in m.generator_parameters())
    assert all(p.grad is not None for p in m.discriminator_parameters())
    m.zero_grad(set_to_none=True)
    m.generator_loss(labels).backward()
    assert all(p.grad is not None for p in m.generator_parameters())


def test_bad_labels_and_arguments() -> None:
    m = _model()
    with pytest.raises(ValueError):
        m.sample(torch.tensor([3]))
    with pytest.raises(ValueError):
        m.sample(torch.tensor([[0]]))
    with pytest.raises(ConfigError):
        _model(num_classes=0)
    with pytest.raises(ConfigError):
        _model(gan_mode="wasserstein")


def test_save_load_round_trip(tmp_path) -> None:
    m = _model()
    m.discriminate(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))  # power iteration step
    save_model(m, tmp_path / "cgan.pt")
    loaded = load_model(tmp_path / "cgan.pt")
    m.eval()
    loaded.eval()
    z, y = torch.randn(3, 4), torch.tensor([2, 0, 1])
    assert torch.equal(m.generate(z, y), loaded.generate(z, y))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(m.discriminate(x, y), loaded.discriminate(x, y))


def test_full_resolution_output_stage(tmp_path) -> None:
    # g_out_conv: the last 2x stage ends in base_channels features at full resolution,
    # then a 3x3 conv draws the image; saved and reloaded with the option
    m = ConditionalGAN(num_classes=3, latent_dim=4, channels=1, image_size=8, base_channels=4,
                       g_out_conv=True)
    assert isinstance(m.generator.out, torch.nn.Conv2d) and m.generator.out.kernel_size == (3, 3)
    assert m.generator.out.in_channels == 4
    m.eval()
    z, y = torch.randn(3, 4), torch.tensor([2, 0, 1])
    out = m.generate(z, y)
    assert out.shape == (3, 1, 8, 8) and float(out.detach().abs().max()) <= 1.0
    save_model(m, tmp_path / "cgan.pt")
    assert torch.equal(load_model(tmp_path / "cgan.pt").eval().generate(z, y), out)


def test_old_checkpoints_rebuild_the_old_architecture() -> None:
    # hparams saved before g_norm / d_norm existed describe the label-at-the-input
    # generator and the spectral-norm discriminator without batch norm
    old = {"num_classes": 3, "latent_dim": 4, "channels": 1, "image_size": 8, "base_channels": 4,
           "embed_dim": 3, "gan_mode": "hinge", "spectral_norm": True}
    m = ConditionalGAN(**ConditionalGAN.upgrade_hparams(old))
    assert m.label_embedding is not None and not m.conditional_norm
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.d_net.modules())


@pytest.mark.slow
@pytest.mark.parametrize("g_arch", ["dcgan", "placed"])
def test_two_class_gan_draws_the_asked_class_with_diversity(g_arch: str) -> None:
    # class 0: a bright 3x3 square somewhere in the left half of an 8x8 image, class 1:
    # in the right half. A conditional GAN must put its square on the asked side and
    # keep the position varying within each class.
    from voiceconv.images.data.sources import TensorImages
    from voiceconv.images.loops import LoopConfig, fit_cgan

    g = torch.Generator().manual_seed(0)
    n = 512
    labels = torch.arange(n) % 2
    x = torch.zeros(n, 1, 8, 8)
    rows = torch.randint(0, 6, (n,), generator=g)
    cols = torch.where(labels == 1, torch.randint(4, 6, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))
    for i in range(n):
        x[i, 0, rows[i] : rows[i] + 3, cols[i] : cols[i] + 3] = 1
    torch.manual_seed(0)
    m = ConditionalGAN(2, latent_dim=8, channels=1, image_size=8, base_channels=16, g_arch=g_arch,
                       placement_zoom=1.5)
    fit_cgan(m, TensorImages(x, labels), LoopConfig(steps=500, batch_size=32, lr=2e-3, log_every=50))
    torch.manual_seed(1)
    asked = torch.arange(200) % 2
    out = (m.sample(asked) + 1) / 2
    left, right = out[:, 0, :, :4].sum((1, 2)), out[:, 0, :, 4:].sum((1, 2))
    on_asked_side = torch.where(asked == 0, left > right, right > left)
    assert float(on_asked_side.float().mean()) > 0.9
    real_std = float(x.std(0).mean())
    for k in (0, 1):
        assert float(out[asked == k].std(0).mean()) > 0.3 * real_std


def test_auxiliary_classifier_learns_a_two_class_problem() -> None:
    # known answer: class 0 = bright left half, class 1 = bright right half (plus noise);
    # the discriminator loss alone must teach D's auxiliary head to tell them apart
    torch.manual_seed(0)
    m = _model(num_classes=2, base_channels=8, aux_weight=1.0, mismatch_weight=0.0)
    assert m.d_aux is not None and m.g_aux_weight == 1.0 and not m.aux_fake
    y = torch.arange(32) % 2
    real = torch.rand(32, 1, 8, 8) * 0.5 - 1
    real[y == 0, :, :, :4] += 1.5
    real[y == 1, :, :, 4:] += 1.5
    fake = m.sample(y)
    opt = torch.optim.Adam(m.discriminator_parameters(), 2e-3, betas=(0.5, 0.999))
    for _ in range(60):
        loss = m.discriminator_loss(real, y, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = float((m.classify(real).argmax(1) == y).float().mean())  # train mode: batch statistics
    assert acc > 0.95
    # G's loss carries the cross-entropy of its samples through D's head, and only D's
    # optimiser sees the head
    names = {id(p) for p in m.d_aux.parameters()}
    assert names <= {id(p) for p in m.discriminator_parameters()}
    assert not names & {id(p) for p in m.generator_parameters()}
    m.zero_grad(set_to_none=True)
    m.generator_loss(y).backward()
    assert all(p.grad is not None for p in m.generator_parameters())
    with pytest.raises(ConfigError):
        _model().classify(real)


def test_checkpoints_without_aux_weight_load_without_the_head() -> None:
    hp = ConditionalGAN.upgrade_hparams({"num_classes": 2, "g_norm": "conditional_batch"})
    assert hp["aux_weight"] == 0.0


def _disk_canonical(size: int, cx: float, cy: float, rx: float, ry: float):
    """Logits of an axis-aligned ellipse (centre and radii in [-1, 1] image units):
    +10 inside, -10 outside."""
    g = (torch.arange(size) + 0.5) / size * 2 - 1
    inside = ((g[None, :] - cx) / rx) ** 2 + ((g[:, None] - cy) / ry) ** 2 <= 1
    return (inside.float() * 20 - 10)[None, None]


def _centre_and_extent(img: torch.Tensor) -> tuple[float, float, float, float]:
    """Centroid (x, y) and half-extents (x, y) of the lit pixels, in [-1, 1] units."""
    size = img.shape[-1]
    g = (torch.arange(size) + 0.5) / size * 2 - 1
    lit = (img[0, 0] > 0).float()
    ys, xs = torch.nonzero(lit, as_tuple=True)
    cx, cy = float(g[xs].mean()), float(g[ys].mean())
    return cx, cy, float(g[xs].max() - g[xs].min()) / 2, float(g[ys].max() - g[ys].min()) / 2


@pytest.mark.parametrize("canvas", [None, 32])
def test_placed_generator_places_the_canonical_object_by_zoom_rotation_and_shift(monkeypatch, canvas) -> None:
    # the canonical frame holds a centred ellipse 0.8 wide and 0.3 high (half-extents); with
    # the pose MLP at its zero init, z[:, :4] sets the pose in closed form:
    # zoom = 2.5 * exp(0.35 tanh z0), angle = pi tanh z1, shift = 0.75 tanh(0.6 z2 | 0.6 z3)
    import math

    from voiceconv.models.cgan import PlacedObjectGenerator

    size = 64
    # a canonical frame of the image's size, or of half of it (canvas 32, drawn at 64 / 2.5)
    g = PlacedObjectGenerator(latent_dim=8, num_classes=2, out_channels=1, image_size=size, base_channels=2,
                              canvas_size=canvas)
    canon = _disk_canonical(canvas or size, 0.0, 0.0, 0.8, 0.3)
    monkeypatch.setattr(g, "canonical", lambda z, labels: canon.expand(z.shape[0], -1, -1, -1))
    z = torch.zeros(3, 8)
    z[1, 2], z[1, 3] = math.atanh(0.5) / 0.6, math.atanh(-0.4) / 0.6  # shift (0.375, -0.3)
    z[2, 1] = math.atanh(0.5)  # a quarter turn
    z[2, 0] = math.atanh(1 / 0.35 * math.log(2 / 2.5))  # zoom 2
    with torch.no_grad():
        out = g(z, torch.zeros(3, dtype=torch.long))
    px = 2 / size  # one pixel in [-1, 1] units
    cx, cy, ex, ey = _centre_and_extent(out[:1])
    assert abs(cx) < px and abs(cy) < px
    assert abs(ex - 0.8 / 2.5) < 1.5 * px and abs(ey - 0.3 / 2.5) < 1.5 * px
    cx, cy, ex, ey = _centre_and_extent(out[1:2])
    assert abs(cx - 0.375) < px and abs(cy + 0.3) < px
    assert abs(ex - 0.8 / 2.5) < 1.5 * px and abs(ey - 0.3 / 2.5) < 1.5 * px
    cx, cy, ex, ey = _centre_and_extent(out[2:3])  # turned by 90 degrees: the long axis is vertical
    assert abs(cx) < px and abs(cy) < px
    assert abs(ex - 0.3 / 2) < 1.5 * px and abs(ey - 0.8 / 2) < 1.5 * px
    assert out.min() >= -1 and out.max() <= 1


def test_placed_generator_is_an_option_of_the_cgan(tmp_path) -> None:
    m = _model(g_arch="placed", image_size=16)
    x = m.sample(torch.tensor([0, 1, 2]))
    assert x.shape == (3, 1, 16, 16)
    save_model(m, tmp_path / "c.pt")
    back = load_model(tmp_path / "c.pt")
    assert type(back.generator).__name__ == "PlacedObjectGenerator"
    half = _model(g_arch="placed", image_size=16, placement_canvas=8)  # the canonical frame at 8x8
    assert half.generator.canonical(torch.randn(2, half.latent_dim), torch.tensor([0, 1])).shape == (2, 1, 8, 8)
    assert half.sample(torch.tensor([0, 1])).shape == (2, 1, 16, 16)
    save_model(half, tmp_path / "h.pt")
    assert load_model(tmp_path / "h.pt").hparams["placement_canvas"] == 8
    with pytest.raises(ConfigError, match="g_arch"):
        _model(g_arch="nope")
    with pytest.raises(ConfigError, match="g_arch"):
        _model(g_arch="placed", g_norm="batch")
