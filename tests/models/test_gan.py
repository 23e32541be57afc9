"""DCGAN nets, the define_G/define_D factories and the unconditional GAN wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.blocks import PatchDiscriminator
from voiceconv.models.cyclegan import ResnetGenerator
from voiceconv.models.gan import GAN, DCGANDiscriminator, DCGANGenerator, define_D, define_G
from voiceconv.models.losses import GAN_MODES
from voiceconv.models.pix2pix import UNetGenerator

torch.set_num_threads(1)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_dcgan_shapes(size: int) -> None:
    g = DCGANGenerator(latent_dim=6, out_channels=3, image_size=size, base_channels=4)
    x = g(torch.randn(2, 6))
    assert x.shape == (2, 3, size, size)
    assert x.abs().max() <= 1
    assert torch.equal(g(torch.zeros(2, 6, 1, 1)), g(torch.zeros(2, 6)))
    d = DCGANDiscriminator(3, size, 4)
    assert d(x).shape == (2,)


def test_dcgan_64_follows_the_paper_channel_plan() -> None:
    # Radford et al. Fig. 1: 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3 (base 128).
    g = DCGANGenerator(100, 3, 64, 128)
    outs = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert outs == [1024, 512, 256, 128, 3]


def test_dcgan_rejects_bad_sizes() -> None:
    for size in (4, 24, 0):
        with pytest.raises(ConfigError):
            DCGANGenerator(8, 3, size, 4)


def test_dcgan_init_is_normal_002() -> None:
    torch.manual_seed(0)
    g = DCGANGenerator(100, 3, 32, 32)
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(float(w.std()) - 0.02) < 0.001


def test_factories() -> None:
    assert isinstance(define_G("dcgan", latent_dim=4, image_size=8, base_channels=2), DCGANGenerator)
    u = define_G("unet_128", in_channels=1, out_channels=1, base_channels=2)
    assert isinstance(u, UNetGenerator) and u.hparams["num_downs"] == 7
    assert define_G("unet_256", base_channels=2).hparams["num_downs"] == 8
    r = define_G("resnet_6blocks", in_channels=3, out_channels=3, base_channels=2)
    assert isinstance(r, ResnetGenerator) and r.hparams["n_blocks"] == 6
    d = define_D("basic", in_channels=3, base_channels=2)
    assert isinstance(d, PatchDiscriminator) and d.hparams["n_layers"] == 3
    assert isinstance(define_D("dcgan", in_channels=1, image_size=8, base_channels=2), DCGANDiscriminator)
    with pytest.raises(ConfigError):
        define_G("transformer")
    with pytest.raises(ConfigError):
        define_D("pixel")


def test_factory_initialisation() -> None:
    torch.manual_seed(0)
    r = define_G("resnet", in_channels=3, out_channels=3, base_channels=16, n_blocks=2,
                 init="normal", init_gain=0.05)
    w = torch.cat([m.weight.detach().flatten() for m in r.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(w.std()) - 0.05) < 0.05 * 0.03


@pytest.mark.parametrize("mode", GAN_MODES)
def test_gan_losses_run_in_every_mode(mode: str) -> None:
    gan = GAN(latent_dim=4, channels=1, image_size=8, base_channels=4, gan_mode=mode)
    real = torch.rand(3, 1, 8, 8) * 2 - 1
    g = gan.generator_loss(real)
    d = gan.discriminator_loss(real)
    assert g.shape == () and d.shape == ()
    d.backward()
    assert all(p.grad is None for p in gan.generator_parameters())


def test_gan_discriminator_loss_falls_on_a_fixed_split() -> None:
    torch.manual_seed(0)
    gan = GAN(latent_dim=4, channels=1, image_size=8, base_channels=8)
    real = torch.rand(8, 1, 8, 8) * 2 - 1
    fake = gan.sample(8)
    opt = torch.optim.Adam(gan.discriminator_parameters(), 1e-2, betas=(0.5, 0.999))
    losses = []
    for _ in range(25):
        loss = gan.discriminator_loss(real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_gan_save_load_round_trip(tmp_path) -> None:
    gan = GAN(latent_dim=4, channels=3, image_size=16, base_channels=4, gan_mode="hinge",
              d_norm="none", d_spectral_norm=True)
    gan.discriminator(torch.randn(2, 3, 16, 16))  # advance the spectral-norm power iteration
    save_model(gan, tmp_path / "gan.pt")
    loaded = load_model(tmp_path / "gan.pt")
    gan.eval()
    loaded.eval()
    z = torch.randn(3, 4)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(gan(z), loaded(z))
    assert torch.equal(gan.discriminator(x), loaded.discriminator(x))
    s1 = gan.sample(2, generator=torch.Generator().manual_seed(5))
    s2 = loaded.sample(2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s1, s2)
