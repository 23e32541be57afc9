"""Real-time conversion: :class:`StreamingConverter` turns blocks of samples into converted
samples with a fixed algorithmic latency and bounded state.

::

    sc = StreamingConverter.from_checkpoint("run/checkpoints/last.ckpt", "a2b",
                                            vocoder="vocos_stream/checkpoints/last.ckpt")
    for block in microphone_blocks():
        speaker.play(sc.push(block))
    speaker.play(sc.flush())

The chain is the offline one (:class:`~voiceconv.conversion.converter.VoiceConverter`),
each stage made to stream:

    samples * gain -> log-mel (:class:`~voiceconv.audio.mel_stream.StreamingLogMel`, exact)
    -> normalise (source statistics) -> generator -> de-normalise (target statistics)
    -> streaming Vocos (:class:`~voiceconv.vocoders.vocos.VocosStream`, exact) -> samples

Two ways to stream the generator (``mode``):

* ``"exact"`` — a generator trained to stream (``model=maskcyclegan_vc_stream_small``:
  causal convolutions, batch norm with its running statistics, ``lookahead`` frames of future context; see
  :mod:`voiceconv.models.streaming`). Each layer keeps the frames it still needs, so the
  stream computes every frame once and gives exactly the offline output of that model
  (to float rounding). No seams, so nothing to cross-fade.
* ``"window"`` — any offline generator (instance norm over time, symmetric padding,
  receptive field about +-0.9 s), re-run for every block on a window of ``context``
  past frames, the block and ``lookahead`` future frames; only the block's frames are
  kept. The window's instance-norm statistics are not the utterance's, the edges see
  padding instead of neighbours, and each block costs a whole window. Consecutive blocks'
  frames are cross-faded over ``crossfade`` frames at the seams (in the mel domain, before
  a vocoder that carries its phase across them, so no waveform alignment (SOLA) is needed).

``mode="auto"`` takes ``exact`` for a streaming generator and ``window`` otherwise. The
vocoder must stream too (a Vocos trained with ``lookahead``, ``vocos_stream_small``):
Griffin-Lim iterates over the whole signal and a Vocos with symmetric padding needs
+-21 frames of future.

``backend="onnx"`` runs the exact mode's generator and Vocos as ONE exported ONNX graph per
4-frame step (``voiceconv-export-stream``; the graph, its states and its boundary are
described in :mod:`voiceconv.conversion.onnx_stream`) with onnxruntime; the log-mel front
end and the iSTFT's overlap-add stay here, and push/flush give the same lengths, latency and
(to float rounding) samples as ``backend="torch"``.

Conventions:

* The output stream is aligned with the input: after :meth:`flush` as many samples came out
  as went in, and output sample ``n`` is the conversion of the audio around input sample
  ``n``, returned :attr:`latency_samples` late at most.
* No trimming and no level setting from the whole recording (a stream has neither):
  the input is multiplied by ``gain`` (set it so that speech peaks near the training
  level, peak 0.95 for the demo; file mode can compute it from each file) and, as offline
  conversion does by default, the output is brought back to the input's level (divided by
  ``gain``; ``output_level="model"`` keeps the vocoder's level), then clipped to [-1, 1].
  Without that, the level-set speech came out of the vocoder above full scale and clipped
  (measured on the demo: MCD 0.80 dB between stream and offline until it was divided back).
* How far back a stream remembers (exact mode, the small streaming generator and
  ``vocos_stream_small``, measured by perturbing one input frame): a converted mel frame
  depends on the 157 input frames before it and 4 after, a Vocos frame on the 40 mel frames
  before it and 2 after, so about 200 frames (2.3 s). Beyond that, streams started a whole
  number of 4-frame groups apart give the same frames (tested); the waveform differs only by
  each bin's phase offset, which the Vocos' running phase sum carries from the start.
* Work is done in blocks of :attr:`block_samples` (a multiple of 4 hops, the generator's
  time stride); ``push`` takes pieces of any size and buffers the rest.
* The stream computes with denormal numbers flushed to zero (``torch.set_flush_denormal``,
  what audio engines do; it stays set for the process): on quiet input the nets produce
  values below 1e-38, and without the flush one block of near-silence took 10-15x as long
  (measured: 8.2 s against 0.54 s for 30 blocks of digital silence, tiny test model),
  enough to miss every deadline when the speaker pauses.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from voiceconv.audio.mel import MelConfig
from voiceconv.audio.mel_stream import StreamingLogMel
from voiceconv.audio.preparation import Preparation
from voiceconv.audio.stats import SpeakerStats
from voiceconv.conversion.converter import DIRECTIONS, VoiceConverter
from voiceconv.errors import ConfigError
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.models.streaming import state_frames, streaming
from voiceconv.models.vc.cyclegan_vc2 import DOWNSAMPLE_FACTOR, Generator212
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.vocos import VocosGenerator, VocosStream

MODES = ("auto", "exact", "window")
BACKENDS = ("torch", "onnx")
#: default block: 4 hops at the default MelConfig (1024 samples, 46.4 ms at 22.05 kHz)
DEFAULT_BLOCK_MS = 46.4


class _ExactGenerator:
    """A streaming :class:`Generator212` run piece by piece; output = its offline output."""

    def __init__(self, generator: Generator212) -> None:
        if generator.lookahead is None:
            raise ConfigError("mode 'exact' needs a generator trained to stream "
                              "(model=maskcyclegan_vc_stream_small); use mode 'window'")
        self.gen = copy.deepcopy(generator).eval()
        self.lookahead = int(generator.lookahead)
        self._stack: contextlib.ExitStack | None = None
        self.reset()

    def reset(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(streaming(self.gen))
        self._pending = torch.zeros(self.gen.n_mels, 0)
        self._drop = self.lookahead
        self._last: Tensor | None = None
        self._n_in = self._n_out = 0

    def _run(self, x: Tensor) -> Tensor:
        y = self.gen.body(self.gen.prepare_input(x[None]))[0]
        if self._drop:
            cut = min(self._drop, y.shape[-1])
            y, self._drop = y[:, cut:], self._drop - cut
        self._n_out += y.shape[-1]
        return y

    def push(self, x: Tensor) -> Tensor:
        if x.shape[-1]:
            self._last = x[:, -1:]
            self._n_in += x.shape[-1]
        self._pending = torch.cat([self._pending, x], dim=-1)
        n = self._pending.shape[-1] // DOWNSAMPLE_FACTOR * DOWNSAMPLE_FACTOR
        if n == 0:
            return torch.zeros(self.gen.n_mels, 0)
        piece, self._pending = self._pending[:, :n], self._pending[:, n:]
        return self._run(piece)

    def flush(self) -> Tensor:
        if self._last is None:
            return torch.zeros(self.gen.n_mels, 0)
        owed = self._n_in - self._n_out  # the pending frames and the look-ahead's delay
        t = self._pending.shape[-1] + self.lookahead
        extra = self.lookahead + (-t) % DOWNSAMPLE_FACTOR
        tail = torch.cat([self._pending, self._last.expand(-1, extra)], dim=-1)
        self._pending = torch.zeros(self.gen.n_mels, 0)
        return self._run(tail)[:, :owed]

    def state_frames(self) -> int:
        return state_frames(self.gen) + self._pending.shape[-1]


class _WindowGenerator:
    """An offline generator re-run on a window around each block of frames (see the module)."""

    def __init__(self, generator: torch.nn.Module, block: int, context: int, lookahead: int,
                 crossfade: int) -> None:
        if crossfade > block:
            raise ConfigError(f"crossfade ({crossfade} frames) must not exceed the block ({block})")
        self.gen = generator.eval()
        self.block, self.context, self.lookahead, self.crossfade = block, context, lookahead, crossfade
        self.reset()

    def reset(self) -> None:
        self._hist = torch.zeros(0, 0)   # input frames from _start on
        self._start = 0                  # index of _hist's first frame
        self._done = 0                   # frames whose output has been computed (held ones included)
        self._held = torch.zeros(0, 0)   # last window's frames kept back for the next cross-fade

    def _window(self, t0: int, t1: int, available: int) -> Tensor:
        """Generator output for frames ``t0..t1`` from a window with up to context/lookahead."""
        w0 = max(self._start, t0 - self.context)
        w1 = min(available, t1 + self.lookahead)
        x = self._hist[:, w0 - self._start : w1 - self._start]
        y = self.gen(x[None], torch.ones_like(x[None])) if getattr(self.gen, "in_channels", 1) == 2 \
            else self.gen(x[None])
        return y[0, :, t0 - w0 : t1 - w0]

    def _blend(self, y: Tensor) -> Tensor:
        """``y`` with the held frames cross-faded into its first ones."""
        x = self._held.shape[-1]
        if not x:
            return y
        ramp = torch.linspace(0.0, 1.0, x + 2)[1:-1]
        y = y.clone()
        y[:, :x] = self._held * (1 - ramp) + y[:, :x] * ramp
        return y

    def _emit(self, y: Tensor) -> Tensor:
        """Blend the held frames into ``y``'s first ones; hold ``y``'s last ``crossfade``."""
        x = self.crossfade
        y = self._blend(y)
        if x:
            self._held = y[:, -x:].clone()
            return y[:, :-x]
        return y

    def push(self, x: Tensor) -> Tensor:
        self._hist = x if self._hist.numel() == 0 else torch.cat([self._hist, x], dim=-1)
        available = self._start + self._hist.shape[-1]
        outs = []
        # a block is ready when its frames and its look-ahead have arrived
        while self._done + self.block + self.lookahead <= available:
            t0 = self._done - self._held.shape[-1]
            t1 = self._done + self.block
            outs.append(self._emit(self._window(t0, t1, available)))
            self._done = t1
        keep_from = max(self._start, self._done - self.context - self.crossfade)
        self._hist = self._hist[:, keep_from - self._start :]
        self._start = keep_from
        return torch.cat(outs, dim=-1) if outs else x.new_zeros(x.shape[0], 0)

    def flush(self) -> Tensor:
        available = self._start + self._hist.shape[-1]
        if available <= self._done - self._held.shape[-1] or self._hist.numel() == 0:
            return self._held
        t0 = self._done - self._held.shape[-1]
        y = self._blend(self._window(t0, available, available))
        self._held = torch.zeros(0, 0)
        self._done = available
        return y

    def state_frames(self) -> int:
        return self._hist.shape[-1] + self._held.shape[-1]


class StreamingConverter:
    """Converts a stream of samples block by block (see the module docstring).

    Args:
        model: the trained CycleGAN-style VC model (its generator for ``direction`` is used).
        mel_config, stats: the checkpoint's MelConfig and per-speaker statistics.
        vocoder: a streaming :class:`VocosGenerator` (``lookahead`` set).
        direction: ``"a2b"`` or ``"b2a"``.
        block_ms: the block, rounded to a multiple of 4 hops (at least 4 hops).
        mode: ``"auto"``, ``"exact"`` or ``"window"``.
        gain: input multiplier (a stream cannot be level-set from the whole recording).
        context, lookahead, crossfade: the window mode's frames of past context, future
            context and seam cross-fade.
        backend: ``"torch"`` or ``"onnx"`` (exact mode only: the graph ``onnx_path`` written by
            ``voiceconv-export-stream`` for this checkpoint and direction, run by onnxruntime
            with ``onnx_threads`` intra-op threads).
    """

    def __init__(self, model: CycleGAN, mel_config: MelConfig, stats: Mapping[str, SpeakerStats],
                 vocoder: VocosGenerator, direction: str = "a2b", *, block_ms: float = DEFAULT_BLOCK_MS,
                 mode: str = "auto", gain: float = 1.0, context: int = 64, lookahead: int = 4,
                 crossfade: int = 2, speakers: Mapping[str, str] | None = None,
                 source: str | None = None, preparation: Preparation | None = None,
                 backend: str = "torch", onnx_path: str | os.PathLike[str] | None = None,
                 onnx_threads: int | None = None, output_level: str = "input") -> None:
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if (backend == "onnx") != (onnx_path is not None):
            raise ConfigError("backend 'onnx' needs onnx_path (a graph from voiceconv-export-stream), "
                              "and onnx_path goes with backend 'onnx'")
        if not np.isfinite(gain) or gain <= 0:
            raise ConfigError(f"gain must be a positive number, got {gain}")
        if output_level not in ("input", "model"):
            raise ConfigError(f"output_level must be 'input' or 'model', got {output_level!r}")
        self.output_level = output_level
        #: clip the output to [-1, 1] (file mode turns it off when it sets and restores each
        #: file's level itself, and clips after)
        self.clip = True
        if not isinstance(vocoder, VocosGenerator):
            raise ConfigError(f"streaming needs a Vocos vocoder trained to stream "
                              f"(model=vocos_stream_small), got {type(vocoder).__name__}")
        mel_config.check_same(vocoder.mel_config, what="vocoder")
        hop = mel_config.hop_length
        frames = max(DOWNSAMPLE_FACTOR, round(block_ms / 1000 * mel_config.sample_rate / hop
                                              / DOWNSAMPLE_FACTOR) * DOWNSAMPLE_FACTOR)
        self.mel_config = mel_config
        self.sample_rate = mel_config.sample_rate
        self.block_frames = int(frames)
        self.block_samples = int(frames * hop)
        self.direction = direction
        self.gain = float(gain)
        src, tgt = DIRECTIONS[direction]
        self._src, self._tgt = stats[src], stats[tgt]
        self.speakers = dict(speakers) if speakers else {"A": "A", "B": "B"}
        self.source = source
        #: the checkpoint's trimming and level rule: not applied by the stream (it has no whole
        #: recording), but file mode's ``--gain auto`` measures each file with it
        self.preparation = preparation if preparation is not None else Preparation()
        generator = model.g_ab if direction == "a2b" else model.g_ba
        streams = getattr(generator, "lookahead", None) is not None
        self.mode = ("exact" if streams else "window") if mode == "auto" else mode
        if self.mode == "exact":
            self._gen: _ExactGenerator | _WindowGenerator = _ExactGenerator(generator)
        else:
            self._gen = _WindowGenerator(copy.deepcopy(generator), self.block_frames, int(context),
                                         int(lookahead), int(crossfade))
        self._mel = StreamingLogMel(mel_config)
        self._voc = VocosStream(vocoder)
        self._vocoder_lookahead = int(vocoder.lookahead or 0)
        self.backend = backend
        self._step: Any = None  # the ONNX backend's StepStream: generator + Vocos in one graph
        if backend == "onnx":
            if self.mode != "exact":
                raise ConfigError("backend 'onnx' runs the exact mode's step graph; it needs a generator "
                                  "trained to stream (model=maskcyclegan_vc_stream_small)")
            from voiceconv.conversion.onnx_stream import OnnxStreamStep, StepStream

            assert onnx_path is not None
            graph = OnnxStreamStep(onnx_path, threads=onnx_threads, mel_config=mel_config)
            graph.check_converter(direction, stats, self.speakers, source)
            self._step = StepStream(graph, graph.spec)
        self.reset()
        self.latency_samples = self._measure_latency()
        self.reset()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike[str], direction: str = "a2b",
                        vocoder: str | os.PathLike[str] | None = None, block_ms: float = DEFAULT_BLOCK_MS,
                        mode: str = "auto", gain: float = 1.0, threads: int | None = None,
                        backend: str = "torch", onnx_path: str | os.PathLike[str] | None = None,
                        onnx_threads: int | None = None, **options: Any) -> StreamingConverter:
        """Model, MelConfig and statistics from a training checkpoint, the streaming Vocos from
        a vocoder checkpoint. ``threads`` sets torch's CPU threads (process-wide);
        ``backend="onnx"`` runs the step graph ``onnx_path`` (see the class)."""
        if vocoder is None:
            raise ConfigError("streaming needs --vocoder: a Vocos checkpoint trained to stream "
                              "(voiceconv-train-vocoder model=vocos_stream_small)")
        if threads is not None:
            torch.set_num_threads(int(threads))
        vc = VoiceConverter.from_checkpoint(checkpoint, vocoder="griffinlim")
        assert vc.model is not None
        voc = load_vocoder(vocoder, vc.mel_config, "cpu")
        net = getattr(voc, "net", voc)
        if not isinstance(net, VocosGenerator):
            raise ConfigError(f"{vocoder}: streaming needs a Vocos vocoder (model=vocos_stream_small), "
                              f"this one is a {type(net).__name__}")
        return cls(vc.model, vc.mel_config, vc.stats, net, direction, block_ms=block_ms, mode=mode,
                   gain=gain, speakers=vc.speakers, source=str(Path(checkpoint)),
                   preparation=vc.preparation, backend=backend, onnx_path=onnx_path,
                   onnx_threads=onnx_threads, **options)

    # ------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Start a new stream (all state dropped)."""
        self._gen.reset()
        self._mel.reset()
        self._voc.reset()
        if self._step is not None:
            self._step.reset()
        self._buf = np.zeros(0, dtype=np.float32)
        self._n_in = 0
        self._n_out = 0

    def _convert_frames(self, mel: Tensor) -> Tensor:
        y = self._gen.push(self._src.normalize(mel[None])[0]) if mel.shape[-1] else mel
        return self._tgt.denormalize(y[None])[0] if y.shape[-1] else y

    def _out(self, wav: Tensor, limit: int | None = None) -> np.ndarray:
        out = wav.numpy().astype(np.float32, copy=False)
        if self.output_level == "input":
            out = out / np.float32(self.gain)
        if limit is not None:
            out = out[: max(0, limit - self._n_out)]
        self._n_out += out.shape[0]
        return np.clip(out, -1.0, 1.0) if self.clip else out

    @torch.inference_mode()
    def _block(self, block: np.ndarray) -> Tensor:
        torch.set_flush_denormal(True)
        mel = self._mel.push(block * self.gain)
        if self._step is not None:  # ONNX: statistics, generator and Vocos in the graph
            return self._step.push(mel)
        y = self._convert_frames(mel)
        return self._voc.push(y) if y.shape[-1] else torch.zeros(0)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Converted samples made available by ``samples`` (float32 mono at :attr:`sample_rate`)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise ConfigError("push: samples contain NaN or Inf")
        self._n_in += x.shape[0]
        self._buf = np.concatenate([self._buf, x])
        outs = []
        while self._buf.shape[0] >= self.block_samples:
            block, self._buf = self._buf[: self.block_samples], self._buf[self.block_samples :]
            outs.append(self._block(block))
        return self._out(torch.cat(outs)) if outs else np.zeros(0, dtype=np.float32)

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        """The rest of the stream; afterwards as many samples came out as went in."""
        pieces = [self._block(self._buf)] if self._buf.shape[0] else []
        self._buf = np.zeros(0, dtype=np.float32)
        if self._step is not None:
            if self._n_in > self._mel.half:
                pieces.append(self._step.push(self._mel.flush()))
            pieces.append(self._step.flush())
            return self._finish(pieces)
        y = self._convert_frames(self._mel.flush()) if self._n_in > self._mel.half else None
        if y is not None:
            if y.shape[-1]:
                pieces.append(self._voc.push(y))
            tail = self._gen.flush()
            if tail.shape[-1]:
                pieces.append(self._voc.push(self._tgt.denormalize(tail[None])[0]))
        pieces.append(self._voc.flush())
        return self._finish(pieces)

    def _finish(self, pieces: list[Tensor]) -> np.ndarray:
        out = self._out(torch.cat(pieces), limit=self._n_in)
        if self._n_out < self._n_in:  # a stream shorter than one analysis window: silence
            pad = np.zeros(self._n_in - self._n_out, dtype=np.float32)
            self._n_out = self._n_in
            out = np.concatenate([out, pad])
        return out

    # ------------------------------------------------------------------ facts
    def _measure_latency(self) -> int:
        """Worst-case delay, in samples, between an input sample's arrival and its output:
        ``max`` over pushes ``m`` that return samples of ``(input so far) - (output before m)``.
        Measured on silence in blocks (the counts do not depend on the content)."""
        worst, n_in, n_out, returned = 0, 0, 0, 0
        block = np.zeros(self.block_samples, dtype=np.float32)
        while returned < 6 and n_in < 100 * self.sample_rate:
            got = self.push(block).shape[0]
            n_in += self.block_samples
            if got:
                worst, returned = max(worst, n_in - n_out), returned + 1
            n_out += got
        return int(worst)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def state_size(self) -> int:
        """Frames and samples held between pushes (bounded: it does not grow with the stream)."""
        front = self._buf.shape[0] + self._mel._buf.shape[0]
        if self._step is not None:
            return front + self._step.state_frames()
        return (self._gen.state_frames() + state_frames(self._voc.gen) + front
                + sum(m.shape[-1] for m in self._voc._mels))

    def describe(self) -> str:
        src, tgt = DIRECTIONS[self.direction]
        return (f"{self.speakers.get(src, src)} -> {self.speakers.get(tgt, tgt)}, mode {self.mode}, "
                f"block {1000 * self.block_samples / self.sample_rate:.1f} ms ({self.block_frames} frames), "
                f"algorithmic latency {self.latency_ms:.1f} ms, gain {self.gain:g}"
                + (", onnxruntime" if self._step is not None else ""))


__all__ = ["BACKENDS", "DEFAULT_BLOCK_MS", "MODES", "StreamingConverter"]
