"""The learned mel -> linear magnitude net: it starts as the NNLS inversion, its STFT
matches librosa's, its loss has the closed form, and a short training lowers its error."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

from voiceconv.audio.mel import LogMel, MelConfig, mel_filterbank
from voiceconv.errors import ConfigError
from voiceconv.vocoders.griffinlim import mel_to_magnitude, spectral_convergence
from voiceconv.vocoders.magnitude import LOG_FLOOR, MagnitudeNet, linear_magnitude, magnitude_loss

torch.set_num_threads(1)

MEL = MelConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=64, n_mels=16, fmax=4000.0)


def _tones(n: int = 4, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Harmonic tones of random pitch in 120-300 Hz (sharp spectral lines the mel smears)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * MEL.sample_rate)) / MEL.sample_rate
    rows = []
    for _ in range(n):
        f0 = rng.uniform(120.0, 300.0)
        x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 12))
        rows.append(0.3 * x / np.abs(x).max())
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def test_untrained_net_is_the_nnls_inversion():
    mel = LogMel(MEL)(_tones(2))
    net = MagnitudeNet(MEL, channels=8, dilations=(1, 2))
    with torch.no_grad():
        got = net(mel)
    want = torch.log(mel_to_magnitude(torch.exp(mel), mel_filterbank(MEL), 100).clamp_min(1e-5))
    torch.testing.assert_close(got, want.clamp(min=LOG_FLOOR), rtol=1e-5, atol=1e-5)
    assert got.shape == (2, MEL.n_fft // 2 + 1, mel.shape[-1])


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_linear_magnitude_is_librosas_stft_magnitude_whatever_the_power(power):
    cfg = MelConfig(**{**MEL.to_dict(), "power": power})
    x = _tones(1)[0]
    want = np.abs(librosa.stft(x.numpy(), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                               win_length=cfg.win_length, center=True, pad_mode="reflect"))
    got = linear_magnitude(x.unsqueeze(0), LogMel(cfg))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_magnitude_loss_closed_form_and_edges():
    ref = torch.rand(2, 129, 20) + 0.1
    # estimate = log(2 * ref): |log 2| per bin, spectral convergence |2 - 1| = 1
    assert float(magnitude_loss(torch.log(2 * ref), ref)) == pytest.approx(math.log(2) + 1.0, rel=1e-5)
    assert float(magnitude_loss(torch.log(ref), ref)) == pytest.approx(0.0, abs=1e-6)
    # edge frames are left out: damage there does not count
    est = torch.log(ref).clone()
    est[..., :2] += 5.0
    est[..., -2:] -= 5.0
    assert float(magnitude_loss(est, ref, edge_frames=2)) == pytest.approx(0.0, abs=1e-6)
    assert float(magnitude_loss(est, ref)) > 1.0


def test_bad_settings_and_shapes_are_config_errors():
    with pytest.raises(ConfigError):
        MagnitudeNet(MEL, channels=0)
    with pytest.raises(ConfigError):
        MagnitudeNet(MEL, dilations=())
    with pytest.raises(ConfigError):
        MagnitudeNet(MEL, channels=4)(torch.zeros(1, MEL.n_mels + 1, 5))


@pytest.mark.slow
def test_training_beats_nnls_on_held_out_tones():
    """A few hundred steps on harmonic tones: the held-out magnitude's spectral
    convergence drops well below the NNLS inversion's (which smears the lines)."""
    torch.manual_seed(0)
    front = LogMel(MEL)
    train, held = _tones(32, seed=1), _tones(4, seed=2)[:, :2000] * 0.8  # pitches not trained on
    net = MagnitudeNet(MEL, channels=32, dilations=(1, 2, 4))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    mel, target = front(train), linear_magnitude(train, front)
    for _ in range(250):
        loss = magnitude_loss(net(mel), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        hmel, htarget = front(held), linear_magnitude(held, front)
        learned = float(spectral_convergence(htarget, torch.exp(net(hmel))).mean())
        nnls = float(spectral_convergence(htarget, torch.exp(net.nnls_log_magnitude(hmel))).mean())
    assert learned < 0.5 * nnls, (learned, nnls)
