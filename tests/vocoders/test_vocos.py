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
    """Larger random head weights than the init, so magnitudes (and learned phases) vary a lot."""
    with torch.no_grad():
        gen.head.weight.normal_(0.0, 0.5)
        gen.head.bias.normal_(0.0, 1.0)
    return gen.eval()


@pytest.mark.parametrize("phase", ["direct", "integrated", "locked", "pghi"])
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


@pytest.mark.parametrize("phase,refine", [("direct", 0), ("integrated", 0), ("locked", 0), ("locked", 3),
                                          ("pghi", 0), ("pghi", 2)])
@pytest.mark.parametrize("frames", [1, 2, 3, 7, 64, 129])
def test_untrained_model_gives_hop_samples_per_frame(frames, phase, refine):
    gen = VocosGenerator(MEL.to_dict(), **SMALL, phase=phase, magnitude_prior=True, prior_nnls_iter=2,
                         refine_iters=refine).eval()
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
    # the NNLS updates keep an exact solution (a fixed point of Lee & Seung's update)
    sharpened = VocosGenerator(MelConfig().to_dict(), **SMALL, magnitude_prior=True, prior_nnls_iter=10)
    prior = torch.exp(sharpened.log_magnitude_prior(torch.log(fb @ flat)))
    torch.testing.assert_close(prior[0, covered], flat[0, covered], rtol=1e-3, atol=0)


def test_nnls_updates_bring_the_prior_closer_to_a_harmonic_spectrum():
    """For a harmonic spectrum (f0 150 Hz, 1/h partials, leaked over neighbouring bins), each
    NNLS update lowers the mel residual ||F S_hat - mel|| and 10 of them lower the spectral
    convergence to the true spectrum below the plain spread's, as GriffinLim's 100-update
    inversion does."""
    from voiceconv.vocoders.griffinlim import GriffinLim, spectral_convergence

    cfg = MelConfig()
    fb = mel_filterbank(cfg).double()
    freqs = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft
    spec = sum(torch.exp(-0.5 * ((freqs - 150.0 * h) / 25.0) ** 2) / h for h in range(1, 40))
    spec = (spec[None, :, None] + 1e-4).expand(1, -1, 4)
    log_mel = torch.log(torch.einsum("mf,bft->bmt", fb, spec)).float()
    residual, sc = [], []
    for k in (0, 1, 3, 10):
        gen = VocosGenerator(cfg.to_dict(), **SMALL, magnitude_prior=True, prior_nnls_iter=k)
        est = torch.exp(gen.log_magnitude_prior(log_mel)).double()
        residual.append(float(torch.linalg.norm(torch.einsum("mf,bft->bmt", fb, est) - torch.exp(log_mel.double()))))
        sc.append(float(spectral_convergence(spec, est).mean()))
    assert residual == sorted(residual, reverse=True) and residual[-1] < 0.3 * residual[0], residual
    nnls_sc = float(spectral_convergence(spec.float(), GriffinLim(cfg).magnitude(log_mel)).mean())
    assert sc[-1] < sc[0] and sc[-1] < nnls_sc + 0.05, (sc, nnls_sc)


@pytest.mark.parametrize("freq", [440.0, 1234.5, 3010.0])
def test_locked_phase_resynthesises_a_sinusoid_from_its_magnitude(freq):
    """The true STFT magnitude of a steady sinusoid with the locked phase (no learned part, no
    projection) synthesises that sinusoid: the same STFT magnitude within a few per cent. The
    bin-centre phase (no slope term, no locking) is far off for a frequency between bins."""
    from voiceconv.vocoders.griffinlim import spectral_convergence

    cfg = MelConfig()
    gen = VocosGenerator(cfg.to_dict(), **SMALL, phase="locked")
    t = torch.arange(cfg.sample_rate, dtype=torch.float64) / cfg.sample_rate
    x = (0.5 * torch.sin(2 * math.pi * freq * t)).float()
    window = torch.hann_window(cfg.win_length)

    def stft(y):
        return torch.stft(y, cfg.n_fft, cfg.hop_length, cfg.win_length, window, center=True, return_complex=True)

    mag = stft(x).abs()[None]
    log_mag = torch.log(mag.clamp_min(1e-5))
    frames = mag.shape[-1]
    inner = slice(8, frames - 8)  # away from the signal's two ends

    def sc_of(phase):
        y = torch.istft(torch.polar(mag, phase), cfg.n_fft, cfg.hop_length, cfg.win_length, window,
                        center=True, length=x.shape[0])
        return float(spectral_convergence(mag[0, :, inner], stft(y[0]).abs()[:, inner]))

    centre = gen.centre_advance.double() * torch.arange(1, frames + 1, dtype=torch.float64)
    assert sc_of(gen.locked_phase(log_mag)) < 0.05
    assert sc_of(centre[None].float()) > 0.3 or freq * cfg.n_fft / cfg.sample_rate % 1 < 0.1


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
    with pytest.raises(ConfigError, match="do not stream"):
        VocosGenerator(MEL.to_dict(), **SMALL, phase="locked", lookahead=2)
    with pytest.raises(ConfigError, match="do not stream"):
        VocosGenerator(MEL.to_dict(), **SMALL, phase="integrated", refine_iters=2, lookahead=2)
    with pytest.raises(ConfigError, match="magnitude_prior"):
        VocosGenerator(MEL.to_dict(), **SMALL, prior_nnls_iter=3)
    with pytest.raises(ConfigError, match="refine_iters"):
        VocosGenerator(MEL.to_dict(), **SMALL, refine_iters=-1)


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


@pytest.mark.parametrize("mel", [MelConfig(), MelConfig(n_fft=1024, win_length=1024, hop_length=160)],
                         ids=["hop256", "hop160"])
def test_summed_phase_is_the_running_sum_of_the_advance(mel):
    """The closed-form bin-centre part and the float64 slope sum equal the plain float64
    running sum of each frame's advance (bin centre + phase-gradient term), minus pi * k."""
    gen = VocosGenerator(mel.to_dict(), **SMALL, phase="summed")
    torch.manual_seed(0)
    log_mag = torch.randn(2, gen.n_freq, 700) * 2.0 - 3.0
    k = torch.arange(gen.n_freq, dtype=torch.float64)[:, None]
    slope = torch.zeros_like(log_mag, dtype=torch.float64)
    slope[:, 1:-1] = 0.5 * (log_mag[:, 2:] - log_mag[:, :-2]).double()
    advance = 2 * math.pi * k * mel.hop_length / mel.n_fft + mel.hop_length * mel.n_fft / (0.25645 * mel.win_length**2) * slope
    ref = torch.cumsum(advance, dim=-1) - math.pi * k
    ours = gen.summed_phase(log_mag).double()
    assert float(anti_wrap(ours - ref).max()) < 1e-4


def _stft_mag_sc(cfg: MelConfig):
    """(stft, sc_of): the front end's STFT, and the spectral convergence (away from the ends)
    of the iSTFT of ``mag`` with a phase, against ``mag``."""
    from voiceconv.vocoders.griffinlim import spectral_convergence

    window = torch.hann_window(cfg.win_length)

    def stft(y):
        return torch.stft(y, cfg.n_fft, cfg.hop_length, cfg.win_length, window, center=True, return_complex=True)

    def sc_of(mag, phase, length):
        y = torch.istft(torch.polar(mag, phase), cfg.n_fft, cfg.hop_length, cfg.win_length, window,
                        center=True, length=length)
        inner = slice(8, mag.shape[-1] - 8)
        return float(spectral_convergence(mag[0, :, inner], stft(y[0]).abs()[:, inner]))

    return stft, sc_of


def test_pghi_phase_follows_gliding_partials():
    """Chirps, a vibrato and a gliding harmonic tone, resynthesised from their true STFT
    magnitude with the pghi phase (no projection): within a few per cent of that magnitude.
    The locked phase, whose peaks take each bin's own running sum, loses a partial that moves
    across bins; on a steady sinusoid the two agree."""
    cfg = MelConfig()
    pghi = VocosGenerator(cfg.to_dict(), **SMALL, phase="pghi")
    locked = VocosGenerator(cfg.to_dict(), **SMALL, phase="locked")
    stft, sc_of = _stft_mag_sc(cfg)
    t = torch.arange(cfg.sample_rate, dtype=torch.float64) / cfg.sample_rate
    signals = {
        "chirp 200-1200 Hz": torch.sin(2 * math.pi * (200 * t + 500 * t**2)),
        "chirp 1-3 kHz": torch.sin(2 * math.pi * (1000 * t + 1000 * t**2)),
        "vibrato 500 +- 30 Hz at 5 Hz": torch.sin(2 * math.pi * 500 * t - 30 / 5 * torch.cos(2 * math.pi * 5 * t)),
        "harmonics gliding from 150 Hz": sum(torch.sin(2 * math.pi * k * (150 * t + 25 * t**2)) / k
                                             for k in range(1, 12)) / 3,
        "steady 1234.5 Hz": torch.sin(2 * math.pi * 1234.5 * t),
    }
    for name, x in signals.items():
        mag = stft((0.5 * x).float()).abs()[None]
        log_mag = torch.log(mag.clamp_min(1e-5))
        ours = sc_of(mag, pghi.pghi_phase(log_mag), x.shape[0])
        theirs = sc_of(mag, locked.locked_phase(log_mag), x.shape[0])
        assert ours < 0.05, (name, ours)
        if name.startswith(("chirp", "vibrato")):
            assert theirs > 0.25, (name, theirs)


def _pghi_reference(log_mag: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """The pghi phase written out with Python loops in float64 over one ``(F, T)`` log-magnitude:
    climb to the louder neighbour (up to 8 bins), the peak carries the previous frame's phase
    on by the trapezoid of its instantaneous frequency, the other bins add the trapezoid
    integral of the group-delay derivative from their peak, and sit in antiphase."""
    lm = log_mag.double()
    n_freq, frames = lm.shape
    gamma = 0.25645 * cfg.win_length**2
    a, m = cfg.hop_length, cfg.n_fft

    def slope_f(t, k):
        return 0.5 * float(lm[k + 1, t] - lm[k - 1, t]) if 0 < k < n_freq - 1 else 0.0

    def inst_freq(t, k):  # phase advance per hop
        return 2 * math.pi * k * a / m + a * m / gamma * slope_f(t, k)

    def dphi(t, k):  # the phase's derivative along frequency
        return -gamma / (a * m) * (0.5 * float(lm[k, t + 1] - lm[k, t - 1]) if 0 < t < frames - 1 else 0.0)

    def peak_of(t, k):
        for _ in range(8):
            left = float(lm[k - 1, t]) if k > 0 else -math.inf
            right = float(lm[k + 1, t]) if k < n_freq - 1 else -math.inf
            here = float(lm[k, t])
            if right > here and right >= left:
                k += 1
            elif left > here and left > right:
                k -= 1
            else:
                break
        return k

    phase = torch.zeros(n_freq, frames, dtype=torch.float64)
    prev = [-math.pi * k for k in range(n_freq)]
    for t in range(frames):
        across = [0.0]
        for k in range(1, n_freq):
            across.append(across[-1] + 0.5 * (dphi(t, k - 1) + dphi(t, k)))
        cur = []
        for k in range(n_freq):
            p = peak_of(t, k)
            carried = prev[p] + (0.5 * (inst_freq(t - 1, p) + inst_freq(t, p)) if t else 0.0)
            cur.append(carried + across[k] - across[p] - math.pi * (k - p))
        phase[:, t] = torch.tensor(cur, dtype=torch.float64)
        prev = cur
    return phase


def test_pghi_phase_equals_its_definition():
    """The vectorised frames (gathers, closed-form wrapping, one gather and add per frame)
    equal the definition written out with loops in float64, on a random log-magnitude,
    batched. The steps are float32: on this rough input (slopes of 10 nats per bin or frame)
    they keep 1e-4 rad over 40 frames."""
    gen = VocosGenerator(MEL.to_dict(), **SMALL, phase="pghi")
    torch.manual_seed(0)
    log_mag = torch.randn(2, gen.n_freq, 40).cumsum(1) * 0.5 - 3.0  # hills several bins wide
    ours = gen.pghi_phase(log_mag).double()
    for i in range(2):
        ref = _pghi_reference(log_mag[i], MEL)
        assert float(anti_wrap(ours[i] - ref).max()) < 5e-4
