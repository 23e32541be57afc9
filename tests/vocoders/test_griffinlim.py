"""Griffin-Lim and mel inversion against independent references (torch.istft, librosa)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from voiceconv.audio.mel import MelConfig, log_mel, mel_filterbank
from voiceconv.vocoders.griffinlim import (
    GriffinLim,
    _FrameOps,
    fast_griffin_lim,
    mel_to_magnitude,
    spectral_convergence,
)

SR, N_FFT, HOP = 22050, 1024, 256


def harmonic(seconds: float = 1.0, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like test signal: gliding harmonics with an amplitude envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    freq = f0 * (1 + 0.2 * np.sin(2 * np.pi * 1.3 * t))
    ph = 2 * np.pi * np.cumsum(freq) / SR
    y = sum(np.sin(k * ph + rng.uniform(0, 6.28)) / k for k in range(1, 15))
    y *= 0.3 + 0.7 * np.sin(np.pi * t / seconds) ** 2
    return (0.4 * y / np.abs(y).max()).astype(np.float32)


def stft_mag(y: np.ndarray | torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y, dtype=np.float32))
    return torch.stft(y, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True,
                      pad_mode="reflect", return_complex=True).abs()


def test_frame_ops_invert_a_known_stft_like_torch_istft():
    """With the true phase, one overlap-add must give back the signal torch.istft gives."""
    y = torch.from_numpy(harmonic(0.5))
    spec = torch.stft(y, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True,
                      pad_mode="reflect", return_complex=True)
    ref = torch.istft(spec, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True)
    ops = _FrameOps(N_FFT, HOP, N_FFT, spec.shape[-1], torch.device("cpu"))
    frames = torch.fft.irfft(spec.T.unsqueeze(0), n=N_FFT, dim=-1)
    ours = ops.ola(frames).reshape(-1)[N_FFT // 2 :][: ref.shape[-1]]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref, y[: ref.shape[-1]], atol=1e-5, rtol=0)


def test_griffin_lim_reaches_a_spectral_convergence_bound():
    y = harmonic(1.0)
    mag = stft_mag(y)
    gen = torch.Generator().manual_seed(0)
    one = fast_griffin_lim(mag, N_FFT, HOP, n_iter=1, generator=gen)
    gen = torch.Generator().manual_seed(0)
    many = fast_griffin_lim(mag, N_FFT, HOP, n_iter=100, generator=gen)
    sc_one = float(spectral_convergence(mag, stft_mag(one)))
    sc_many = float(spectral_convergence(mag, stft_mag(many)))
    assert sc_many < 0.15, sc_many
    assert sc_many < 0.5 * sc_one, (sc_one, sc_many)
    assert many.shape[-1] == HOP * (mag.shape[-1] - 1)


@pytest.mark.slow
def test_griffin_lim_matches_librosa_quality_at_equal_iterations():
    mags = [stft_mag(harmonic(1.0, f0, seed)) for seed, f0 in enumerate((110.0, 160.0, 220.0))]
    ours, ref = [], []
    for i, m in enumerate(mags):
        g = torch.Generator().manual_seed(i)
        ours.append(float(spectral_convergence(m, stft_mag(fast_griffin_lim(m, N_FFT, HOP, n_iter=32, generator=g)))))
        y = librosa.griffinlim(m.numpy(), n_iter=32, hop_length=HOP, n_fft=N_FFT, momentum=0.99, random_state=i)
        est = stft_mag(y)
        t = min(est.shape[-1], m.shape[-1])
        ref.append(float(spectral_convergence(m[:, :t], est[:, :t])))
    # Same algorithm, different random phases: equal within seed spread (25 %).
    assert np.median(ours) <= 1.25 * np.median(ref), (ours, ref)


def test_batched_equals_single_items_with_deterministic_init():
    mags = torch.stack([stft_mag(harmonic(0.5, 120.0 + 30 * i, i)) for i in range(3)])
    batch = fast_griffin_lim(mags, N_FFT, HOP, n_iter=8, init="zeros")
    for i in range(3):
        single = fast_griffin_lim(mags[i], N_FFT, HOP, n_iter=8, init="zeros")
        torch.testing.assert_close(batch[i], single, atol=1e-5, rtol=1e-5)


def test_nnls_mel_inversion_beats_clamped_pseudo_inverse_and_agrees_with_librosa():
    cfg = MelConfig()
    fb = mel_filterbank(cfg).double()
    mag = stft_mag(harmonic(0.5)).double()
    mel = fb @ mag
    ours = mel_to_magnitude(mel, fb, n_iter=300)
    assert float(ours.min()) >= 0.0
    pinv = (torch.linalg.pinv(fb) @ mel).clamp_min(0)
    err_ours = float(torch.linalg.norm(fb @ ours - mel) / torch.linalg.norm(mel))
    err_pinv = float(torch.linalg.norm(fb @ pinv - mel) / torch.linalg.norm(mel))
    assert err_ours < 0.5 * err_pinv, (err_ours, err_pinv)
    # librosa solves the same NNLS problem (L-BFGS-B); the mel-domain fits must be close.
    lib = librosa.feature.inverse.mel_to_stft(mel.numpy(), sr=SR, n_fft=N_FFT, power=1.0, fmax=cfg.fmax, norm="slaney")
    err_lib = float(np.linalg.norm(fb.numpy() @ lib - mel.numpy()) / np.linalg.norm(mel.numpy()))
    assert err_ours <= max(2.0 * err_lib, 1e-3), (err_ours, err_lib)


@pytest.mark.slow
def test_vocoder_from_log_mel_round_trip():
    cfg = MelConfig()
    y = harmonic(1.0)
    lm = log_mel(y, cfg)
    voc = GriffinLim(cfg, n_iter=48)
    wav = voc(torch.from_numpy(lm))
    assert wav.ndim == 1 and abs(len(wav) - len(y)) <= HOP
    back = log_mel(wav.numpy(), cfg)
    t = min(back.shape[-1], lm.shape[-1])
    # log-mel of the resynthesis is close to the input log-mel where there is energy
    mask = lm[:, :t] > np.log(1e-2)
    assert np.mean(np.abs(back[:, :t][mask] - lm[:, :t][mask])) < 0.35


def test_refined_istft_without_iterations_is_torch_istft_and_keeps_a_consistent_spectrum():
    """0 projections: torch.istft of the spectrum. The STFT of a real signal is a fixed point of
    the projections: 8 of them from its true phase give the signal back."""
    from voiceconv.vocoders.griffinlim import refined_istft

    y = torch.from_numpy(harmonic(0.5))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(y, N_FFT, HOP, N_FFT, window, center=True, pad_mode="reflect", return_complex=True)
    frames = spec.shape[-1]
    rand = torch.polar(spec.abs(), torch.rand(spec.shape, generator=torch.Generator().manual_seed(0)) * 6.283)
    ref = torch.istft(rand, N_FFT, HOP, N_FFT, window, center=True, length=frames * HOP)
    ours = refined_istft(rand.abs()[None], torch.angle(rand)[None], N_FFT, HOP, n_iter=0)[0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    kept = refined_istft(spec.abs()[None], torch.angle(spec)[None], N_FFT, HOP, n_iter=8)[0]
    torch.testing.assert_close(kept[: y.shape[0]], y, atol=2e-4, rtol=0)


def test_refined_istft_approaches_the_target_magnitude_and_trains_only_the_magnitude():
    """From a random phase, more projections give a waveform whose STFT magnitude is closer to
    the target; the gradient reaches the magnitude (the phase search runs without one)."""
    from voiceconv.vocoders.griffinlim import refined_istft

    y = harmonic(1.0)
    mag = stft_mag(y)[None]
    phase = torch.rand(mag.shape, generator=torch.Generator().manual_seed(1)) * 6.283
    scs = [float(spectral_convergence(mag[0], stft_mag(refined_istft(mag, phase, N_FFT, HOP, n_iter=k)[0])[:, : mag.shape[-1]]))
           for k in (0, 2, 8)]
    assert scs[0] > 0.5 and scs[1] < 0.8 * scs[0] and scs[2] < 0.6 * scs[1], scs
    leaf = mag.clone().requires_grad_(True)
    wav = refined_istft(leaf, phase, N_FFT, HOP, n_iter=2)
    wav.square().sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0
    torch.testing.assert_close(wav.detach(), refined_istft(mag, phase, N_FFT, HOP, n_iter=2))
