"""Waveform processing on arrays: resampling, level normalisation, silence trimming.

Everything here works on float NumPy arrays shaped ``(T,)`` (mono) or ``(C, T)``
(channels first, the layout :func:`voiceconv.audio.io.load_audio` returns) and
returns new ``float32`` arrays; inputs are never modified in place.

Levels are in dBFS with the convention ``20 * log10(x)`` where ``x`` is a sample
amplitude or an RMS value, so a full-scale square wave is 0 dBFS and a full-scale
sine is -3.01 dBFS RMS (the convention of most speech toolkits, not AES17's, which
adds 3.01 dB so that the sine reads 0).

Bad arrays (wrong shape, NaN) raise :class:`~voiceconv.errors.AudioError` with no
file (``"<array>: ..."``); impossible settings (a negative sample rate) raise
:class:`~voiceconv.errors.ConfigError`.
"""

from __future__ import annotations

import os

import numpy as np
import soxr

from voiceconv.errors import AudioError, ConfigError

SILENCE_DBFS: float = -80.0
"""Peak level below which a signal counts as silent.

16-bit dither (+-1 LSB) peaks at about -90 dBFS and is therefore silence; anything
loud enough to hear, and every non-zero 8-bit PCM signal (1 LSB = -42 dBFS), is not.
"""

RESAMPLE_QUALITY: str = "HQ"
"""soxr quality preset used by :func:`resample`. Measured 48 kHz -> 16 kHz: flat
(|gain| < 0.01 dB) up to 7.3 kHz (91 % of the new Nyquist), -0.4 dB at 7.5 kHz,
-24 dB at 7.8 kHz, and below -130 dB from 8 kHz on."""

_AMIN_POWER = 1e-10  # librosa's power floor (amplitude 1e-5) for dB conversion


def _as_float_array(wav: np.ndarray, what: str = "samples") -> np.ndarray:
    """``wav`` as a float32 array shaped ``(T,)`` or ``(C, T)``; AudioError otherwise."""
    arr = np.asarray(wav)
    if arr.dtype.kind not in "fiu":
        raise AudioError(None, f"{what} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise AudioError(
            None, f"{what} must be shaped (T,) or (channels, T), got shape {tuple(arr.shape)}"
        )
    return arr.astype(np.float32, copy=False)


def check_finite(wav: np.ndarray, path: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`AudioError` if ``wav`` holds NaN or +-inf samples.

    NaN in a waveform poisons every STFT frame it touches and then the whole
    training batch, so it is rejected at the door; ``path`` names the file it came
    from in the message (``None`` for an in-memory array).
    """
    arr = np.asarray(wav)
    finite = np.isfinite(arr)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    first = bad[0][-1]  # sample index along time
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(bad.shape[0] - n_nan)
    raise AudioError(
        path,
        f"contains non-finite samples ({n_nan} NaN, {n_inf} inf), first at sample {first}",
    )


def peak_dbfs(wav: np.ndarray) -> float:
    """Peak level ``20 * log10(max |x|)`` in dBFS; ``-inf`` for digital silence or no samples."""
    arr = np.asarray(wav)
    if arr.size == 0:
        return float("-inf")
    peak = max(float(arr.max()), -float(arr.min()))  # no |x| temporary
    return 20.0 * float(np.log10(peak)) if peak > 0.0 else float("-inf")


def is_silent(wav: np.ndarray, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """True when every sample (all channels) stays below ``threshold_dbfs`` peak.

    An empty array is silent. See :data:`SILENCE_DBFS` for why the default is -80.
    """
    return peak_dbfs(wav) < threshold_dbfs


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of ``(T,)`` or ``(C, T)`` audio from ``orig_sr`` to ``target_sr``.

    Uses libsoxr (the ``soxr`` package, which librosa itself depends on and uses
    by default) at the :data:`RESAMPLE_QUALITY` preset: a linear-phase low-pass
    filter whose stop band starts at the lower of the two Nyquist frequencies, so
    content above the new Nyquist is removed (no aliasing) and the output is time
    aligned with the input (the filter delay is compensated). We pick soxr over
    ``scipy.signal.resample_poly`` because the latter's default Kaiser filter is
    centred *on* the new Nyquist: measured 48 kHz -> 16 kHz it is already -1 dB at
    7.3 kHz, and a tone at 8.5 kHz is only 14 dB down, folding back to 7.5 kHz,
    where soxr gives -136 dB; soxr is also several times faster.

    The output has ``round(T * target_sr / orig_sr)`` samples per channel (soxr's
    convention), is ``float32``, and keeps the channel layout. Input is cast to
    float32 as is (integer PCM is *not* rescaled). Equal rates return a float32 copy.
    """
    for name, sr in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if isinstance(sr, bool) or not isinstance(sr, int | np.integer) or sr <= 0:
            raise ConfigError(f"resample: {name} must be a positive integer, got {sr!r}")
    arr = _as_float_array(wav)
    if orig_sr == target_sr:
        return arr.copy()
    if arr.shape[-1] == 0:
        return np.zeros(arr.shape[:-1] + (0,), dtype=np.float32)
    # soxr wants (T,) or (T, C), C-contiguous.
    frames = np.ascontiguousarray(arr.T)
    out = soxr.resample(frames, int(orig_sr), int(target_sr), quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)


def normalize_peak(
    wav: np.ndarray, peak: float = 0.95, *, silence_dbfs: float = SILENCE_DBFS
) -> np.ndarray:
    """Scale ``wav`` so that its largest absolute sample (over all channels) is ``peak``.

    A silent signal (see :func:`is_silent`) is returned unchanged rather than having
    its noise floor blown up to full scale.
    """
    arr = _as_float_array(wav)
    return (arr * np.float32(peak_gain(arr, peak, silence_dbfs=silence_dbfs))).astype(np.float32)


def peak_gain(wav: np.ndarray, peak: float = 0.95, *, silence_dbfs: float = SILENCE_DBFS) -> float:
    """The factor :func:`normalize_peak` multiplies ``wav`` by (1.0 for a silent signal)."""
    if not 0.0 < peak:
        raise ConfigError(f"normalize_peak: peak must be > 0, got {peak}")
    arr = _as_float_array(wav)
    check_finite(arr)
    if is_silent(arr, silence_dbfs):
        return 1.0
    return peak / float(np.max(np.abs(arr)))


def _block_powers(arr: np.ndarray, block_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean square, length) of consecutive non-overlapping blocks, channels pooled.

    The last block holds the remainder (shorter than ``block_length``), so every
    sample is counted exactly once.
    """
    arr2 = np.atleast_2d(arr).astype(np.float64)
    t = arr2.shape[-1]
    edges = np.arange(0, t, block_length)
    energy = np.add.reduceat(np.sum(arr2**2, axis=0), edges)
    lengths = np.diff(np.append(edges, t)) * arr2.shape[0]
    return energy / lengths, lengths


def loudness_dbfs(
    wav: np.ndarray,
    *,
    block_length: int = 512,
    gate_db: float = 20.0,
    silence_dbfs: float = SILENCE_DBFS,
) -> float:
    """RMS level in dBFS over the non-silent part of ``wav``; ``-inf`` when all is silent.

    This is a plain RMS, *not* ITU-R BS.1770 loudness (no K-weighting, so LUFS
    meters read differently), but it borrows BS.1770's two-stage gating so that
    pauses do not drag the figure down. The signal is cut into non-overlapping
    blocks of ``block_length`` samples (channels pooled); blocks quieter than
    ``silence_dbfs`` are dropped, then blocks more than ``gate_db`` below the mean
    power of the remaining ones (a room-noise floor between words) are dropped too;
    the result is the RMS over the samples of the blocks that are left.

    Deviation from BS.1770: short non-overlapping blocks instead of 400 ms blocks
    with 75 % overlap, so that the blocks straddling a speech onset (half speech,
    half pause, but above the gate) bias the figure by hundredths of a dB rather
    than tenths.
    """
    if block_length <= 0:
        raise ConfigError(f"loudness_dbfs: block_length must be > 0, got {block_length}")
    arr = _as_float_array(wav)
    check_finite(arr)
    if arr.shape[-1] == 0:
        return float("-inf")
    power, length = _block_powers(arr, block_length)
    keep = power > 10.0 ** (silence_dbfs / 10.0)
    if not keep.any():
        return float("-inf")
    mean_kept = np.sum(power[keep] * length[keep]) / np.sum(length[keep])
    keep &= power >= mean_kept * 10.0 ** (-gate_db / 10.0)
    return 10.0 * float(np.log10(np.sum(power[keep] * length[keep]) / np.sum(length[keep])))


def normalize_loudness(
    wav: np.ndarray,
    target_dbfs: float = -23.0,
    *,
    max_peak: float | None = 1.0,
    block_length: int = 512,
    gate_db: float = 20.0,
    silence_dbfs: float = SILENCE_DBFS,
) -> np.ndarray:
    """Scale ``wav`` so that its gated RMS level (:func:`loudness_dbfs`) is ``target_dbfs``.

    RMS dBFS, not LUFS (see :func:`loudness_dbfs`). When reaching the target would
    push a sample beyond ``max_peak`` the gain is lowered so that the peak equals
    ``max_peak`` instead (the result is then quieter than the target, but never
    clips); pass ``max_peak=None`` to allow any peak. A silent signal is returned
    unchanged.
    """
    arr = _as_float_array(wav)
    gain = loudness_gain(arr, target_dbfs, max_peak=max_peak, block_length=block_length,
                         gate_db=gate_db, silence_dbfs=silence_dbfs)
    return (arr * np.float32(gain)).astype(np.float32)


def loudness_gain(
    wav: np.ndarray,
    target_dbfs: float = -23.0,
    *,
    max_peak: float | None = 1.0,
    block_length: int = 512,
    gate_db: float = 20.0,
    silence_dbfs: float = SILENCE_DBFS,
) -> float:
    """The factor :func:`normalize_loudness` multiplies ``wav`` by (1.0 for a silent signal)."""
    arr = _as_float_array(wav)
    level = loudness_dbfs(arr, block_length=block_length, gate_db=gate_db, silence_dbfs=silence_dbfs)
    if not np.isfinite(level):
        return 1.0
    gain = 10.0 ** ((target_dbfs - level) / 20.0)
    if max_peak is not None:
        peak = float(np.max(np.abs(arr)))
        if peak * gain > max_peak:
            gain = max_peak / peak
    return gain


def nonsilent_bounds(
    wav: np.ndarray,
    top_db: float = 40.0,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> tuple[int, int]:
    """Sample range ``[start, end)`` from the first to the last non-silent frame.

    Same rule as ``librosa.effects.trim``: frame RMS on zero-padded centred frames,
    a frame is non-silent when its level is within ``top_db`` of the loudest frame
    (over all channels; powers floored at 1e-10). When nothing falls below the gate
    (including digital silence) the whole signal is kept.
    """
    if frame_length <= 0 or hop_length <= 0:
        raise ConfigError(
            f"trim: frame_length and hop_length must be > 0, got {frame_length}, {hop_length}"
        )
    arr = _as_float_array(wav)
    t = arr.shape[-1]
    if t == 0:
        return 0, 0
    arr2 = np.atleast_2d(arr).astype(np.float64)
    half = frame_length // 2
    padded = np.pad(arr2, ((0, 0), (half, half)), mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length, axis=-1)[
        :, ::hop_length
    ]
    ms = np.mean(frames**2, axis=-1)  # (C, n_frames)
    db = 10.0 * np.log10(np.maximum(ms, _AMIN_POWER)) - 10.0 * np.log10(
        max(float(ms.max()), _AMIN_POWER)
    )
    loud = np.flatnonzero(np.max(db, axis=0) > -top_db)
    if loud.size == 0:
        return 0, t
    return int(loud[0]) * hop_length, min(t, (int(loud[-1]) + 1) * hop_length)


def trim_silence(
    wav: np.ndarray,
    sample_rate: int,
    top_db: float = 40.0,
    frame_length: int = 2048,
    hop_length: int = 512,
    pad_ms: float = 50.0,
) -> np.ndarray:
    """Cut leading and trailing silence from ``(T,)`` or ``(C, T)`` audio.

    Finds the speech with :func:`nonsilent_bounds` (the ``librosa.effects.trim``
    rule) and then keeps ``pad_ms`` milliseconds more on each side (within the
    signal): word-initial fricatives and plosive bursts often sit below a 40 dB
    gate, and a short margin keeps them. ``pad_ms=0`` gives exactly librosa's cut.
    Only the ends are trimmed; pauses inside the utterance stay. A signal that is
    silent throughout comes back whole (use :func:`is_silent` to reject it).
    """
    arr = _as_float_array(wav)
    start, end = trim_bounds(arr, sample_rate, top_db, frame_length, hop_length, pad_ms)
    return arr[..., start:end].copy()


def trim_bounds(
    wav: np.ndarray,
    sample_rate: int,
    top_db: float = 40.0,
    frame_length: int = 2048,
    hop_length: int = 512,
    pad_ms: float = 50.0,
) -> tuple[int, int]:
    """Sample range ``[start, end)`` that :func:`trim_silence` keeps (bounds plus margin)."""
    if sample_rate <= 0 or pad_ms < 0:
        raise ConfigError(
            f"trim_silence: need sample_rate > 0 and pad_ms >= 0, got {sample_rate}, {pad_ms}"
        )
    arr = _as_float_array(wav)
    start, end = nonsilent_bounds(arr, top_db, frame_length, hop_length)
    pad = int(round(pad_ms * sample_rate / 1000.0))
    return max(0, start - pad), min(arr.shape[-1], end + pad)
