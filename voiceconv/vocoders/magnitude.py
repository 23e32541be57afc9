"""A learned mel -> linear-magnitude inversion (the magnitude half of a Griffin-Lim vocoder).

:class:`MagnitudeNet` maps natural-log mels ``(B, n_mels, T)`` to natural-log linear STFT
magnitudes ``(B, n_fft // 2 + 1, T)`` of the same :class:`~voiceconv.audio.mel.MelConfig`.
It starts from the non-negative least-squares inversion that
:class:`~voiceconv.vocoders.griffinlim.GriffinLim` uses (its :meth:`magnitude`, the same
code) and adds a residual predicted
by a stack of dilated 1-D convolutions over frames, whose last layer is zero-initialised:
an untrained net IS the NNLS inversion. Why: the 80 mel bands lose the harmonic fine
structure above ~1 kHz, which NNLS can only smear; a network trained on the speakers'
audio restores much of it (on the flite corpus the held-out spectral convergence of the
magnitude falls from 0.196 to about 0.12 within minutes of CPU training), and this
magnitude error, not the phase, dominates Griffin-Lim's error.

This is the idea of Tacotron's post-net (Wang et al. 2017: a network predicts the linear
spectrogram from the mel, then Griffin-Lim), written as a residual on NNLS.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.errors import ConfigError
from voiceconv.vocoders.griffinlim import GriffinLim, spectral_convergence

#: log-magnitude floor (natural log of 1e-5, the front end's log floor)
LOG_FLOOR = math.log(1e-5)
#: log-magnitude ceiling: a Hann-windowed frame of samples in [-1, 1] stays below win_length / 2
LOG_CEIL = math.log(1e4)


class MagnitudeNet(nn.Module):
    """Log-mel -> log linear magnitude: NNLS inversion + a learned residual.

    Args:
        mel_config: the features it inverts (filterbank, FFT size, power).
        channels: width of the residual stack.
        dilations: one residual block ``x + conv_d(lrelu(x))`` per entry (kernel 5).
        nnls_iter: multiplicative NNLS updates of the starting point.
    """

    def __init__(self, mel_config: MelConfig, channels: int = 256,
                 dilations: tuple[int, ...] = (1, 2, 4, 1, 2, 4), nnls_iter: int = 100) -> None:
        super().__init__()
        if channels < 1 or not dilations or any(int(d) < 1 for d in dilations):
            raise ConfigError(f"MagnitudeNet: bad channels {channels} or dilations {dilations!r}")
        self.mel_config = mel_config
        self.n_freq = mel_config.n_fft // 2 + 1
        self.nnls = GriffinLim(mel_config, nnls_iter=int(nnls_iter))  # for its NNLS inversion only
        self.conv_in = nn.Conv1d(mel_config.n_mels + self.n_freq, channels, 5, padding=2)
        self.blocks = nn.ModuleList(
            nn.Conv1d(channels, channels, 5, padding=2 * int(d), dilation=int(d)) for d in dilations
        )
        self.conv_out = nn.Conv1d(channels, self.n_freq, 5, padding=2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @torch.no_grad()
    def nnls_log_magnitude(self, log_mel: Tensor) -> Tensor:
        """The starting point: log of the NNLS inversion (floored at 1e-5)."""
        return torch.log(self.nnls.magnitude(log_mel).clamp_min(1e-5))

    def forward(self, log_mel: Tensor) -> Tensor:
        """``(B, n_freq, T)`` natural-log magnitudes for ``(B, n_mels, T)`` log-mels."""
        if log_mel.dim() != 3 or log_mel.shape[1] != self.mel_config.n_mels:
            raise ConfigError(f"MagnitudeNet: expected (B, {self.mel_config.n_mels}, T), got {tuple(log_mel.shape)}")
        start = self.nnls_log_magnitude(log_mel)
        h = self.conv_in(torch.cat([log_mel.to(start.dtype), start], dim=1))
        for conv in self.blocks:
            h = h + conv(F.leaky_relu(h, 0.1))
        return (start + self.conv_out(F.leaky_relu(h, 0.1))).clamp(LOG_FLOOR, LOG_CEIL)


def linear_magnitude(wav: Tensor, front: LogMel) -> Tensor:
    """Linear ``|STFT|`` ``(B, n_freq, frames)`` of ``(B, samples)``, what :class:`MagnitudeNet`
    predicts: the front end's STFT (:meth:`LogMel.magnitude`, all bins) with its ``power`` undone."""
    mag = front.magnitude(wav.float(), all_bins=True)
    power = front.mel_config.power
    return mag if power == 1.0 else mag.pow(1.0 / power)


def magnitude_loss(log_mag: Tensor, target_mag: Tensor, edge_frames: int = 0) -> Tensor:
    """Mean ``|log S_hat - log S|`` (both floored at 1e-5) + spectral convergence.

    ``edge_frames`` frames at both ends are left out (a segment's own STFT differs there
    from the whole utterance's, which the mels come from).
    """
    frames = min(log_mag.shape[-1], target_mag.shape[-1])
    lo, hi = edge_frames, frames - edge_frames
    if hi <= lo:
        lo, hi = 0, frames
    est, ref = log_mag[..., lo:hi].float(), target_mag[..., lo:hi].float()
    l1 = F.l1_loss(est, torch.log(ref.clamp_min(1e-5)))
    sc = spectral_convergence(ref, torch.exp(est)).mean()
    return l1 + sc


__all__ = ["LOG_CEIL", "LOG_FLOOR", "MagnitudeNet", "linear_magnitude", "magnitude_loss"]
