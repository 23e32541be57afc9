"""Autoencoder and the shared encoder/decoder networks: shapes, losses against
torch's own loss functions, learning on a tiny batch, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voiceconv.errors import ConfigError
from voiceconv.models.autoencoder import Autoencoder
from voiceconv.models.base import load_model, save_model
from voiceconv.models.encoders import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

torch.set_num_threads(1)

SIZES = [16, (8, 32)]


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size


@pytest.mark.parametrize("size", SIZES)
def test_conv_encoder_decoder_shapes(size: int | tuple[int, int]) -> None:
    h, w = _hw(size)
    enc = ConvEncoder(3, size, hidden=(4, 8, 16), out_features=7)
    dec = ConvDecoder(5, 3, size, hidden=(4, 8, 16))
    assert enc(torch.randn(2, 3, h, w)).shape == (2, 7)
    assert dec(torch.randn(2, 5)).shape == (2, 3, h, w)


def test_conv_handles_mel_patch_shape() -> None:
    # 80 mel bins x 64 frames as a 1-channel image, four halvings (80 = 5 * 16).
    enc = ConvEncoder(1, (80, 64), hidden=(2, 4, 4, 8), out_features=6)
    dec = ConvDecoder(3, 1, (80, 64), hidden=(2, 4, 4, 8))
    assert enc(torch.randn(2, 1, 80, 64)).shape == (2, 6)
    assert dec(torch.randn(2, 3)).shape == (2, 1, 80, 64)


@pytest.mark.parametrize("size", [*SIZES, None])
def test_mlp_encoder_decoder_shapes(size: int | tuple[int, int] | None) -> None:
    shape = (3,) if size is None else (3, *_hw(size))
    enc = MLPEncoder(3, size, hidden=(16,), out_features=7)
    dec = MLPDecoder(5, 3, size, hidden=(16,))
    assert enc(torch.randn(2, *shape)).shape == (2, 7)
    assert dec(torch.randn(2, 5)).shape == (2, *shape)


def test_indivisible_size_and_wrong_input_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        ConvEncoder(1, (20, 16), hidden=(4, 8, 16), out_features=2)  # 20 % 8 != 0
    enc = ConvEncoder(1, 16, hidden=(4,), out_features=2)
    with pytest.raises(ConfigError, match=r"\(B, 1, 16, 16\)"):
        enc(torch.randn(2, 1, 16, 8))


@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize("size", SIZES)
def test_autoencoder_shapes_and_sigmoid_range(arch: str, size: int | tuple[int, int]) -> None:
    h, w = _hw(size)
    model = Autoencoder(2, size, latent_dim=3, hidden=(4, 8), arch=arch)
    x = torch.rand(4, 2, h, w)
    assert model.encode(x).shape == (4, 3)
    recon = model(x).detach()
    assert recon.shape == x.shape
    assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0
    assert model.reconstruction_error(x).shape == (4,)


def test_autoencoder_flat_vectors() -> None:
    model = Autoencoder(6, None, latent_dim=2, hidden=(8,), arch="mlp", output="linear")
    x = torch.randn(5, 6)
    assert model(x).shape == (5, 6)


@pytest.mark.parametrize(
    ("recon_loss", "ref"),
    [
        ("mse", lambda r, x: F.mse_loss(r, x, reduction="sum")),
        ("bce", lambda r, x: F.binary_cross_entropy(r, x, reduction="sum")),
        ("l1", lambda r, x: F.l1_loss(r, x, reduction="sum")),
    ],
)
def test_autoencoder_loss_matches_torch_losses(recon_loss: str, ref) -> None:
    torch.manual_seed(0)
    model = Autoencoder(1, 8, latent_dim=2, hidden=(4,), recon_loss=recon_loss)
    x = torch.rand(3, 1, 8, 8)
    recon = model(x)
    got = model.loss(x, recon)["loss"]
    torch.testing.assert_close(got, ref(recon, x) / x.shape[0])
    # per-sample errors, eval mode: each equals the torch loss of that sample alone
    model.eval()
    with torch.no_grad():
        recon_eval = model(x)
    per_sample = model.reconstruction_error(x)
    for i in range(x.shape[0]):
        torch.testing.assert_close(per_sample[i], ref(recon_eval[i], x[i]))


def test_bce_with_linear_output_is_rejected() -> None:
    with pytest.raises(ConfigError, match="sigmoid"):
        Autoencoder(1, 8, 2, hidden=(4,), output="linear", recon_loss="bce")


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_autoencoder_loss_falls_on_fixed_batch(arch: str) -> None:
    torch.manual_seed(0)
    model = Autoencoder(1, 16, latent_dim=4, hidden=(8, 16), arch=arch)
    x = (torch.rand(8, 1, 16, 16) > 0.5).float()  # binary pixels: far from the 0.5 start
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_autoencoder_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = Autoencoder(1, (8, 16), latent_dim=3, hidden=(4, 8), output="linear")
    x = torch.randn(4, 1, 8, 16)
    model(x)  # move batch-norm running statistics away from their initial values
    model.eval()
    path = tmp_path / "ae.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is Autoencoder
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
