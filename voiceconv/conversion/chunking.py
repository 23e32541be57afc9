"""Long inputs in bounded memory: log-mel, generator and vocoder applied chunk by chunk.

A 30-minute recording is 155 000 mel frames at the default settings. Converting it
in one pass would need ~6 GB for the first activation of the paper-size
CycleGAN-VC2 generator alone, and Griffin-Lim on the whole spectrogram several GB
of complex spectra. Here every stage runs on windows of the time axis instead:

* **Log-mel** (:func:`log_mel_chunked`): the signal is padded once as
  :class:`~voiceconv.audio.mel.LogMel` would pad it (``center``), and segments of
  it are analysed without centring, so every frame is computed from exactly the
  samples of a whole-signal pass: the result is the same to float rounding.
* **Generator** (:func:`map_frames_chunked`): windows of ``core + context`` frames.
  We use *discard-context-and-stitch*, not a cross-fade: each window is the core
  plus ``context`` frames on each side, and only the core of its output is kept;
  the cores tile the time axis. When ``context`` is at least the generator's
  receptive-field radius (83 frames for the six-block CycleGAN-VC2 generator,
  measured by gradient; we default to 96), a core frame sees exactly the input a
  whole-input pass would give it, so for a purely convolutional generator the
  stitched output equals the whole-input output and there is nothing to blend.
  A cross-fade would only mix in the less reliable frames near a window's edge
  (where the convolutions' zero padding stands in for real neighbours).
  Window starts and core lengths are multiples of ``multiple`` (the generator's
  time down-sampling factor, 4) so that the stride-2 layers sample the same
  positions as in a whole-input pass.

  Deviation (instance normalisation): the CycleGAN-VC2 generator normalises each
  channel by statistics over the whole time axis it is given, so a chunked pass
  normalises by per-window statistics instead of per-utterance ones, and the
  window edges (where zero padding stands in for the neighbours) weigh more in
  them. The models are trained on 64/128-frame crops, so statistics over a
  window of ``chunk_frames + 2 * context`` frames (default 2048 + 192, about 26 s)
  are as much in their training distribution as per-utterance ones, but the
  output is not the whole-input output: for an untrained tiny generator on a
  40 s test signal the relative difference was 20 % with 256-frame cores, 10 %
  with 1024 and 8 % with 2048 (it is exactly 0 for a norm-free generator).
  Inputs that fit in one window (nearly all utterances at the default) are
  converted in one pass, exactly as the paper does.
* **Vocoder** (:func:`vocode_chunked`): windows of frames with context as above,
  but the kept pieces overlap by ``crossfade`` samples at each seam and are
  cross-faded linearly (overlap-add with complementary ramps). A cross-fade is
  needed here and not above because a vocoder's outputs for two windows need not
  agree sample for sample: Griffin-Lim starts every window from random phases, so
  two windows reconstruct the overlap with different phases, and mixing two
  unrelated phases blurs the seam. The fade is therefore short: measured on a 20 s
  test signal (log-mel error of the Griffin-Lim output within 8 frames of a seam),
  a 2-hop fade was best (0.08; whole-signal pass 0.05), no fade gave 0.15 (a click),
  and 4, 8 and 16 hops 0.10, 0.15 and 0.27. With ``align_sign`` a window whose
  overlap is anti-correlated with its predecessor's is negated first (Griffin-Lim
  cannot tell ``x`` from ``-x``), which avoids the worst case, a cancelling fade
  (it lowered the seam error by 1 to 15 % in the same measurement). For a neural
  vocoder the two windows agree in the overlap and any fade is seamless.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from voiceconv.audio.mel import LogMel
from voiceconv.errors import ConfigError

#: default core length of a generator window, frames (about 23.8 s at 22.05 kHz, hop 256;
#: the paper-size generator then peaks at about 0.35 GB of activations in float32, measured)
DEFAULT_CHUNK_FRAMES = 2048
#: default context on each side of a window, frames: >= the paper generator's
#: receptive-field radius (83), rounded up to a multiple of 4
DEFAULT_CONTEXT_FRAMES = 96
#: default core length of a vocoder window, frames
DEFAULT_VOCODER_CHUNK_FRAMES = 2048
#: default context of a vocoder window, frames (Griffin-Lim's edge frames are poor)
DEFAULT_VOCODER_CONTEXT_FRAMES = 16


@dataclass(frozen=True)
class Window:
    """One window of a chunked pass: input frames ``[start, stop)``, of whose output
    the frames ``[keep_start, keep_stop)`` (absolute indices) are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def plan_windows(
    n_frames: int, chunk_frames: int, context_frames: int, multiple: int = 1
) -> list[Window]:
    """Split ``n_frames`` into cores of at most ``chunk_frames`` with context each side.

    The cores tile ``[0, n_frames)`` with near-equal lengths (no tiny last chunk), each
    a multiple of ``multiple`` except possibly the last; windows extend their core by
    ``context_frames`` on each side, clipped to the input. ``chunk_frames`` and
    ``context_frames`` must be multiples of ``multiple``, so every window starts on a
    multiple of it. An input of at most ``chunk_frames`` frames is one window.
    """
    if n_frames < 1:
        raise ConfigError(f"plan_windows: need at least one frame, got {n_frames}")
    if multiple < 1 or chunk_frames < multiple or context_frames < 0:
        raise ConfigError(
            f"plan_windows: need chunk_frames >= multiple >= 1 and context_frames >= 0, got "
            f"chunk_frames={chunk_frames}, context_frames={context_frames}, multiple={multiple}"
        )
    if chunk_frames % multiple or context_frames % multiple:
        raise ConfigError(
            f"plan_windows: chunk_frames ({chunk_frames}) and context_frames ({context_frames}) "
            f"must be multiples of {multiple}"
        )
    if n_frames <= chunk_frames:
        return [Window(0, n_frames, 0, n_frames)]
    n_chunks = math.ceil(n_frames / chunk_frames)
    core = min(chunk_frames, _round_up(math.ceil(n_frames / n_chunks), multiple))
    windows = []
    for keep_start in range(0, n_frames, core):
        keep_stop = min(n_frames, keep_start + core)
        windows.append(
            Window(
                max(0, keep_start - context_frames),
                min(n_frames, keep_stop + context_frames),
                keep_start,
                keep_stop,
            )
        )
    return windows


def map_frames_chunked(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    context_frames: int = DEFAULT_CONTEXT_FRAMES,
    multiple: int = 1,
    out_device: torch.device | str | None = None,
) -> Tensor:
    """Apply a length-preserving ``fn`` to ``x`` ``(..., T)`` window by window (see the
    module docstring); returns ``(..., T)`` on ``out_device`` (default ``x``'s device).

    ``fn`` must map ``(..., t)`` to ``(..., t)`` (same leading shape or not: the output's
    leading shape is taken from the first window). Peak memory is that of ``fn`` on
    one window of at most ``chunk_frames + 2 * context_frames`` frames, plus the input
    and output.
    """
    n_frames = x.shape[-1]
    out: Tensor | None = None
    for w in plan_windows(n_frames, chunk_frames, context_frames, multiple):
        y = fn(x[..., w.start : w.stop])
        if y.shape[-1] != w.stop - w.start:
            raise ConfigError(
                f"map_frames_chunked: fn changed the length of a window ({w.stop - w.start} -> "
                f"{y.shape[-1]} frames)"
            )
        if out is None:
            device = out_device if out_device is not None else x.device
            out = torch.empty(*y.shape[:-1], n_frames, dtype=y.dtype, device=device)
        out[..., w.keep_start : w.keep_stop] = y[..., w.keep_start - w.start : w.keep_stop - w.start]
        del y
    assert out is not None
    return out


def log_mel_chunked(
    logmel: LogMel,
    wav: Tensor,
    chunk_frames: int = 4096,
    device: torch.device | str | None = None,
) -> Tensor:
    """Log-mel ``(n_mels, frames)`` of a mono ``wav`` ``(T,)``, computed on segments.

    Same numbers as ``logmel(wav)`` (``frames == mel_config.frames(T)``): the signal
    is padded once the way :class:`LogMel` pads it when ``center`` is set, then each
    segment of ``chunk_frames`` frames is analysed by an uncentred :class:`LogMel`
    of the same settings. Segments are moved to ``device`` (default ``wav``'s) one
    at a time, so an accelerator holds one segment's spectrum, never the whole one.
    """
    cfg = logmel.mel_config
    if wav.dim() != 1:
        raise ConfigError(f"log_mel_chunked: expected a mono waveform (T,), got {tuple(wav.shape)}")
    target = torch.device(device) if device is not None else wav.device
    n_frames = cfg.frames(wav.shape[-1])
    if n_frames <= chunk_frames or n_frames < 1:
        return logmel.to(target)(wav.to(target))
    if cfg.center:
        pad = cfg.n_fft // 2
        padded = F.pad(wav[None, None], (pad, pad), mode=cfg.pad_mode)[0, 0]
    else:
        padded = wav
    flat = LogMel(dataclasses.replace(cfg, center=False), block_frames=logmel.block_frames).to(target)
    out = torch.empty(cfg.n_mels, n_frames, dtype=torch.float32, device=target)
    hop = cfg.hop_length
    for t0 in range(0, n_frames, chunk_frames):
        t1 = min(n_frames, t0 + chunk_frames)
        seg = padded[t0 * hop : (t1 - 1) * hop + cfg.n_fft].to(target)
        out[:, t0:t1] = flat(seg)
    return out


def vocode_chunked(
    vocoder: Callable[[Tensor], Tensor],
    log_mel: Tensor,
    n_samples: int,
    hop_length: int,
    chunk_frames: int = DEFAULT_VOCODER_CHUNK_FRAMES,
    context_frames: int = DEFAULT_VOCODER_CONTEXT_FRAMES,
    crossfade: int | None = None,
    align_sign: bool = True,
    out_device: torch.device | str | None = "cpu",
    multiple: int = 1,
) -> Tensor:
    """Waveform ``(n_samples,)`` from log-mels ``(n_mels, T)`` vocoded window by window.

    ``vocoder`` maps ``(1, n_mels, t)`` to ``(1, samples)`` with frame ``i`` at sample
    ``i * hop_length`` (the :class:`~voiceconv.vocoders.base.Vocoder` convention).
    Window pieces meet at ``keep * hop_length`` and are cross-faded over ``crossfade``
    samples (default ``2 * hop_length``; at most ``2 * context_frames * hop_length``
    so both pieces cover the fade). Samples a vocoder did not produce (its output is
    usually a little shorter than the window) are zeros. ``multiple``: window starts and
    core lengths are multiples of it (:func:`plan_windows`; 4 when ``vocoder`` contains
    the generator, as an exported mel -> waveform graph does). See the module docstring.
    """
    if log_mel.dim() == 3 and log_mel.shape[0] == 1:
        log_mel = log_mel[0]
    if log_mel.dim() != 2:
        raise ConfigError(f"vocode_chunked: expected (n_mels, T) log-mels, got {tuple(log_mel.shape)}")
    xf = 2 * hop_length if crossfade is None else int(crossfade)
    if xf < 0 or xf % 2:
        raise ConfigError(f"vocode_chunked: crossfade must be an even number >= 0, got {xf}")
    n_frames = log_mel.shape[-1]
    windows = plan_windows(n_frames, chunk_frames, context_frames, multiple)
    shortest_core = min(w.keep_stop - w.keep_start for w in windows)
    # Both pieces must cover the fade, and two fades must not overlap in one piece.
    xf = min(xf, 2 * context_frames * hop_length, shortest_core * hop_length) // 2 * 2
    half = xf // 2
    out_dev = torch.device(out_device) if out_device is not None else log_mel.device
    out = torch.zeros(n_samples, dtype=torch.float32, device=out_dev)
    prev: tuple[int, Tensor] | None = None  # (first sample, samples) of the last piece
    for i, w in enumerate(windows):
        left = None if i == 0 else w.keep_start * hop_length  # seams, in samples
        right = None if i == len(windows) - 1 else w.keep_stop * hop_length
        a = 0 if left is None else max(0, left - half)
        b = n_samples if right is None else min(n_samples, right + half)
        if b <= a:
            continue
        wav = vocoder(log_mel[None, :, w.start : w.stop])[0].float().to(out_dev)
        origin = w.start * hop_length  # sample of the window's first frame
        piece = wav[max(0, a - origin) : max(0, b - origin)]
        piece = F.pad(piece, (max(0, origin - a), 0))
        piece = F.pad(piece, (0, max(0, b - a - piece.shape[0])))
        if align_sign and prev is not None:
            p_start, p_samples = prev
            n = p_start + p_samples.shape[0] - a  # samples both pieces cover
            if n > 0 and float(torch.dot(p_samples[a - p_start :], piece[:n])) < 0.0:
                piece = -piece
        weight = torch.ones(b - a, dtype=torch.float32, device=out_dev)
        if xf:
            # offsets within the piece stay small, so float32 ramps are exact enough
            pos = torch.arange(b - a, device=out_dev, dtype=torch.float32) + 0.5
            if left is not None:
                weight *= ((pos + (a - (left - half))) / xf).clamp(0.0, 1.0)
            if right is not None:
                weight *= (((right + half - a) - pos) / xf).clamp(0.0, 1.0)
        prev = (a, piece)
        out[a:b] += piece * weight
    return out


__all__ = [
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_CONTEXT_FRAMES",
    "DEFAULT_VOCODER_CHUNK_FRAMES",
    "DEFAULT_VOCODER_CONTEXT_FRAMES",
    "Window",
    "log_mel_chunked",
    "map_frames_chunked",
    "plan_windows",
    "vocode_chunked",
]
