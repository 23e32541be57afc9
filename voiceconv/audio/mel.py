"""The one log-mel implementation of voiceconv.

:class:`MelConfig` names every setting that changes the numbers a mel frame holds.
It travels with every feature cache, checkpoint and vocoder, and two components
refuse to work together when their configs differ (see :meth:`MelConfig.check_same`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch
from torch import nn

from voiceconv.errors import AudioError, ConfigError, MelConfigMismatch


@dataclass(frozen=True)
class MelConfig:
    """Settings of the log-mel front end.

    Defaults follow HiFi-GAN / MelGAN practice (22.05 kHz, 1024-point FFT, hop 256,
    80 Slaney-normalised Slaney-scale mel bands from 0 to 8 kHz, magnitude (power 1)
    spectrogram, natural log clamped at 1e-5), so a vocoder trained on these features
    reads the same numbers the VC model writes.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    power: float = 1.0
    center: bool = True
    pad_mode: str = "reflect"
    mel_norm: str | None = "slaney"
    mel_scale: str = "slaney"
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        from voiceconv.errors import ConfigError

        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop_length <= 0:
            raise ConfigError(f"MelConfig: sample_rate, n_fft, hop_length must be > 0: {self}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"MelConfig: win_length {self.win_length} > n_fft {self.n_fft}")
        if self.fmax is not None and self.fmax > self.sample_rate / 2:
            raise ConfigError(
                f"MelConfig: fmax {self.fmax} above Nyquist {self.sample_rate / 2}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML/checkpoint friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            from voiceconv.errors import ConfigError

            raise ConfigError(f"MelConfig: unknown keys {sorted(unknown)}")
        return cls(**dict(d))

    def check_same(self, other: MelConfig, what: str = "input") -> None:
        """Raise :class:`MelConfigMismatch` naming every differing field."""
        diffs = [
            f"{f.name}={getattr(other, f.name)!r} (expected {getattr(self, f.name)!r})"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
        if diffs:
            raise MelConfigMismatch(f"{what} was made with another MelConfig: " + ", ".join(diffs))

    def frames(self, n_samples: int) -> int:
        """Number of mel frames produced for ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.n_fft) // self.hop_length if n_samples >= self.n_fft else 0


# ---------------------------------------------------------------------------
# Mel filterbank
# ---------------------------------------------------------------------------

_MEL_SCALES = ("slaney", "htk")
_MEL_NORMS = (None, "slaney")


def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    """Hertz to mel on the HTK (O'Shaughnessy) or Slaney (Auditory Toolbox) scale."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above
    # (27 mels per factor 6.4 in frequency).
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = f_sp * mel
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mel[above] - min_log_mel))
    return hz


def _filterbank_f64(cfg: MelConfig) -> np.ndarray:
    """Triangular mel filters, float64, shape (n_mels, n_fft // 2 + 1).

    Band edges are ``n_mels + 2`` points equally spaced in mel between fmin and
    fmax; filter ``i`` rises linearly (in Hz) from edge ``i`` to ``i + 1`` and falls
    to ``i + 2``. With ``mel_norm="slaney"`` each triangle is scaled by
    ``2 / (f[i+2] - f[i])`` so that every band has the same area (constant energy
    per band for white noise). This is the construction of Slaney's Auditory
    Toolbox, which librosa and torchaudio also follow.
    """
    if cfg.mel_scale not in _MEL_SCALES:
        raise ConfigError(
            f"MelConfig: mel_scale must be one of {_MEL_SCALES}, got {cfg.mel_scale!r}"
        )
    if cfg.mel_norm not in _MEL_NORMS:
        raise ConfigError(f"MelConfig: mel_norm must be one of {_MEL_NORMS}, got {cfg.mel_norm!r}")
    fmax = cfg.sample_rate / 2.0 if cfg.fmax is None else float(cfg.fmax)
    if not 0.0 <= cfg.fmin < fmax:
        raise ConfigError(f"MelConfig: need 0 <= fmin < fmax, got fmin={cfg.fmin}, fmax={fmax}")
    fft_hz = np.arange(cfg.n_fft // 2 + 1, dtype=np.float64) * (cfg.sample_rate / cfg.n_fft)
    lo, hi = _hz_to_mel(np.array([cfg.fmin, fmax]), cfg.mel_scale)
    edges_hz = _mel_to_hz(np.linspace(lo, hi, cfg.n_mels + 2), cfg.mel_scale)
    widths = np.diff(edges_hz)  # (n_mels + 1,)
    dist = edges_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    rising = -dist[:-2] / widths[:-1, None]
    falling = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if cfg.mel_norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


def mel_filterbank(
    cfg: MelConfig,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Mel projection matrix of shape ``(n_mels, n_fft // 2 + 1)`` for ``cfg``.

    Equals ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=(mel_scale ==
    "htk"), norm=mel_norm)`` (computed here in float64 from the closed form, then
    cast to ``dtype``; the tests check it against librosa). ``fmax=None`` means the
    Nyquist frequency. Only ``mel_norm`` None or ``"slaney"`` is supported (librosa's
    p-norm variants are not used by any model here). Filters that fall between two
    FFT bins (too many mels for the FFT size) come out all-zero, as in librosa.
    """
    return torch.as_tensor(_filterbank_f64(cfg), dtype=dtype, device=device)


# ---------------------------------------------------------------------------
# Log-mel front end
# ---------------------------------------------------------------------------


def _as_float_signal(wav: torch.Tensor, min_len: int, what: str) -> torch.Tensor:
    """Check shape/dtype of a waveform tensor; integers are refused (no silent PCM scaling)."""
    if wav.dim() < 1:
        raise AudioError(None, f"{what}: waveform must have a time axis, got a scalar")
    if not (wav.is_floating_point()):
        raise AudioError(
            None, f"{what}: waveform must be floating point in [-1, 1], got {wav.dtype}"
        )
    if wav.shape[-1] < min_len:
        raise AudioError(
            None,
            f"{what}: waveform of {wav.shape[-1]} samples is shorter than the {min_len} needed",
        )
    if wav.dtype not in (torch.float32, torch.float64):
        wav = wav.float()
    return wav


_PAD_MODES = ("reflect", "constant", "replicate", "circular")


class LogMel(nn.Module):
    """Batched log-mel spectrogram, the front end of every model in voiceconv.

    ``forward(wav)`` maps ``(..., T)`` samples to ``(..., n_mels, frames)`` with
    ``frames == mel_config.frames(T)``:

    1. STFT with a periodic Hann window of ``win_length`` (zero-padded to ``n_fft``
       in the middle, as librosa does), ``center``/``pad_mode`` from the config.
    2. ``|X| ** power``.
    3. Mel projection by matmul. FFT bins above the last non-zero filter column
       (above ``fmax``) are dropped before step 2, which saves ~25 % of the work at
       the default settings without changing a number.
    4. ``log(clamp(x, min=log_floor))`` (natural log).

    Two execution paths compute the same numbers (the tests check both against
    librosa):

    * GPU, or whenever autograd needs the graph: one ``torch.stft`` and one
      matmul for the whole batch.
    * CPU without autograd (preprocessing, conversion, evaluation): the padded
      signals are framed as a strided view, and frames go through window, rfft,
      ``|.|`` and the mel matmul in blocks of ``block_frames`` (default 256: ~1
      MiB of frames and ~1 MiB of spectrum, sized to a core's L2 cache). This
      deviates from "one stft for the batch" on purpose: the whole-batch STFT of
      32 x 4 s clips materialises ~45 MB of complex spectrum and runs ~2x slower
      on the 2-core dev machine (median 0.36 s vs 0.15 s, one thread, measured
      with other jobs running) because every stage then streams from memory.

    Numbers: float32 input is computed in float32 (as torchaudio and HiFi-GAN
    do). Against librosa's float64 result (``librosa.feature.melspectrogram`` + the
    same clamp and log), where the mel value is above ``10 * log_floor``, the
    log-mel error is ~1e-5 on synthetic signals and up to ~1.3e-4 on real speech
    (flite, 4 voices): FFT rounding error is relative to the loudest bin of a
    frame, and speech's spectral tilt puts the quietest counted bins ~1e4 below
    it (the tests allow 1e-4 and 3e-4 respectively; 1e-4 in natural log is
    0.0004 dB). float64 input is computed in float64 and matches to ~1e-7 (the
    limit being librosa's float32 mel basis), at ~2.3x the cost. librosa's own
    float32 output is more accurate (~1e-6) because it multiplies the float32
    frames by a float64 window and so runs the FFT in float64. Half-precision
    input is computed in float32.

    The filterbank and the window are float64 buffers (not saved in ``state_dict``,
    being fully determined by the config), cast to the input's dtype on use, so
    ``.to(device)`` moves them. Inputs are not checked for NaN/Inf here (this is
    the hot path): use :func:`log_mel` or the audio loaders, which do.
    """

    window: torch.Tensor
    filterbank: torch.Tensor

    def __init__(self, mel_config: MelConfig | None = None, block_frames: int = 256) -> None:
        super().__init__()
        cfg = mel_config if mel_config is not None else MelConfig()
        if cfg.pad_mode not in _PAD_MODES:
            raise ConfigError(
                f"MelConfig: pad_mode must be one of {_PAD_MODES}, got {cfg.pad_mode!r}"
            )
        if block_frames < 1:
            raise ConfigError(f"LogMel: block_frames must be >= 1, got {block_frames}")
        self.mel_config = cfg
        self.block_frames = block_frames
        fb = _filterbank_f64(cfg)
        nonzero = np.flatnonzero(fb.any(axis=0))
        # Keep the FFT bins up to the last one any filter uses.
        self._n_bins = int(nonzero[-1]) + 1 if nonzero.size else 1
        # Buffers are kept in float64 and cast to the input's dtype on use: a float32
        # window alone leaks ~1e-5 relative error into quiet bins of a float64 run.
        self.register_buffer(
            "filterbank",
            torch.from_numpy(np.ascontiguousarray(fb[:, : self._n_bins])),
            persistent=False,
        )
        # The Hann window of win_length, centred in n_fft zeros (what torch.stft and
        # librosa both do with a shorter window).
        hann = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
        left = (cfg.n_fft - cfg.win_length) // 2
        window = nn.functional.pad(hann, (left, cfg.n_fft - cfg.win_length - left))
        self.register_buffer("window", window, persistent=False)
        # Reflect padding needs more than n_fft // 2 samples; without centring a
        # frame needs n_fft samples.
        if cfg.center:
            self._min_len = cfg.n_fft // 2 + 1 if cfg.pad_mode == "reflect" else 1
        else:
            self._min_len = cfg.n_fft

    def extra_repr(self) -> str:
        return f"{self.mel_config!r}, block_frames={self.block_frames}"

    def _prepare(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        wav = _as_float_signal(wav, self._min_len, "LogMel")
        return wav.reshape(-1, wav.shape[-1]), wav.shape[:-1]

    def _power(self, mag: torch.Tensor) -> torch.Tensor:
        power = self.mel_config.power
        if power == 2.0:
            return mag.square()
        if power != 1.0:
            return mag.pow(power)
        return mag

    def _fast_power(self, spec: torch.Tensor) -> torch.Tensor:
        """``|spec| ** power`` via ``re^2 + im^2`` (~2.5x faster than complex ``abs``).

        Not for autograd: the gradient of the square root is infinite at an exact
        zero bin (digital silence), where ``abs`` has the 0 subgradient.
        """
        sq = torch.addcmul(spec.real.square(), spec.imag, spec.imag)
        power = self.mel_config.power
        if power == 2.0:
            return sq
        if power == 1.0:
            return sq.sqrt_()
        return sq.pow_(power / 2)

    def _stft_magnitude(self, flat: torch.Tensor, n_bins: int) -> torch.Tensor:
        """``|STFT| ** power`` of ``(B, T)``, first ``n_bins`` bins: ``(B, n_bins, frames)``."""
        cfg = self.mel_config
        spec = torch.stft(
            flat,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.n_fft,
            window=self.window.to(dtype=flat.dtype, device=flat.device),
            center=cfg.center,
            pad_mode=cfg.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return self._power(spec[:, :n_bins, :].abs())

    def _blocked_mel(self, flat: torch.Tensor) -> torch.Tensor:
        """Mel power of ``(B, T)`` as ``(B, n_mels, frames)``, cache-sized blocks (CPU)."""
        cfg = self.mel_config
        if cfg.center:
            pad = cfg.n_fft // 2
            flat = nn.functional.pad(flat.unsqueeze(1), (pad, pad), mode=cfg.pad_mode).squeeze(1)
        frames = flat.unfold(-1, cfg.n_fft, cfg.hop_length)  # (B, n_frames, n_fft), a view
        n_items, n_frames, _ = frames.shape
        window = self.window.to(dtype=flat.dtype)
        fb_t = self.filterbank.to(dtype=flat.dtype).t().contiguous()  # (bins, n_mels)
        out = torch.empty(n_items, n_frames, cfg.n_mels, dtype=flat.dtype)
        block = self.block_frames
        if n_frames >= block:  # blocks of frames within one item
            spans = [
                (b, b + 1, t, min(t + block, n_frames))
                for b in range(n_items)
                for t in range(0, n_frames, block)
            ]
        else:  # blocks of whole items
            per = max(1, block // max(n_frames, 1))
            spans = [(b, min(b + per, n_items), 0, n_frames) for b in range(0, n_items, per)]
        for b0, b1, t0, t1 in spans:
            spec = torch.fft.rfft(frames[b0:b1, t0:t1] * window)[..., : self._n_bins]
            torch.matmul(self._fast_power(spec), fb_t, out=out[b0:b1, t0:t1])
        return out.transpose(1, 2)

    def magnitude(self, wav: torch.Tensor, *, all_bins: bool = False) -> torch.Tensor:
        """``|STFT(wav)| ** power`` of shape ``(..., bins, frames)``.

        With ``all_bins=False`` only the bins the mel filters use are returned
        (``bins <= n_fft // 2 + 1``); ``all_bins=True`` returns all
        ``n_fft // 2 + 1`` (what Griffin-Lim and linear-spectrogram losses need).
        """
        flat, lead = self._prepare(wav)
        n_bins = self.mel_config.n_fft // 2 + 1 if all_bins else self._n_bins
        mag = self._stft_magnitude(flat, n_bins)
        return mag.reshape(*lead, *mag.shape[-2:])

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Mel spectrogram (before the log) of shape ``(..., n_mels, frames)``."""
        flat, lead = self._prepare(wav)
        if flat.device.type == "cpu" and not (torch.is_grad_enabled() and flat.requires_grad):
            out = self._blocked_mel(flat)
        else:
            mag = self._stft_magnitude(flat, self._n_bins)
            out = torch.matmul(self.filterbank.to(dtype=mag.dtype, device=mag.device), mag)
        return out.reshape(*lead, *out.shape[-2:])

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram ``(..., n_mels, frames)`` of ``wav`` ``(..., T)``."""
        # Out of place, so the module stays differentiable (mel losses on generated audio).
        return self.mel(wav).clamp(min=self.mel_config.log_floor).log()


def stft_magnitude(
    wav: torch.Tensor, cfg: MelConfig, device: torch.device | str | None = None
) -> torch.Tensor:
    """``|STFT| ** cfg.power`` over all ``n_fft // 2 + 1`` bins, ``(..., bins, frames)``.

    The linear spectrogram matching :class:`LogMel` (same window, padding, power),
    for Griffin-Lim and spectral losses.
    """
    module = LogMel(cfg).to(device if device is not None else wav.device)
    return module.magnitude(wav.to(module.window.device), all_bins=True)


@overload
def log_mel(
    wav: np.ndarray, cfg: MelConfig, device: torch.device | str | None = None
) -> np.ndarray: ...


@overload
def log_mel(
    wav: torch.Tensor, cfg: MelConfig, device: torch.device | str | None = None
) -> torch.Tensor: ...


def log_mel(
    wav: np.ndarray | torch.Tensor, cfg: MelConfig, device: torch.device | str | None = None
) -> np.ndarray | torch.Tensor:
    """Log-mel of one waveform ``(T,)`` or a batch ``(..., T)``; checks the input.

    NumPy in gives NumPy ``float32`` out (computed on ``device``, default CPU);
    a tensor in gives a tensor out on ``device`` (default: the input's device).
    Builds a :class:`LogMel` per call: for many clips build one and reuse it.
    Raises :class:`~voiceconv.errors.AudioError` for integer, empty, too-short or
    non-finite input.
    """
    is_numpy = isinstance(wav, np.ndarray)
    if is_numpy:
        if not np.issubdtype(wav.dtype, np.floating):
            raise AudioError(
                None, f"log_mel: waveform must be floating point in [-1, 1], got {wav.dtype}"
            )
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    else:
        x = wav
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise AudioError(None, "log_mel: waveform contains NaN or Inf")
    target = torch.device(device) if device is not None else x.device
    module = LogMel(cfg).to(target)
    if is_numpy:
        with torch.inference_mode():
            out = module(x.to(target))
        return out.cpu().numpy().astype(np.float32, copy=False)
    return module(x.to(target))
