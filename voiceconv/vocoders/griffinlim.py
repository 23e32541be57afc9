"""Fast Griffin-Lim phase reconstruction and mel -> linear magnitude inversion.

:class:`GriffinLim` turns log-mel frames (as written by :class:`~voiceconv.audio.mel.LogMel`)
back into a waveform in two steps:

1. **Mel -> linear magnitude** (:func:`mel_to_magnitude`): the mel projection ``M = F S``
   is under-determined (80 rows, 513 columns). A clamped pseudo-inverse ``max(F^+ M, 0)``
   gives negative-then-zeroed bins and smeared energy. We instead solve the
   non-negative least-squares problem ``min_{S >= 0} ||F S - M||^2`` with Lee & Seung's
   multiplicative updates ``S <- S * (F^T M) / (F^T F S)`` which keep ``S`` non-negative
   and decrease the objective monotonically. It is the same objective librosa's
   ``mel_to_stft`` solves with scipy's L-BFGS-B, batched on any torch device.
2. **Phase** (:func:`fast_griffin_lim`): the fast Griffin-Lim algorithm of Perraudin,
   Balazs & Sondergaard (2013), i.e. Griffin-Lim with a momentum (extrapolation) term
   ``alpha``; we use the formulation of librosa/torchaudio (``momentum / (1 + momentum)``
   applied to the previous projection) so results are comparable at the same
   ``momentum``. Deviation, for speed only: the inner STFT/ISTFT pair works on frames
   directly (irfft -> window -> overlap-add via ``fold`` -> divide by the precomputed
   window envelope -> ``unfold`` -> window -> rfft) instead of calling
   ``torch.istft``/``torch.stft`` per iteration, which re-pad, re-check and re-derive the
   window envelope each call. The only difference in maths is at the two signal ends:
   the inner loop keeps the overlap-added edge samples instead of reflect-padding
   the trimmed signal, which does not change the fixed points of the iteration.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.audio.mel import MelConfig, mel_filterbank


def spectral_convergence(target_mag: Tensor, estimate_mag: Tensor) -> Tensor:
    """``||S - S_hat||_F / ||S||_F`` over the last two axes (per item of a batch)."""
    num = torch.linalg.vector_norm(target_mag - estimate_mag, dim=(-2, -1))
    den = torch.linalg.vector_norm(target_mag, dim=(-2, -1)).clamp_min(1e-12)
    return num / den


def mel_to_magnitude(
    mel_power: Tensor, fbank: Tensor, n_iter: int = 100, eps: float = 1e-10,
    start: Tensor | None = None,
) -> Tensor:
    """Non-negative least-squares inversion of a mel projection.

    Args:
        mel_power: (..., n_mels, T) mel magnitudes (linear, not log), ``>= 0``.
        fbank: (n_mels, n_freq) mel filterbank used to make them.
        n_iter: multiplicative-update iterations (the objective falls monotonically).
        start: (..., n_freq, T) positive starting point (None: the lifted clamped
            pseudo-inverse below).
    Returns:
        (..., n_freq, T) non-negative linear magnitudes ``S`` with ``fbank @ S ~= mel``.
    """
    mel_power = mel_power.clamp_min(0)
    # Frequency bins no mel filter touches (above fmax) stay 0 in any solution: solve
    # only over the used ones, and apply F^T (F S) rather than the (n_freq x n_freq)
    # F^T F, which is ~3x fewer multiply-adds for 80 mels and 513 bins.
    used = (fbank > 0).any(dim=0)
    f = fbank[:, used]
    ft = f.transpose(0, 1)
    ftm = ft @ mel_power  # F^T M
    # Start from the clamped pseudo-inverse, lifted so that no bin starts at exactly 0
    # (a multiplicative update can never move a zero).
    if start is None:
        s = (torch.linalg.pinv(f) @ mel_power).clamp_min(0) + 1e-4 * mel_power.mean(dim=(-2, -1), keepdim=True) + eps
    else:
        s = start[..., used, :]  # a copy (mask indexing): the updates below may write into it
    for _ in range(n_iter):  # in place: the same arithmetic, without a temporary per step
        den = torch.matmul(ft, f @ s).add_(eps)
        s.mul_(ftm).div_(den)
    out = mel_power.new_zeros(*mel_power.shape[:-2], fbank.shape[1], mel_power.shape[-1])
    out[..., used, :] = s
    return out


class _FrameOps:
    """Overlap-add and re-framing for ``n_fft = r * hop`` in a (batch, frames, samples)
    layout, so every FFT runs along the contiguous last axis.

    A signal of ``T + r - 1`` hop-sized segments holds ``T`` frames; frame ``t`` is
    segments ``t .. t+r-1``. Overlap-add is ``r`` shifted adds and re-framing is one
    concatenation: no ``fold``/``unfold`` and no per-call window-envelope work.
    """

    def __init__(self, n_fft: int, hop: int, win_length: int, n_frames: int, device: torch.device) -> None:
        if n_fft % hop:
            raise ValueError(f"fast Griffin-Lim needs n_fft ({n_fft}) to be a multiple of hop ({hop})")
        self.n_fft, self.hop, self.r, self.n_frames = n_fft, hop, n_fft // hop, n_frames
        win = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        left = (n_fft - win_length) // 2
        win = F.pad(win, (left, n_fft - win_length - left))
        env = torch.zeros(n_frames + self.r - 1, hop, dtype=torch.float64)
        w2 = (win**2).reshape(self.r, hop)
        for k in range(self.r):
            env[k : k + n_frames] += w2[k]
        self.window = win.float().to(device)
        self.inv_env = (1.0 / env.clamp_min(1e-11)).float().to(device)

    def ola(self, frames: Tensor) -> Tensor:
        """(B, T, n_fft) frames -> window, overlap-add, normalise -> (B, T + r - 1, hop)."""
        b, t = frames.shape[0], self.n_frames
        fr = (frames * self.window).reshape(b, t, self.r, self.hop)
        out = frames.new_zeros(b, t + self.r - 1, self.hop)
        for k in range(self.r):
            out[:, k : k + t] += fr[:, :, k]
        return out * self.inv_env

    def frame(self, segments: Tensor) -> Tensor:
        """(B, T + r - 1, hop) -> (B, T, n_fft) windowed frames."""
        t = self.n_frames
        return torch.cat([segments[:, k : k + t] for k in range(self.r)], dim=-1) * self.window


def _projections(mag: Tensor, angles: Tensor, ops: _FrameOps, n_fft: int, n_iter: int,
                 momentum: float) -> Tensor:
    """``n_iter`` fast Griffin-Lim steps on ``(B, T, F)`` magnitudes from unit ``angles``:
    the final angles (librosa's / torchaudio's formulation of the momentum)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    alpha = momentum / (1.0 + momentum)
    tprev: Tensor | None = None
    for _ in range(int(n_iter)):
        rebuilt = torch.fft.rfft(ops.frame(ops.ola(torch.fft.irfft(mag * angles, n=n_fft, dim=-1))), dim=-1)
        # sgn(z) = z / |z| in one kernel (0 where z == 0, like librosa's tiny-eps division)
        angles = torch.sgn(torch.add(rebuilt, tprev, alpha=-alpha) if tprev is not None else rebuilt)
        tprev = rebuilt
    return angles


def _synthesis(mag: Tensor, angles: Tensor, ops: _FrameOps, n_fft: int, length: int) -> Tensor:
    """The iSTFT of ``(B, T, F)`` ``mag * angles``: ``(B, length)`` samples, the centre padding cut."""
    signal = ops.ola(torch.fft.irfft(mag * angles, n=n_fft, dim=-1)).reshape(mag.shape[0], -1)[:, n_fft // 2 :]
    return signal[:, :length] if signal.shape[-1] >= length else F.pad(signal, (0, length - signal.shape[-1]))


def fast_griffin_lim(
    magnitude: Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    init: str = "random",
    length: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) on (..., n_freq, T) linear magnitudes.

    Frames follow ``torch.stft(center=True)`` conventions, so the result lines up with
    :class:`~voiceconv.audio.mel.LogMel` and librosa. Returns (..., samples).
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    win_length = win_length or n_fft
    shape = magnitude.shape
    mag = magnitude.reshape(-1, shape[-2], shape[-1]).float().transpose(1, 2).contiguous()  # (B, T, F)
    n_frames = mag.shape[1]
    ops = _FrameOps(n_fft, hop_length, win_length, n_frames, mag.device)
    if init == "random":
        phase = torch.rand(mag.shape, device=mag.device, generator=generator) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(mag), phase)
    elif init == "zeros":
        angles = torch.ones_like(mag, dtype=torch.complex64)
    else:
        raise ValueError(f"unknown init {init!r}")
    angles = _projections(mag, angles, ops, n_fft, n_iter, momentum)
    want = length if length is not None else hop_length * (n_frames - 1)
    signal = _synthesis(mag, angles, ops, n_fft, want)
    return signal.reshape(*shape[:-2], signal.shape[-1])


def refined_istft(magnitude: Tensor, phase: Tensor, n_fft: int, hop_length: int,
                  win_length: int | None = None, n_iter: int = 4, momentum: float = 0.99,
                  length: int | None = None) -> Tensor:
    """The iSTFT of ``magnitude`` with ``phase`` after ``n_iter`` fast Griffin-Lim projections.

    ``magnitude`` and ``phase`` are ``(B, n_freq, T)`` in ``torch.stft(center=True)`` frames;
    returns ``(B, length)`` samples (default ``T * hop_length``), which with ``n_iter=0`` are
    ``torch.istft`` of ``magnitude * exp(i phase)``. The iterations move only the phase
    towards a consistent spectrogram, without gradient; the gradient reaches ``magnitude``
    through the final iSTFT. Each iteration mixes a frame with its ``n_fft / hop - 1``
    neighbours on either side, so frame ``t``'s samples depend on frames
    ``t +- (n_iter + 1) * (n_fft / hop - 1)`` only: a bounded neighbourhood, unlike a run to
    convergence.
    """
    mag = magnitude.float().transpose(1, 2)  # (B, T, F): FFTs along the contiguous last axis
    t = mag.shape[1]
    ops = _FrameOps(n_fft, hop_length, win_length or n_fft, t, mag.device)
    with torch.no_grad():
        phase = phase.detach().float().transpose(1, 2)
        angles = torch.complex(torch.cos(phase), torch.sin(phase))  # 3x faster than torch.polar here
        angles = _projections(mag.detach().contiguous(), angles, ops, n_fft, n_iter, momentum)
    return _synthesis(mag, angles, ops, n_fft, t * hop_length if length is None else int(length))


class GriffinLim(nn.Module):
    """Log-mel -> waveform vocoder: NNLS mel inversion + fast Griffin-Lim.

    ``forward(log_mel)`` takes (n_mels, T) or (B, n_mels, T) natural-log mels made with
    ``mel_config`` and returns (samples,) or (B, samples) at ``mel_config.sample_rate``.
    """

    def __init__(
        self,
        mel_config: MelConfig | None = None,
        n_iter: int = 32,
        momentum: float = 0.99,
        nnls_iter: int = 100,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        self.mel_config = mel_config or MelConfig()
        self.n_iter, self.momentum, self.nnls_iter, self.seed = n_iter, momentum, nnls_iter, seed
        self.register_buffer("fbank", mel_filterbank(self.mel_config), persistent=False)

    def magnitude(self, log_mel: Tensor) -> Tensor:
        """Linear STFT magnitude estimate (..., n_freq, T) from log-mels.

        The mel bands hold ``F |S|^power``; NNLS recovers ``|S|^power``, then the root.
        """
        spec_pow = mel_to_magnitude(torch.exp(log_mel.float()), self.fbank, self.nnls_iter)
        power = self.mel_config.power
        return spec_pow if power == 1.0 else spec_pow.pow(1.0 / power)

    @torch.no_grad()
    def invert(self, magnitude: Tensor, length: int | None = None) -> Tensor:
        """Fast Griffin-Lim on linear magnitudes ``(..., n_freq, T)`` -> ``(..., samples)``."""
        cfg = self.mel_config
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=magnitude.device).manual_seed(self.seed)
        return fast_griffin_lim(
            magnitude, cfg.n_fft, cfg.hop_length, cfg.win_length, self.n_iter,
            self.momentum, length=length, generator=gen,
        )

    @torch.no_grad()
    def forward(self, log_mel: Tensor | np.ndarray, length: int | None = None) -> Tensor:
        x = torch.as_tensor(log_mel, device=self.fbank.device)
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
        wav = self.invert(self.magnitude(x), length)
        return wav[0] if squeeze else wav
