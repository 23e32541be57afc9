"""HiFi-GAN generator, MPD/MSD and the vocoder losses: lengths and shapes against closed
forms, weight-norm folding, configuration checks, parameter counts against the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import ConfigError
from voiceconv.models.base import build_from_description, model_payload
from voiceconv.models.losses import GANLoss
from voiceconv.vocoders.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionSTFTLoss,
    MultiScaleDiscriminator,
    feature_matching_loss,
    generator_total,
    mel_l1_loss,
)
from voiceconv.vocoders.hifigan import PRESETS, HiFiGANGenerator, build_generator

torch.set_num_threads(1)

TINY_MEL = MelConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=64, n_mels=16, fmax=4000.0)
TINY_G = dict(upsample_rates=(4, 4, 4), upsample_kernel_sizes=(8, 8, 8), upsample_initial_channel=16,
              resblock="1", resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3), (1, 3)))


def _conv_len(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


# --------------------------------------------------------------------------- generator


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"resblock": "2"},
        # odd kernel - rate: needs an output_padding to stay exactly rate x longer
        {"upsample_kernel_sizes": (7, 9, 5)},
        {"upsample_rates": (8, 8), "upsample_kernel_sizes": (16, 16)},
    ],
)
@pytest.mark.parametrize("frames", [1, 5, 13])
def test_output_length_is_frames_times_hop(overrides, frames):
    gen = HiFiGANGenerator(TINY_MEL.to_dict(), **{**TINY_G, **overrides})
    mel = torch.randn(2, TINY_MEL.n_mels, frames)
    with torch.no_grad():
        wav = gen(mel)
        single = gen(mel[0])
    assert wav.shape == (2, frames * TINY_MEL.hop_length)
    assert single.shape == (frames * TINY_MEL.hop_length,)
    assert float(wav.abs().max()) < 1.0  # tanh output


def test_default_mel_config_paper_layout_length():
    gen = build_generator("v2", MelConfig(), upsample_initial_channel=16)
    with torch.no_grad():
        wav = gen(torch.randn(1, 80, 3))
    assert wav.shape == (1, 3 * 256)


def test_every_convolution_is_weight_normalised_and_removal_keeps_outputs():
    torch.manual_seed(0)
    gen = HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G)
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    # make the weights differ from a fresh init so the comparison means something
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mel = torch.randn(2, TINY_MEL.n_mels, 7)
    with torch.no_grad():
        before = gen(mel)
        gen.remove_weight_norm()
        after = gen(mel)
    assert not any(parametrize.is_parametrized(m) for m in gen.modules())
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_weight_norm_factorises_weight_as_g_times_unit_direction():
    """w = g * v / ||v|| with the norm over every axis but 0 (Salimans & Kingma)."""
    gen = HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G)
    conv = gen.conv_pre
    g = conv.parametrizations.weight.original0
    v = conv.parametrizations.weight.original1
    expected = g * v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    torch.testing.assert_close(conv.weight, expected)


def test_mismatched_upsampling_and_hop_is_a_config_error():
    with pytest.raises(ConfigError, match="hop_length"):
        HiFiGANGenerator(TINY_MEL.to_dict(), **{**TINY_G, "upsample_rates": (4, 4, 2)})
    with pytest.raises(ConfigError, match="hop_length is 256"):
        HiFiGANGenerator(MelConfig().to_dict(), upsample_rates=(8, 8, 2), upsample_kernel_sizes=(16, 16, 4))


@pytest.mark.parametrize(
    "bad",
    [
        {"upsample_kernel_sizes": (8, 8)},  # count differs from the rates
        {"upsample_kernel_sizes": (8, 3, 8)},  # kernel smaller than its rate
        {"resblock": "3"},
        {"resblock_kernel_sizes": (3,)},  # one kernel, two dilation tuples
        {"upsample_initial_channel": 4},  # cannot halve three times and keep channels
    ],
)
def test_inconsistent_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        HiFiGANGenerator(TINY_MEL.to_dict(), **{**TINY_G, **bad})


def test_wrong_mel_channels_is_a_config_error():
    gen = HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G)
    with pytest.raises(ConfigError, match="expected log-mels"):
        gen(torch.randn(1, TINY_MEL.n_mels + 1, 4))


def test_mel_config_travels_with_the_saved_model():
    gen = HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G)
    rebuilt = build_from_description(model_payload(gen))
    assert rebuilt.mel_config == TINY_MEL
    assert rebuilt.hparams == gen.hparams


@pytest.mark.parametrize("preset, paper_millions", [("v1", 13.92), ("v2", 0.92), ("v3", 1.46)])
def test_parameter_counts_match_the_paper(preset, paper_millions):
    """Kong et al. 2020, Table 1 (22.05 kHz, 80 mels, hop 256)."""
    gen = build_generator(preset, MelConfig())
    assert gen.num_parameters() / 1e6 == pytest.approx(paper_millions, rel=0.01)


def test_small_preset_is_smaller_than_v2():
    assert build_generator("small", MelConfig()).num_parameters() < build_generator("v2", MelConfig()).num_parameters()
    assert set(PRESETS) >= {"v1", "v2", "v3", "small"}


# --------------------------------------------------------------------------- discriminators


def test_mpd_logits_and_feature_maps_have_the_closed_form_shapes():
    periods, channels = (2, 3, 5), (4, 8, 8, 16, 16)
    mpd = MultiPeriodDiscriminator(periods, channels)
    batch, t = 3, 1000
    logits, fmaps = mpd(torch.randn(batch, t))
    assert len(logits) == len(fmaps) == len(periods)
    for p, logit, fmap in zip(periods, logits, fmaps, strict=True):
        h = math.ceil(t / p)
        expected = []
        for i, c in enumerate(channels):
            h = _conv_len(h, 5, 3 if i < len(channels) - 1 else 1, 2)
            expected.append((batch, c, h, p))
        expected.append((batch, 1, h, p))
        assert [tuple(f.shape) for f in fmap] == expected
        assert logit.shape == (batch, h * p)


def test_mpd_folds_samples_period_apart_into_columns():
    """A signal that is zero except on one residue class mod p only lights that column."""
    mpd = MultiPeriodDiscriminator((4,), (2, 2, 2, 2, 2))
    x = torch.zeros(1, 64)
    x[0, 1::4] = torch.randn(16)
    _, fmaps = mpd(x)
    first = mpd.discriminators[0].convs[0]
    silent = torch.nn.functional.leaky_relu(first.bias, 0.1).reshape(1, -1, 1)
    out = fmaps[0][0][0]  # (C, H, p)
    for col in (0, 2, 3):
        torch.testing.assert_close(out[:, :, col], silent[0].expand_as(out[:, :, col]))
    assert not torch.allclose(out[:, :, 1], silent[0].expand_as(out[:, :, 1]))


def test_msd_logits_and_feature_maps_have_the_closed_form_shapes():
    channels, groups = (8, 8, 16, 16, 32, 32, 32), (1, 4, 8, 8, 8, 8, 1)
    msd = MultiScaleDiscriminator(3, channels, groups)
    batch, t = 2, 1500
    logits, fmaps = msd(torch.randn(batch, 1, t))
    assert len(logits) == len(fmaps) == 3
    n = t
    for scale, (logit, fmap) in enumerate(zip(logits, fmaps, strict=True)):
        if scale > 0:
            n = _conv_len(n, 4, 2, 2)  # AvgPool1d(4, 2, padding=2)
        length, expected = n, []
        for c, k, s in zip(channels, (15, 41, 41, 41, 41, 41, 5), (1, 2, 2, 4, 4, 1, 1), strict=True):
            length = _conv_len(length, k, s, (k - 1) // 2)
            expected.append((batch, c, length))
        expected.append((batch, 1, length))
        assert [tuple(f.shape) for f in fmap] == expected
        assert logit.shape == (batch, length)


def test_msd_norms_first_spectral_then_weight():
    msd = MultiScaleDiscriminator(3, (8, 8, 16, 16, 32, 32, 32), (1, 4, 8, 8, 8, 8, 1))
    kinds = [type(d.convs[0].parametrizations.weight[0]).__name__ for d in msd.discriminators]
    assert kinds[0] == "_SpectralNorm"
    assert kinds[1:] == ["_WeightNorm", "_WeightNorm"]


def test_discriminators_refuse_bad_settings_and_inputs():
    with pytest.raises(ConfigError):
        MultiScaleDiscriminator(3, (8, 8, 16, 16, 32, 32, 32), (1, 3, 8, 8, 8, 8, 1))  # 3 does not divide 8
    with pytest.raises(ConfigError):
        MultiScaleDiscriminator(3, (8, 8, 16), (1, 4, 8))
    with pytest.raises(ConfigError):
        MultiPeriodDiscriminator((2, 0))
    with pytest.raises(ConfigError):
        MultiPeriodDiscriminator((2,), (2, 2, 2, 2, 2))(torch.randn(2, 3, 100))


# --------------------------------------------------------------------------- losses


def test_feature_matching_is_sum_over_layers_of_mean_abs_difference():
    rng = np.random.default_rng(0)
    real = [[rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 1, 4))], [rng.normal(size=(2, 7))]]
    fake = [[rng.normal(size=a.shape) for a in sub] for sub in real]
    expected = sum(np.mean(np.abs(r - f)) for rs, fs in zip(real, fake, strict=True)
                   for r, f in zip(rs, fs, strict=True))
    t = lambda nested: [[torch.tensor(a) for a in sub] for sub in nested]  # noqa: E731
    assert float(feature_matching_loss(t(real), t(fake))) == pytest.approx(expected, rel=1e-12)


def test_lsgan_terms_summed_over_sub_discriminators():
    r = [torch.tensor([0.5, 1.5]), torch.tensor([2.0])]
    f = [torch.tensor([0.0, 1.0]), torch.tensor([-1.0])]
    loss = GANLoss("lsgan")
    # paper eq. (1)-(2): E[(D(x) - 1)^2 + D(G(s))^2] and E[(D(G(s)) - 1)^2], per sub-discriminator
    d_expected = (0.25 + 0.25) / 2 + 1.0 + (0.0 + 1.0) / 2 + 1.0
    g_expected = (1.0 + 0.0) / 2 + 4.0
    assert float(loss.discriminator_loss(r, f)) == pytest.approx(d_expected)
    assert float(loss.generator_loss(f)) == pytest.approx(g_expected)


def test_mel_l1_and_generator_total():
    a, b = torch.zeros(1, 4, 6), torch.full((1, 4, 5), 0.5)
    assert float(mel_l1_loss(a, b)) == pytest.approx(0.5)  # compared over the common frames
    total = generator_total(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0))
    assert float(total) == pytest.approx(1.0 + 2 * 2.0 + 45 * 3.0)


# ----------------------------------------------------------- multi-resolution STFT loss


def test_mr_stft_loss_is_zero_for_equal_signals_and_closed_form_for_a_gain():
    torch.manual_seed(0)
    x = torch.randn(2, 4096)
    loss = MultiResolutionSTFTLoss()
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    # fake = g * real: spectral convergence |1 - g|, log-magnitude L1 |log g| at every resolution
    g = 0.5
    assert float(loss(x, g * x)) == pytest.approx(abs(1 - g) + abs(math.log(g)), rel=1e-4)
    # (B, 1, T) is accepted like (B, T); segments shorter than n_fft / 2 still work
    assert float(loss(x.unsqueeze(1), g * x.unsqueeze(1))) == pytest.approx(abs(1 - g) + abs(math.log(g)), rel=1e-4)
    assert torch.isfinite(loss(x[:, :600], x[:, :600] * 0.9))
    with pytest.raises(ConfigError):
        MultiResolutionSTFTLoss(((512, 50, 1024),))


# ----------------------------------------------------------- Griffin-Lim source


def _gl_generator() -> HiFiGANGenerator:
    torch.manual_seed(0)
    return HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G, source="griffinlim", source_iters=8)


def test_griffinlim_source_generator_starts_at_griffinlim():
    """Untrained, the magnitude net is the NNLS inversion and the output is Griffin-Lim's."""
    from voiceconv.vocoders.griffinlim import GriffinLim

    g = _gl_generator().eval()
    mel = torch.randn(2, TINY_MEL.n_mels, 12) - 4.0
    gl = GriffinLim(TINY_MEL, n_iter=8, seed=0)(mel, length=12 * TINY_MEL.hop_length)
    with torch.no_grad():
        out = g(mel)
        out_given = g(mel, gl)
    assert out.shape == gl.shape == (2, 12 * TINY_MEL.hop_length)
    torch.testing.assert_close(out, out_given)
    # the correction starts small: the untrained output is Griffin-Lim's to within a few %
    rel = float(torch.linalg.vector_norm(out - gl) / torch.linalg.vector_norm(gl))
    assert 0.0 < rel < 0.05
    # and it is learnable: the source convolutions and conv_post get gradients
    g.train()
    g(mel, gl).pow(2).sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in g.source_convs)
    assert g.conv_post.parametrizations.weight.original1.grad.abs().sum() > 0


def test_griffinlim_source_settings_and_shapes_are_checked():
    g = _gl_generator()
    mel = torch.randn(1, TINY_MEL.n_mels, 6)
    with pytest.raises(ConfigError):
        g(mel, torch.zeros(1, 5 * TINY_MEL.hop_length))  # source of the wrong length
    with pytest.raises(ConfigError):
        HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G)(mel, torch.zeros(1, 6 * TINY_MEL.hop_length))
    with pytest.raises(ConfigError):
        HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G, source="sine")
    with pytest.raises(ConfigError):
        HiFiGANGenerator(TINY_MEL.to_dict(), **TINY_G).make_source(mel)


def test_griffinlim_source_generator_round_trips_and_folds_weight_norm():
    g = _gl_generator().eval()
    mel = torch.randn(1, TINY_MEL.n_mels, 7) - 4.0
    with torch.no_grad():
        want = g(mel)
    rebuilt = build_from_description(model_payload(g))
    assert rebuilt.source == "griffinlim" and rebuilt.hparams["source_iters"] == 8
    rebuilt.load_state_dict(g.state_dict())
    rebuilt.eval().remove_weight_norm()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(mel), want, rtol=1e-4, atol=1e-5)
