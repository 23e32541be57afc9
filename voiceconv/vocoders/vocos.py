"""Vocos (Siuzdak 2023): a frame-rate ConvNeXt that predicts the STFT, inverted by one iSTFT.

:class:`VocosGenerator` maps natural-log mels ``(B, n_mels, T)`` (THE front end's,
:class:`~voiceconv.audio.mel.MelConfig`) to waveforms ``(B, T * hop_length)``:

1. a ConvNeXt backbone at frame rate (embedding conv, ``num_layers`` ConvNeXt blocks with
   depthwise kernel 7, LayerNorm, GELU MLP and layer scale, final LayerNorm);
2. a linear head to ``n_fft + 2`` channels: a log-magnitude and a phase angle per bin;
   the magnitude is ``exp`` clipped at ``mag_clip`` (paper: 1e2), the spectrum's real and
   imaginary parts are ``mag * cos(phase)`` and ``mag * sin(phase)``;
3. :class:`InverseSTFT`: the inverse real DFT as two matrix products with cosine and sine
   bases, the front end's window, overlap-add and the window-square normalisation, the
   centre padding trimmed: ``torch.istft`` of that spectrum with the front end's window,
   hop and centring, but without complex tensors in the graph (exports to anything that
   has matmul and fold).

Each output frame depends on a bounded neighbourhood of input frames (receptive field
``6 * (num_layers + 1) + 1`` frames), which is what streaming needs; no iteration unless
``refine_iters`` is set (below). The phases that carry a running state (``integrated``,
``summed``, ``locked``, ``pghi``) also depend on every earlier frame through it, as a
stream's one piece of state.

Deviations from the paper and the reference implementation, and why:

* ``phase="integrated"`` (default ``"direct"``, the paper's; ``vocos_small_integrated`` and
  ``vocos_stream_small`` use it): the phase is ``psi + cumsum_t(advance)``, where
  ``advance`` is each bin's phase advance per hop at its centre frequency, plus the phase-gradient term of
  Prusa, Balazs & Sondergaard (2017, "a noniterative method for reconstruction of phase
  from STFT magnitude": instantaneous-frequency deviation = hop * n_fft / gamma times the
  frequency slope of the log-magnitude, gamma = 0.25645 win_length^2 for a Hann window;
  measured on this corpus the least-squares factor is 0.97 of that), plus a learned
  residual; ``psi`` is learned and starts with adjacent bins in antiphase. Why: a
  convolutional backbone is translation-equivariant, so from a stationary stretch of mel
  frames the direct head can only output the same angle in every frame, and a partial
  whose frequency is not a multiple of ``sample_rate / hop`` then cannot be synthesised;
  the running sum of an instantaneous frequency (a local property of the magnitude, which
  the backbone can predict) can. The running sum carries an arbitrary, inaudible phase
  offset forward; every other quantity still depends on a bounded neighbourhood, and a
  stream keeps the running phase as its only state. Training drops the absolute-phase
  term of the phase loss for it (a segment starts the sum at an arbitrary offset). The
  sum is taken in float64 and wrapped to [0, 2 pi) before float32: it grows by up to
  ``pi * hop / 2`` rad per frame (1e5 rad within 4 s at hop 256), where float32 keeps only
  0.01 to 0.1 rad, so a float32 sum made the waveform depend on the rounding of its
  input (a 1e-7 relative change of the mels moved the samples by 1.7e-4 over 341
  frames; 2.6e-6 with the float64 sum), and no second implementation (ONNX) could match it.
  Limitation: conversion vocodes inputs longer than 2048 frames in windows
  (:func:`~voiceconv.conversion.chunking.vocode_chunked`), and each window starts its own
  running sum, so the 2-hop cross-fades there join pieces with different phase offsets.

* ``phase="summed"``, ``"locked"`` and ``"pghi"`` (``vocos_small``): no learned phase at all.
  ``summed`` is the integrated head's starting point without its learned parts (each bin's
  advance summed over frames, adjacent bins in antiphase); ``locked`` adds Laroche & Dolson's
  identity phase locking: in each frame every bin takes the running phase of the magnitude
  peak whose hill it lies on and sits in antiphase to its neighbours from there, so the bins of one
  partial stay coherent (from the true magnitude of a steady sinusoid it resynthesises the
  sinusoid to 1.5 % spectral convergence, where the plain sum drifts to 12-54 %). Why no
  learned phase: on the CPU budget the learned heads stayed far from a consistent phase
  (the integrated head's output had twice the spectral convergence of its own magnitude
  after 15 CPU-minutes, the direct head three times), while the magnitude learns fast.
  ``pghi`` (``vocos_small``) fixes what ``locked`` gets wrong: there a peak takes its own
  bin's running sum, so a partial that moves across bins (a pitch glide) jumps between
  unrelated sums. In ``pghi`` a peak carries on the phase its bin had in the previous,
  already locked frame, as real-time phase-gradient heap integration does (Prusa &
  Holighaus 2017), and the bins of its hill add the frequency integral of the group-delay
  term. Deviation from that paper: the heap (bins taken loudest first, each from its
  already-done neighbour in time or frequency) becomes each frame's hills, which
  vectorises to a handful of gathers and one gather per frame; where a frame has no hills
  (a click's flat spectrum) each bin carries on its own phase, so transients stay rough
  (a click train resynthesises to 0.45 spectral convergence, against 0.54 for ``locked``).
  From the true magnitude, chirps, vibrato and gliding harmonics come back within 1-2 %
  spectral convergence, where ``locked`` is at 12-44 % (test); on the flite corpus's
  held-out files, from the true magnitude with no projection, 0.058 against ``locked``'s 0.20.
  Like the integrated head's running sum, the carried phase starts afresh in each window
  when conversion vocodes inputs longer than 2048 frames piece by piece, so the 2-hop
  cross-fades join pieces whose partials have different phase offsets (as with Griffin-Lim).
* ``refine_iters`` (default 0, the paper's single iSTFT; 2 in ``vocos_small``): that many
  fast Griffin-Lim projections (Perraudin et al. 2013, momentum ``refine_momentum``) move
  the phase towards a spectrogram consistent with the predicted magnitude before the iSTFT
  (:func:`~voiceconv.vocoders.griffinlim.refined_istft`, no gradient through them; the
  magnitude's gradient flows through the final iSTFT). Each projection mixes a frame with
  its three neighbours on either side (``3 * (refine_iters + 1)`` frames each way); a
  stream would have to hold that many frames back, so such a generator refuses
  ``lookahead`` (``vocos_stream_small`` keeps the integrated head), and the ONNX export
  refuses it (complex FFTs in the loop). Measured on the flite corpus's held-out files
  (``recipes/vocoder_hifigan/probes/refine_sweep.py``, float output): with ``vocos_small``'s
  trained magnitude (spectral convergence 0.093 on its own) and the ``pghi`` phase, the
  waveform scores 0.106 with no projection, 0.092 with 2, 0.091 with 4, 0.088 with 16;
  with the ``locked`` phase (an earlier ``vocos_small``, magnitude 0.092 alone) it scored
  0.22 with none, 0.15 with 4, 0.11 with 16 and 0.097 with 32.
* ``prior_nnls_iter`` (``vocos_small``: 10): Lee & Seung's multiplicative NNLS updates
  (:func:`~voiceconv.vocoders.griffinlim.mel_to_magnitude`'s objective) started from the
  closed-form spread below sharpen the prior: held-out spectral convergence of the prior
  0.373 (spread) -> 0.203 (10 updates), GriffinLim's 100-update inversion 0.196, at an
  eighth of its cost.
* ``magnitude_prior`` (default off; on in ``vocos_small``): the head's log-magnitude is a
  residual on a fixed closed-form spread of the mel back to the linear bins (each mel
  band's mean amplitude, spread over its bins with the filterbank's weights:
  exact for a flat spectrum, positive, two matrix products). A short CPU run then starts
  from a rough envelope instead of from silence and spends its steps on the fine
  structure and the phase.
* ``mag_clip`` 1e3 instead of the paper's 1e2: our STFT is unnormalised (a Hann window of
  1024 sums to 512) and the audio peak-normalised to 0.95, so real magnitudes reach ~205 on
  the flite corpus; a clip at 1e2 would flatten the loudest harmonics.
* The mel input is THE front end's (natural log, floor 1e-5, Slaney 80 bands up to 8 kHz),
  not the reference's own 100-band feature extractor.
* The synthesis is our real-arithmetic iSTFT (identical numbers to ``torch.istft`` with
  ``center=True``; the reference uses its own "same"-padding iSTFT).
* Training losses (``voiceconv.training.vocoder_trainer``): besides the paper's mel L1
  (45), MPD + multi-resolution discriminator and feature matching, a CPU run may add a
  loss on the predicted spectrum itself (:func:`spectrum_phase_loss`, and the magnitude
  net's :func:`~voiceconv.vocoders.magnitude.magnitude_loss`); see the trainer's docstring.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.audio.mel import MelConfig, mel_filterbank
from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.streaming import make_causal, shift_for_lookahead, streaming
from voiceconv.vocoders.griffinlim import mel_to_magnitude, refined_istft

#: how the head makes the phase: ``direct`` (the paper: one angle per bin and frame),
#: ``integrated`` (an angle plus the running sum of a predicted advance per frame),
#: ``summed`` (no learned phase: the phase-gradient running sum), ``locked`` (that sum
#: locked to each frame's peaks) or ``pghi`` (each frame's peaks carried on from the
#: previous frame's, the other bins integrated along frequency from their peak)
PHASE_MODES = ("direct", "integrated", "summed", "locked", "pghi")
#: the modes whose phase has no parameters (the head predicts only the log-magnitude)
PARAMETER_FREE_PHASES = ("summed", "locked", "pghi")
#: natural log of the front end's floor (1e-5), the prior's floor
_LOG_FLOOR = math.log(1e-5)


def front_end_window(cfg: MelConfig, dtype: torch.dtype = torch.float64) -> Tensor:
    """The front end's analysis window: periodic Hann of ``win_length`` centred in ``n_fft`` zeros."""
    hann = torch.hann_window(cfg.win_length, periodic=True, dtype=dtype)
    left = (cfg.n_fft - cfg.win_length) // 2
    return F.pad(hann, (left, cfg.n_fft - cfg.win_length - left))


def central_difference(x: Tensor, dim: int) -> Tensor:
    """``x[i + 1] - x[i - 1]`` along ``dim``, zero at both ends (the slope of a log-magnitude
    along frequency or time, times 2)."""
    n = x.shape[dim]
    if n <= 2:
        return torch.zeros_like(x)
    edge = torch.zeros_like(x.narrow(dim, 0, 1))
    # out of place (torch.cat, no slice assignment): the ONNX exporter traces it faithfully
    return torch.cat([edge, x.narrow(dim, 2, n - 2) - x.narrow(dim, 0, n - 2), edge], dim=dim)


class InverseSTFT(nn.Module):
    """``(real, imag) (B, n_fft // 2 + 1, T) -> (B, T * hop)``: ``torch.istft`` in real arithmetic.

    Same result as ``torch.istft(torch.complex(real, imag), n_fft, hop, window=w,
    center=True, length=T * hop)`` with ``w`` the front end's window: the imaginary parts of
    the DC and Nyquist bins are ignored (as ``irfft`` does), frames are windowed, overlap-added
    and divided by the overlap-added squared window, and ``n_fft // 2`` samples of centre
    padding are cut from the start.
    """

    basis: Tensor
    window_sq: Tensor

    def __init__(self, mel_config: MelConfig) -> None:
        super().__init__()
        n_fft, self.hop = mel_config.n_fft, mel_config.hop_length
        self.n_fft = n_fft
        n_freq = n_fft // 2 + 1
        window = front_end_window(mel_config)
        k = torch.arange(n_freq, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        angle = 2.0 * math.pi * k * n / n_fft
        scale = torch.full((n_freq, 1), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        if n_fft % 2 == 0:
            scale[-1] = 1.0
        # x[n] = w[n] / N * sum_k c_k (Re X_k cos(2 pi k n / N) - Im X_k sin(2 pi k n / N))
        cos_basis = scale * torch.cos(angle) * window / n_fft
        sin_basis = -scale * torch.sin(angle) * window / n_fft
        # one (n_fft, 2 * n_freq) matrix: frames = basis @ [real; imag]
        self.register_buffer("basis", torch.cat([cos_basis, sin_basis]).T.contiguous().float(), persistent=False)
        self.register_buffer("window_sq", (window**2).float(), persistent=False)

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """``(B, n_fft, T) -> (B, (T - 1) * hop + n_fft)``."""
        b, n, t = frames.shape
        if n % self.hop:  # general case
            out = F.fold(frames, output_size=(1, (t - 1) * self.hop + n),
                         kernel_size=(1, n), stride=(1, self.hop))
            return out[:, 0, 0]
        # hop divides n_fft: n_fft / hop shifted slice-adds, far cheaper than fold's copies
        k = n // self.hop
        out = frames.new_zeros(b, t + k - 1, self.hop)
        for j in range(k):
            out[:, j : j + t] += frames[:, j * self.hop : (j + 1) * self.hop].transpose(1, 2)
        return out.reshape(b, -1)

    def forward(self, real: Tensor, imag: Tensor) -> Tensor:
        b, _, t = real.shape
        frames = torch.matmul(self.basis.to(real.dtype), torch.cat([real, imag], dim=1))
        wav = self._overlap_add(frames)
        env = self._overlap_add(self.window_sq.to(real.dtype)[None, :, None].expand(1, -1, t))
        wav = wav / env.clamp_min(1e-11)
        start, length = self.n_fft // 2, t * self.hop
        wav = wav[:, start : start + length]
        if wav.shape[-1] < length:
            wav = F.pad(wav, (0, length - wav.shape[-1]))
        return wav


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block over frames: depthwise conv (k 7), LayerNorm, Linear-GELU-Linear, layer scale."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class VocosGenerator(SavableModule):
    """Vocos: ``forward(log_mel (B, n_mels, T)) -> wav (B, T * hop_length)``.

    Args:
        mel_config: :meth:`MelConfig.to_dict` of the features it vocodes (input bands, and
            the iSTFT's ``n_fft``, ``hop_length`` and window).
        dim, intermediate_dim, num_layers: the backbone (paper: 512, 1536, 8).
        mag_clip: ceiling of the predicted linear magnitude (paper: 1e2; here 1e3, see the
            module docstring).
        magnitude_prior: predict the log-magnitude as a residual on the closed-form mel
            spread (a deviation, see the module docstring).
        prior_nnls_iter: multiplicative NNLS updates that sharpen that spread towards the
            mel's non-negative least-squares inversion (0: the spread alone).
        phase: ``direct`` (the paper), ``integrated``, ``summed`` or ``locked`` (module docstring).
        refine_iters: fast Griffin-Lim projections of the head's phase before the iSTFT
            (0: the paper's single iSTFT; a deviation, see the module docstring).
        lookahead: frames of future context of a causal (streaming) backbone; None: not causal.

    A 2-D input ``(n_mels, T)`` gives a 1-D output ``(T * hop_length,)``.
    """

    def __init__(self, mel_config: dict[str, Any] | None = None, dim: int = 512,
                 intermediate_dim: int = 1536, num_layers: int = 8, mag_clip: float = 1e3,
                 magnitude_prior: bool = False, phase: str = "direct",
                 lookahead: int | None = None, prior_nnls_iter: int = 0,
                 refine_iters: int = 0, refine_momentum: float = 0.99) -> None:
        super().__init__()
        cfg = MelConfig.from_dict(dict(mel_config)) if mel_config is not None else MelConfig()
        if min(int(dim), int(intermediate_dim), int(num_layers)) < 1:
            raise ConfigError(f"VocosGenerator: dim, intermediate_dim and num_layers must be >= 1,"
                              f" got {dim}, {intermediate_dim}, {num_layers}")
        if phase not in PHASE_MODES:
            raise ConfigError(f"VocosGenerator: phase must be one of {PHASE_MODES}, got {phase!r}")
        if not float(mag_clip) > 0:
            raise ConfigError(f"VocosGenerator: mag_clip must be > 0, got {mag_clip}")
        if int(prior_nnls_iter) < 0 or int(refine_iters) < 0 or not 0.0 <= float(refine_momentum) < 1.0:
            raise ConfigError(f"VocosGenerator: prior_nnls_iter and refine_iters must be >= 0 and"
                              f" refine_momentum in [0, 1), got {prior_nnls_iter}, {refine_iters},"
                              f" {refine_momentum}")
        if int(prior_nnls_iter) and not magnitude_prior:
            raise ConfigError("VocosGenerator: prior_nnls_iter needs magnitude_prior=true")
        if lookahead is not None and (phase in PARAMETER_FREE_PHASES or int(refine_iters)):
            raise ConfigError("VocosGenerator: phase='summed', 'locked' or 'pghi' and refine_iters > 0 do not stream;"
                              " a streaming Vocos (lookahead set) uses phase='integrated'")
        self.save_hparams(mel_config=cfg.to_dict(), dim=int(dim), intermediate_dim=int(intermediate_dim),
                          num_layers=int(num_layers), mag_clip=float(mag_clip),
                          magnitude_prior=bool(magnitude_prior), phase=str(phase),
                          lookahead=None if lookahead is None else int(lookahead),
                          prior_nnls_iter=int(prior_nnls_iter), refine_iters=int(refine_iters),
                          refine_momentum=float(refine_momentum))
        if lookahead is not None and int(lookahead) < 0:
            raise ConfigError(f"VocosGenerator: lookahead must be >= 0, got {lookahead}")
        self._mel_config = cfg
        self.n_freq = cfg.n_fft // 2 + 1
        self.log_clip = math.log(float(mag_clip))
        self.embed = nn.Conv1d(cfg.n_mels, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.phase_mode = str(phase)
        head_channels = {"direct": 2, "integrated": 3, "summed": 1, "locked": 1, "pghi": 1}[self.phase_mode]
        self.head = nn.Linear(dim, head_channels * self.n_freq)
        self.prior_nnls_iter = int(prior_nnls_iter)
        self.refine_iters, self.refine_momentum = int(refine_iters), float(refine_momentum)
        self.istft = InverseSTFT(cfg)
        self.magnitude_prior = bool(magnitude_prior)
        if self.magnitude_prior:
            fb = mel_filterbank(cfg, dtype=torch.float64)  # (n_mels, n_freq)
            cover = fb.sum(dim=0, keepdim=True)                           # weight reaching each bin
            spread = torch.where(cover > 0, fb / cover.clamp_min(1e-12), torch.zeros_like(fb))
            # prior_k = sum_m spread[m, k] * mel_m / sum_k' fb[m, k']
            self.register_buffer("prior_matrix", (spread / fb.sum(dim=1, keepdim=True).clamp_min(1e-12))
                                 .T.contiguous().float(), persistent=False)
            self.register_buffer("fbank", fb.float(), persistent=False)  # for the NNLS updates
        self.apply(self._init_weights)
        if self.phase_mode in PARAMETER_FREE_PHASES and self.magnitude_prior:
            nn.init.zeros_(self.head.weight)  # untrained, it IS the prior (as MagnitudeNet is NNLS)
        self.lookahead = None if lookahead is None else int(lookahead)
        if self.lookahead is not None:
            make_causal(self)
        if self.phase_mode != "direct":
            bins = torch.arange(self.n_freq, dtype=torch.float64)
            # each bin's phase advance per hop at its centre frequency (a phase vocoder's) ...
            self.register_buffer("centre_advance", (2.0 * math.pi * bins * cfg.hop_length / cfg.n_fft)
                                 .float()[:, None], persistent=False)
            # ... corrected by the frequency slope of the log-magnitude (phase-gradient heuristic,
            # Prusa et al. 2017: a Hann window of length L acts as a Gaussian with
            # gamma = 0.25645 L^2; IF deviation = hop * n_fft / gamma * d log|S| / d bin)
            gamma = 0.25645 * cfg.win_length**2
            self.if_gain = cfg.hop_length * cfg.n_fft / gamma
            # the phase's derivative along frequency per unit time slope of the log-magnitude
            # (group delay; used by the pghi phase)
            self.gd_gain = -gamma / (cfg.hop_length * cfg.n_fft)
        if self.phase_mode == "integrated":
            with torch.no_grad():  # start offsets: adjacent bins of a partial in antiphase
                self.head.bias[self.n_freq : 2 * self.n_freq] = torch.remainder(
                    -math.pi * bins, 2 * math.pi).float()

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def mel_config(self) -> MelConfig:
        return self._mel_config

    @property
    def learns_phase(self) -> bool:
        """Whether the head predicts a phase (``direct``, ``integrated``) that a phase loss can train."""
        return self.phase_mode in ("direct", "integrated")

    @property
    def export_blocker(self) -> str | None:
        """Why this generator cannot be exported to ONNX (``None``: it can)."""
        if self.refine_iters:
            return (f"this Vocos refines its phase with {self.refine_iters} fast Griffin-Lim projections"
                    " (complex FFTs), which are not exported; use a Vocos with refine_iters=0 or a plain HiFi-GAN checkpoint")
        if self.phase_mode == "pghi":
            return ("this Vocos carries its phase frame by frame (phase='pghi'), a loop that is not"
                    " exported; use a Vocos with phase='direct' or 'integrated' or a plain HiFi-GAN checkpoint")
        return None

    def log_magnitude_prior(self, log_mel: Tensor) -> Tensor:
        """The closed-form log-magnitude the head's output is added to (``magnitude_prior``)."""
        power = self._mel_config.power
        mel_amp = torch.exp(log_mel.float())
        if power != 1.0:
            mel_amp = mel_amp.pow(1.0 / power)
        lin = torch.einsum("kf,bft->bkt", self.prior_matrix, mel_amp)
        if self.prior_nnls_iter:
            # GriffinLim's NNLS inversion of |S|^power (what the bands sum), started from the
            # spread instead of the pseudo-inverse, with far fewer updates; bins no band
            # reaches are 0 in both
            start = (lin if power == 1.0 else lin.pow(power)).clamp_min(1e-8)
            lin = mel_to_magnitude(torch.exp(log_mel.float()), self.fbank, self.prior_nnls_iter, start=start)
            if power != 1.0:
                lin = lin.pow(1.0 / power)
        return torch.log(lin.clamp_min(1e-5))

    def backbone(self, log_mel: Tensor) -> Tensor:
        """Embedding and ConvNeXt blocks: ``(B, n_mels, T) -> (B, dim, T)``. A streaming
        generator (``lookahead`` set) runs it piece by piece inside
        :func:`~voiceconv.models.streaming.streaming`."""
        x = self.norm(self.embed(log_mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return x

    def head_spectrum(self, features: Tensor, log_mel: Tensor,
                      phase_start: Tensor | None = None,
                      keep: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The head on backbone ``features`` of the frames of ``log_mel`` (same length):
        ``(log_magnitude, phase, running)``. With ``phase="integrated"``, ``phase_start``
        ``(B, n_freq)`` continues the phase's running sum (a stream's one piece of state;
        it starts at 0) and ``running`` is its value after the last frame (else None).
        ``keep`` (``(T,)``, 1 or 0): frames whose phase advance enters the running sum
        (a fixed-shape stream step masks its warm-up frames; None: all, the same numbers)."""
        out = self.head(self.final_norm(features.transpose(1, 2))).transpose(1, 2)
        log_mag, phase = out[:, : self.n_freq], out[:, self.n_freq : 2 * self.n_freq]
        if self.magnitude_prior:
            log_mag = log_mag + self.log_magnitude_prior(log_mel).to(log_mag.dtype)
        running = None
        if self.phase_mode == "integrated":
            # The running sum reaches 1e5..1e6 rad within a window (up to pi * hop / 2 per frame
            # and bin), where float32 keeps 0.01..0.1 rad of it: summed in float64 and wrapped
            # to [0, 2 pi) before float32 (only cos and sin of the phase are used).
            increments = self._advance(log_mag.detach().double()) + out[:, 2 * self.n_freq :].double()
            if keep is not None:
                increments = increments * keep.double()
            summed = torch.cumsum(increments, dim=-1)
            if phase_start is not None:
                summed = summed + phase_start.double()[..., None]
            summed = torch.remainder(summed, 2.0 * math.pi)
            phase = phase.float() + summed.float()
            running = summed[..., -1]
        elif self.phase_mode == "summed":
            phase = self.summed_phase(log_mag.detach())
        elif self.phase_mode == "locked":
            phase = self.locked_phase(log_mag.detach())
        elif self.phase_mode == "pghi":
            phase = self.pghi_phase(log_mag.detach())
        return log_mag.clamp(max=self.log_clip), phase, running

    def spectrum(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        """``(log_magnitude, phase)``, each ``(B, n_fft // 2 + 1, T)``: what the head predicts
        (log-magnitude already clipped at ``log(mag_clip)``). With ``lookahead`` set, the
        backbone is causal and read ``lookahead`` frames late (copies of the last frame past
        the end), so frame ``t`` depends on mel frames ``<= t + lookahead`` only."""
        if log_mel.dim() != 3 or log_mel.shape[1] != self._mel_config.n_mels:
            raise ConfigError(f"VocosGenerator: expected (B, {self._mel_config.n_mels}, T) log-mels,"
                              f" got {tuple(log_mel.shape)}")
        if self.lookahead is None:
            return self.head_spectrum(self.backbone(log_mel), log_mel)[:2]
        shifted, t = shift_for_lookahead(log_mel, self.lookahead)
        features = self.backbone(shifted)[..., self.lookahead : self.lookahead + t]
        return self.head_spectrum(features, log_mel)[:2]

    def summed_phase(self, log_mag: Tensor) -> Tensor:
        """``phase="summed"``: each bin's phase advance (:meth:`_advance`) summed over frames,
        adjacent bins starting in antiphase; no parameters (the untrained ``integrated`` head's
        phase). ``(B, F, T) -> (B, F, T)`` float32 angles."""
        return self._summed(log_mag.float().transpose(1, 2).contiguous(), offsets=True).transpose(1, 2)

    def _summed(self, lm: Tensor, offsets: bool) -> Tensor:
        """The running sum of :meth:`_advance` over frames of ``lm`` ``(B, T, F)`` (bins along
        the fast axis), wrapped to [0, 2 pi): the phase-gradient part summed in float64, the
        bin-centre part in closed form (``k * hop * (t + 1) / n_fft`` cycles, periodic in ``t``,
        exact in integers); ``offsets``: minus ``pi * k`` (adjacent bins in antiphase)."""
        cfg = self._mel_config
        t, n_freq = lm.shape[1], lm.shape[2]
        summed = torch.cumsum((self.if_gain * (0.5 * central_difference(lm, -1))).double(), dim=1)
        period = cfg.n_fft // math.gcd(cfg.n_fft, cfg.hop_length)
        k = torch.arange(n_freq, device=lm.device)
        cycle = torch.remainder(torch.arange(1, period + 1, device=lm.device)[:, None] * k * cfg.hop_length
                                - (cfg.n_fft // 2) * k * int(offsets), cfg.n_fft)
        centre = (cycle.double() * (2.0 * math.pi / cfg.n_fft)).repeat(-(-t // period), 1)[:t]
        return torch.remainder(summed + centre, 2.0 * math.pi).float()

    def locked_phase(self, log_mag: Tensor) -> Tensor:
        """``phase="locked"``: a phase from the log-magnitude alone, no parameters.

        Each bin's phase advance (:meth:`_advance`) is summed over frames, as for
        ``summed``; then, in every frame, each bin takes the sum of the magnitude peak
        (local maximum along frequency) whose hill it lies on, reached by climbing to the
        louder neighbour (up to 8 bins), and sits in antiphase to its neighbours from there,
        as the bins of one windowed partial do in a centred frame (Laroche & Dolson's
        identity phase locking with its trough-bounded regions of influence, the peak's
        phase synthesised instead of analysed). Without the locking, bins of one partial
        drift apart as their summed advance errors grow.
        """
        lm = log_mag.float().transpose(1, 2).contiguous()  # (B, T, F): bins along the fast axis
        n_freq = lm.shape[2]
        summed = self._summed(lm, offsets=False)
        k = torch.arange(n_freq, device=lm.device)
        peak = self._peaks(lm)
        locked = torch.gather(summed, -1, peak) - math.pi * (k - peak).float()
        return locked.transpose(1, 2)

    def pghi_phase(self, log_mag: Tensor) -> Tensor:
        """``phase="pghi"``: a phase from the log-magnitude alone, no parameters.

        Frame by frame, as real-time phase-gradient heap integration does (Prusa &
        Holighaus 2017), with the heap replaced by each frame's magnitude peaks: a peak
        carries on the phase its bin had in the previous frame (already locked to that
        frame's peaks, so the partial's phase follows the partial as it moves across bins),
        advanced by the trapezoid of the bin's instantaneous frequency (:meth:`_advance`) in
        the two frames; every other bin takes its peak's phase (the hill found as in
        :meth:`locked_phase`) plus the integral along frequency of the phase's frequency
        derivative, ``-gamma / (hop * n_fft)`` times the time slope of the log-magnitude
        (the group delay: an impulse late in the frame turns the phase faster with
        frequency), with adjacent bins in antiphase (the centred frame). Each frame depends
        on the frames before it and on the next one (the time slope).
        ``(B, F, T) -> (B, F, T)`` float32 angles in [0, 2 pi).
        """
        cfg = self._mel_config
        lm = log_mag.float().permute(2, 0, 1).contiguous()  # (T, B, F): a frame is one row
        t, n_freq = lm.shape[0], lm.shape[2]
        k = torch.arange(n_freq, device=lm.device)
        peak = self._peaks(lm)
        # the instantaneous-frequency advance from frame t - 1 to t (trapezoid), its bin-centre
        # part wrapped in exact integers
        centre = torch.remainder(k * cfg.hop_length, cfg.n_fft).float() * (2.0 * math.pi / cfg.n_fft)
        slope = central_difference(lm, -1)
        advance = torch.zeros_like(lm)
        torch.add(slope[1:], slope[:-1], out=advance[1:])
        advance[1:] = centre + (0.25 * self.if_gain) * advance[1:]
        # the frequency integral (trapezoid from bin 0) of the group-delay derivative
        across = (0.5 * self.gd_gain) * central_difference(lm, 0)
        across = torch.cumsum(across, dim=-1).sub_(0.5 * (across + across[..., :1]))
        # phase[t, k] = phase[t - 1, peak] + step[t, k], step = what the peak gains in time plus
        # the way along frequency from it, minus pi * (k - peak): one gather; pi * k is taken
        # modulo 2 pi (0 or pi) so float32 keeps the step to 1e-6 rad
        odd = math.pi * torch.remainder(k, 2).float()
        step = torch.gather(advance - across + odd, -1, peak).add_(across).sub_(odd)
        # the running phase in float64: it grows by up to 2 pi per frame
        step = torch.remainder(step, 2.0 * math.pi).double()
        phase = torch.empty_like(step)
        rows, peaks, steps = phase.unbind(0), peak.unbind(0), step.unbind(0)  # views made once
        torch.gather(-odd.double().expand_as(rows[0]), -1, peaks[0], out=rows[0]).add_(steps[0])
        for i in range(1, t):  # a gather and an add per frame: cheaper than a log-depth scan
            torch.gather(rows[i - 1], -1, peaks[i], out=rows[i]).add_(steps[i])
        return torch.remainder(phase, 2.0 * math.pi).float().permute(1, 2, 0)

    @staticmethod
    def _peaks(lm: Tensor) -> Tensor:
        """Each bin's peak along the last axis of ``lm``: climb to the louder neighbour until
        none is louder (the peak of the bin's own hill, the region of influence bounded by the
        troughs); one step as an index map, then pointer doubling: 3 gathers climb up to 8 bins."""
        left = F.pad(lm[..., :-1], (1, 0), value=-math.inf)
        right = F.pad(lm[..., 1:], (0, 1), value=-math.inf)
        k = torch.arange(lm.shape[-1], device=lm.device)
        up = (right > lm) & (right >= left)
        down = (left > lm) & (left > right)
        peak = (up.to(torch.int8) - down.to(torch.int8)).to(torch.int64).add_(k)
        for _ in range(3):
            peak = torch.gather(peak, -1, peak)
        return peak

    def _advance(self, log_mag: Tensor) -> Tensor:
        """Phase advance per frame from a log-magnitude: bin centre + the phase-gradient term."""
        return self.centre_advance + self.if_gain * (0.5 * central_difference(log_mag, 1))

    def synthesize(self, log_mag: Tensor, phase: Tensor) -> Tensor:
        """The waveform of a predicted spectrum: the iSTFT of ``exp(log_mag) * (cos, sin)(phase)``,
        the phase first refined by ``refine_iters`` Griffin-Lim projections if set."""
        mag = torch.exp(log_mag.float())
        phase = phase.float()
        if self.refine_iters:
            cfg = self._mel_config
            return refined_istft(mag, phase, cfg.n_fft, cfg.hop_length, cfg.win_length,
                                 self.refine_iters, self.refine_momentum)
        return self.istft(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, log_mel: Tensor) -> Tensor:
        squeeze = log_mel.dim() == 2
        if squeeze:
            log_mel = log_mel.unsqueeze(0)
        wav = self.synthesize(*self.spectrum(log_mel))
        return wav[0] if squeeze else wav


def anti_wrap(x: Tensor) -> Tensor:
    """``|x - 2 pi round(x / 2 pi)|``: the distance of a phase difference to the nearest multiple of 2 pi."""
    return torch.abs(x - 2.0 * math.pi * torch.round(x / (2.0 * math.pi)))


def spectrum_phase_loss(phase: Tensor, target: Tensor, edge_frames: int = 0,
                        instantaneous: bool = True) -> Tensor:
    """APNet's phase losses (Ai & Ling 2023) on a predicted phase, weighted by the target magnitude.

    ``target`` is the complex STFT ``(B, n_freq, T)`` of the real segment. The sum of three
    anti-wrapped errors: instantaneous phase, group delay (phase difference along frequency)
    and instantaneous frequency (along time). Each bin's error is weighted by the target
    magnitude (a deviation from APNet's plain mean): the phase of near-silent bins is
    noise and should not pull the prediction. ``edge_frames`` at each end are left out.
    """
    frames = min(phase.shape[-1], target.shape[-1])
    lo, hi = edge_frames, frames - edge_frames
    if hi <= lo:
        lo, hi = 0, frames
    est = phase[..., lo:hi].float()
    ref = torch.angle(target[..., lo:hi]).float()
    weight = target[..., lo:hi].abs().float()

    def weighted(err: Tensor, w: Tensor) -> Tensor:
        return (err * w).sum() / w.sum().clamp_min(1e-12)

    ip = weighted(anti_wrap(est - ref), weight)
    gd = weighted(anti_wrap(torch.diff(est, dim=-2) - torch.diff(ref, dim=-2)), weight[..., 1:, :])
    iaf = weighted(anti_wrap(torch.diff(est, dim=-1) - torch.diff(ref, dim=-1)), weight[..., 1:])
    return (ip if instantaneous else 0.0) + gd + iaf



class StreamingISTFT:
    """:class:`InverseSTFT` on a stream of frames: the same samples, returned as soon as no
    later frame can change them (``n_fft - hop`` samples and their window sum are carried)."""

    def __init__(self, istft: InverseSTFT) -> None:
        self.istft = istft
        self.reset()

    def reset(self) -> None:
        keep = self.istft.n_fft - self.istft.hop
        self._acc = torch.zeros(keep)
        self._env = torch.zeros(keep)
        self._skip = self.istft.n_fft // 2  # the centre padding, cut from the start
        self.frames = 0

    def push_frames(self, frames: Tensor) -> Tensor:
        """Samples finished by windowed iSTFT frames ``(n_fft, k)`` (``basis @ [real; imag]``,
        what :meth:`push` computes first; an exported stream step outputs them)."""
        if frames.shape[-1] == 0:
            return torch.zeros(0)
        return self._add(frames)

    def _add(self, frames: Tensor) -> Tensor:
        """Overlap-add ``(n_fft, k)`` frames onto the carry; returns the finished ``k * hop`` samples."""
        k = frames.shape[-1]
        hop = self.istft.hop
        wav = self.istft._overlap_add(frames[None])[0]
        env = self.istft._overlap_add(self.istft.window_sq[None, :, None].expand(1, -1, k))[0]
        keep = self._acc.shape[0]
        wav[:keep] += self._acc
        env[:keep] += self._env
        done = k * hop
        self._acc, self._env = wav[done:].clone(), env[done:].clone()
        self.frames += k
        return self._trim(wav[:done] / env[:done].clamp_min(1e-11))

    def _trim(self, out: Tensor) -> Tensor:
        if self._skip:
            cut = min(self._skip, out.shape[0])
            out, self._skip = out[cut:], self._skip - cut
        return out

    def push(self, real: Tensor, imag: Tensor) -> Tensor:
        """Samples finished by frames ``(n_freq, k)`` (maybe none)."""
        if real.shape[-1] == 0:
            return torch.zeros(0)
        frames = torch.matmul(self.istft.basis, torch.cat([real, imag], dim=0).float())
        return self._add(frames)

    def flush(self) -> Tensor:
        """The samples after the last frame's hop, up to ``frames * hop`` in all (as ``torch.istft``)."""
        tail = self._acc / self._env.clamp_min(1e-11)
        out = self._trim(tail[: self.istft.n_fft // 2])
        self._acc.zero_()
        self._env.zero_()
        return out


class VocosStream:
    """A streaming :class:`VocosGenerator` (``lookahead`` set): log-mel frames in, waveform
    out, exactly what a whole pass gives (the backbone's causal convolutions carry their
    frames, the integrated phase its running sum, the iSTFT its overlap).

    ``push(log_mel (n_mels, k)) -> samples``; ``flush()`` at the end. The output is aligned
    with the frames: sample ``n`` belongs to frame ``n // hop`` as in the whole pass.
    """

    def __init__(self, generator: VocosGenerator) -> None:
        if generator.lookahead is None:
            raise ConfigError("this Vocos does not stream (no lookahead: its convolutions see the "
                              "future); train vocoder model=vocos_stream_small")
        self.gen = copy.deepcopy(generator).eval()
        self._stack: contextlib.ExitStack | None = None
        self.istft = StreamingISTFT(self.gen.istft)
        self.reset()

    def reset(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(streaming(self.gen))
        self._drop = self.gen.lookahead
        self._mels: list[Tensor] = []  # input frames waiting for their backbone output
        self._phase: Tensor | None = None
        self._last: Tensor | None = None
        self._frames_in = 0
        self.istft.reset()

    def _synth(self, features: Tensor) -> Tensor:
        k = features.shape[-1]
        mels = torch.cat(self._mels, dim=-1)
        mel, rest = mels[:, :k], mels[:, k:]
        self._mels = [rest] if rest.shape[-1] else []
        log_mag, phase, running = self.gen.head_spectrum(features, mel[None].float(), self._phase)
        if running is not None:  # wrapped: the same angles, without fp32 losing them over hours
            self._phase = torch.remainder(running, 2 * math.pi)
        mag = torch.exp(log_mag[0].float())
        return self.istft.push(mag * torch.cos(phase[0]), mag * torch.sin(phase[0]))

    @torch.inference_mode()
    def push(self, log_mel: Tensor) -> Tensor:
        """Samples finished by new log-mel frames ``(n_mels, k)``."""
        if log_mel.shape[-1] == 0:
            return torch.zeros(0)
        self._mels.append(log_mel)
        self._last = log_mel[:, -1:]
        self._frames_in += log_mel.shape[-1]
        features = self.gen.backbone(log_mel[None].float())
        if self._drop:
            cut = min(self._drop, features.shape[-1])
            features, self._drop = features[..., cut:], self._drop - cut
        if features.shape[-1] == 0:
            return torch.zeros(0)
        return self._synth(features)

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """The rest: ``lookahead`` copies of the last frame through the backbone, then the iSTFT's tail."""
        pieces = []
        if self._last is not None and self.gen.lookahead:
            features = self.gen.backbone(self._last.expand(-1, self.gen.lookahead)[None].float())
            if self._drop:
                features = features[..., self._drop :]
            if features.shape[-1]:
                pieces.append(self._synth(features))
        pieces.append(self.istft.flush())
        return torch.cat(pieces)


__all__ = ["ConvNeXtBlock", "InverseSTFT", "StreamingISTFT", "VocosGenerator", "VocosStream", "anti_wrap", "front_end_window",
           "spectrum_phase_loss"]
