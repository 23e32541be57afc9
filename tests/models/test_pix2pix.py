"""pix2pix U-Net and training objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.blocks import PatchDiscriminator
from voiceconv.models.pix2pix import Pix2Pix, UNetGenerator

torch.set_num_threads(1)


def _millions(m: nn.Module, skip_instance_affine: bool = False) -> float:
    n = sum(p.numel() for p in m.parameters())
    if skip_instance_affine:
        n -= sum(p.numel() for mod in m.modules() if isinstance(mod, nn.InstanceNorm2d)
                 for p in mod.parameters())
    return round(n / 1e6, 3)


def test_parameter_counts_match_the_reference_implementation() -> None:
    # pytorch-CycleGAN-and-pix2pix prints "[Network G] Total number of parameters : 54.414 M"
    # for pix2pix's unet_256 with batch norm, "2.769 M" for its PatchGAN on 6 channels,
    # and "2.765 M" for CycleGAN's PatchGAN (instance norm without affine) on 3 channels.
    with torch.device("meta"):
        g = UNetGenerator(3, 3, 8, 64, "batch")
    assert _millions(g) == 54.414
    assert _millions(PatchDiscriminator(6, 64, 3, 2, "batch")) == 2.769
    assert _millions(PatchDiscriminator(3, 64, 3, 2, "instance"), skip_instance_affine=True) == 2.765


@pytest.mark.parametrize("num_downs", [5, 6, 7, 8])
def test_dropout_sits_in_the_num_downs_minus_5_inner_levels(num_downs: int) -> None:
    with torch.device("meta"):
        g = UNetGenerator(3, 3, num_downs, 2, dropout=0.5)
    drops = [m for m in g.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == num_downs - 5
    assert all(d.p == 0.5 for d in drops)


def test_unet_shapes_and_range() -> None:
    g = UNetGenerator(1, 3, 5, 4)
    y = g(torch.randn(2, 1, 32, 64))
    assert y.shape == (2, 3, 32, 64)
    assert y.abs().max() <= 1
    with pytest.raises(ValueError):
        g(torch.randn(1, 1, 40, 32))
    with pytest.raises(ConfigError):
        UNetGenerator(1, 1, 1)


def test_outermost_decoder_receives_the_encoder_features() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(2, 2, 3, 4, norm="instance", dropout=0.0)
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    upconvs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    first_down, last_up = convs[0], upconvs[-1]
    seen = {}
    last_up.register_forward_hook(lambda mod, inp, out: seen.setdefault("in", inp[0]))
    x = torch.randn(1, 2, 16, 16)
    g(x)
    skip = F.relu(F.conv2d(x, first_down.weight, first_down.bias, stride=2, padding=1))
    assert seen["in"].shape[1] == 2 * 4
    torch.testing.assert_close(seen["in"][:, :4], skip)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    src = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    tgt = torch.flip(src, dims=[-1]) * 0.5
    return src, tgt


def test_l1_to_target_falls_during_training() -> None:
    torch.manual_seed(0)
    model = Pix2Pix(1, 1, num_downs=4, base_channels=8, d_base_channels=8, d_layers=2)
    src, tgt = _batch()
    opt_g = torch.optim.Adam(model.generator_parameters(), 2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator_parameters(), 2e-3, betas=(0.5, 0.999))
    first = None
    for _ in range(30):
        model.discriminator.requires_grad_(False)
        out = model.generator_loss(src, tgt)
        opt_g.zero_grad()
        out.loss.backward()
        opt_g.step()
        model.discriminator.requires_grad_(True)
        d_loss, _ = model.discriminator_loss(src, tgt, out.fake)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        first = float(out.logs["l1"]) if first is None else first
    assert float(out.logs["l1"]) < 0.5 * first


def test_discriminator_judges_pairs_and_leaves_generator_alone() -> None:
    model = Pix2Pix(2, 3, num_downs=3, base_channels=4, d_base_channels=4, d_layers=2)
    first_conv = next(m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 2 + 3
    src, tgt = torch.randn(2, 2, 16, 16), torch.randn(2, 3, 16, 16)
    out = model.generator_loss(src, tgt)
    assert not out.fake.requires_grad
    loss, logs = model.discriminator_loss(src, tgt, model(src))
    loss.backward()
    assert all(p.grad is None for p in model.generator_parameters())
    assert all(p.grad is not None for p in model.discriminator_parameters())
    assert set(logs) == {"d_total"}
    assert model.lambda_l1 == 100.0


def test_save_load_round_trip(tmp_path) -> None:
    model = Pix2Pix(1, 1, num_downs=5, base_channels=4, d_base_channels=4)
    model.train()
    model(torch.randn(4, 1, 32, 32))  # update batch-norm running statistics
    save_model(model, tmp_path / "p2p.pt")
    loaded = load_model(tmp_path / "p2p.pt")
    model.eval()
    loaded.eval()
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model.translate(x), loaded.translate(x))
