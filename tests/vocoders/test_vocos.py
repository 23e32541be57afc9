"""Vocos: the synthesis is torch.istft of the predicted spectrum, lengths, the paper's size,
the MelConfig check on loading, the multi-resolution discriminator and the phase loss."""

from __future__ import annotations

import math

import pytest
import torch

from voiceconv.audio.mel import MelConfig, mel_filterbank
from voiceconv.errors import ConfigError, MelConfigMismatch
from voiceconv.models.base import save_model
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.discriminators import MultiResolutionDiscriminator
from voiceconv.vocoders.vocos import VocosGenerator, anti_wrap, spectrum_phase_loss

torch.set_num_threads(1)

SMALL = dict(dim=16, intermediate_dim=32, num_layers=2)
MEL = MelConfig(sample_rate=8000, n_fft=256, win_length=192, hop_length=64, n_mels=16, fmax=4000.0)


def _randomised(gen: VocosGenerator) -> VocosGenerator:
    """Larger random head weights than the init, so magnitudes and phases vary a lot."""
    with torch.no_grad():
        gen.head.weight.normal_(0.0, 0.5)
        gen.head.bias.normal_(0.0, 1.0)
    return gen.eval()


@pytest.mark.parametrize("phase", ["direct", "integrated"])
@pytest.mark.parametrize("mel", [MelConfig(), MEL], ids=["default", "short-window"])
def test_synthesis_equals_torch_istft_of_the_predicted_spectrum(mel, phase):
    gen = _randomised(VocosGenerator(mel.to_dict(), **SMALL, phase=phase))
    log_mel = torch.randn(2, mel.n_mels, 23) - 3.0
    with torch.no_grad():
        log_mag, phase = gen.spectrum(log_mel)
        wav = gen(log_mel)
    # the reference: torch's complex iSTFT with a periodic Hann of win_length, centred in n_fft
    window = torch.hann_window(mel.win_length, periodic=True, dtype=torch.float64)
    left = (mel.n_fft - mel.win_length) // 2
    window = torch.nn.functional.pad(window, (left, mel.n_fft - mel.win_length - left))
    spec = torch.polar(torch.exp(log_mag.double()), phase.double())
    ref = torch.istft(spec, mel.n_fft, mel.hop_length, mel.n_fft, window, center=True, length=23 * mel.hop_length)
    assert wav.shape == ref.shape
    torch.testing.assert_close(wav.double(), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("phase", ["direct", "integrated"])
@pytest.mark.parametrize("frames", [1, 2, 3, 7, 64, 129])
def test_untrained_model_gives_hop_samples_per_frame(frames, phase):
    gen = VocosGenerator(MEL.to_dict(), **SMALL, phase=phase, magnitude_prior=True).eval()
    with torch.no_grad():
        assert gen(torch.randn(3, MEL.n_mels, frames)).shape == (3, frames * MEL.hop_length)
        assert gen(torch.randn(MEL.n_mels, frames)).shape == (frames * MEL.hop_length,)


def test_paper_size_and_magnitude_clip():
    """Backbone 512 / 1536 / 8 layers: ~13.5 M parameters (the paper's figure)."""
    gen = VocosGenerator(MelConfig().to_dict())
    assert gen.num_parameters() == pytest.approx(13.5e6, rel=0.01)
    small = VocosGenerator(MEL.to_dict(), **SMALL, mag_clip=10.0)
    with torch.no_grad():
        small.head.bias[: small.n_freq].fill_(50.0)
        log_mag, _ = small.spectrum(torch.zeros(1, MEL.n_mels, 4))
    assert float(log_mag.max()) == pytest.approx(math.log(10.0))


def test_magnitude_prior_is_exact_for_a_flat_spectrum():
    """The closed-form spread returns a flat linear spectrum where the filterbank reaches."""
    gen = VocosGenerator(MelConfig().to_dict(), **SMALL, magnitude_prior=True)
    fb = mel_filterbank(MelConfig())
    flat = torch.full((1, fb.shape[1], 3), 0.25)
    prior = torch.exp(gen.log_magnitude_prior(torch.log(fb @ flat)))
    covered = fb.sum(0) > 0
    torch.testing.assert_close(prior[0, covered], flat[0, covered], rtol=1e-4, atol=0)


@pytest.mark.parametrize("freq", [440.0, 1234.5, 3010.0])
def test_integrated_phase_advances_at_a_sinusoids_frequency(freq):
    """From the STFT log-magnitude of a steady sinusoid, the advance per hop at its peak bin is
    the sinusoid's own 2 pi f hop / sr (mod 2 pi), not the bin centre's."""
    cfg = MelConfig()
    gen = VocosGenerator(cfg.to_dict(), **SMALL, phase="integrated")
    t = torch.arange(cfg.sample_rate, dtype=torch.float64) / cfg.sample_rate
    x = torch.sin(2 * math.pi * freq * t).float()
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, cfg.win_length, torch.hann_window(cfg.win_length),
                      center=True, return_complex=True)
    log_mag = torch.log(spec.abs().clamp_min(1e-5))[None, :, 20:-20]
    advance = gen._advance(log_mag)[0, :, 0]
    peak = int(log_mag[0, :, 0].argmax())
    true = 2 * math.pi * freq * cfg.hop_length / cfg.sample_rate
    error = float(anti_wrap(advance[peak] - true))
    centre_error = float(anti_wrap(torch.tensor(2 * math.pi * peak * cfg.hop_length / cfg.n_fft - true)))
    assert error < 0.15 and error < 0.5 * centre_error + 1e-3, (error, centre_error)


def test_integrated_phase_is_summed_in_float64_and_wrapped():
    """The running phase stays in [0, 2 pi) plus the head's offset however long the input, and
    the waveform does not depend on the float32 rounding of its input (a 1e-7 relative
    change); with a float32 running sum, 1500 frames moved the samples by ~1e-3."""
    cfg = MelConfig()
    gen = VocosGenerator(cfg.to_dict(), **SMALL, phase="integrated", magnitude_prior=True).eval()
    torch.manual_seed(0)
    log_mel = torch.randn(1, cfg.n_mels, 1500) - 3.0
    with torch.no_grad():
        _, phase = gen.spectrum(log_mel)
        offset = gen.head(gen.final_norm(torch.zeros(1, 1, 16)))[0, 0, gen.n_freq : 2 * gen.n_freq]
        wav = gen(log_mel)
        moved = gen(log_mel * (1 + 1e-7 * torch.randn(log_mel.shape)))
    assert float(phase.max()) < 2 * math.pi + float(offset.max()) + 1.0
    assert float((wav - moved).abs().max()) < 1e-4 * float(wav.abs().max())


def test_bad_sizes_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="num_layers"):
        VocosGenerator(MEL.to_dict(), dim=8, intermediate_dim=8, num_layers=0)
    with pytest.raises(ConfigError, match="phase"):
        VocosGenerator(MEL.to_dict(), **SMALL, phase="random")
    with pytest.raises(ConfigError, match=r"\(B, 16, T\)"):
        VocosGenerator(MEL.to_dict(), **SMALL)(torch.randn(1, 15, 4))


def test_checkpoint_loads_and_other_mel_config_is_refused_naming_the_field(tmp_path):
    gen = _randomised(VocosGenerator(MEL.to_dict(), **SMALL))
    path = tmp_path / "vocos.pt"
    save_model(gen, path)
    vocoder = load_vocoder(path, MEL)
    log_mel = torch.randn(1, MEL.n_mels, 9)
    with torch.no_grad():
        torch.testing.assert_close(vocoder(log_mel), gen(log_mel))
    other = MelConfig(**{**MEL.to_dict(), "hop_length": 32})
    with pytest.raises(MelConfigMismatch, match="hop_length=64") as err:
        load_vocoder(path, other)
    assert str(path) in str(err.value)


def test_multi_resolution_discriminator_judges_spectrograms():
    mrd = MultiResolutionDiscriminator(((256, 64, 256), (128, 32, 128)), channels=4)
    logits, fmaps = mrd(torch.randn(2, 1024))
    assert len(logits) == 2 and len(fmaps) == 2 and all(len(f) == 6 for f in fmaps)
    # the first sub-discriminator's image has one row per STFT frame (centred: 1024 / 64 + 1)
    assert fmaps[0][0].shape[:3] == (2, 4, 1024 // 64 + 1)
    with pytest.raises(ConfigError, match="resolution"):
        MultiResolutionDiscriminator(((128, 32, 256),))


def test_anti_wrapping_and_phase_loss():
    x = torch.tensor([0.0, 0.5, 2 * math.pi - 0.5, -2 * math.pi + 0.25, 3 * math.pi])
    torch.testing.assert_close(anti_wrap(x), torch.tensor([0.0, 0.5, 0.5, 0.25, math.pi]))
    spec = torch.polar(torch.rand(2, 9, 12) + 0.1, (torch.rand(2, 9, 12) - 0.5) * 2 * math.pi)
    phase = torch.angle(spec)
    assert float(spectrum_phase_loss(phase, spec)) == pytest.approx(0.0, abs=1e-5)
    # a prediction off by whole turns is as good as exact
    shifted = phase + 2 * math.pi * torch.randint(-3, 4, phase.shape)
    assert float(spectrum_phase_loss(shifted, spec)) == pytest.approx(0.0, abs=1e-4)
    # a constant offset d: instantaneous-phase error |d|, group delay and frequency errors 0
    assert float(spectrum_phase_loss(phase + 0.3, spec)) == pytest.approx(0.3, abs=1e-4)
