"""Running an exported streaming step with onnxruntime: :class:`OnnxStreamStep`, :class:`StepStream`.

``voiceconv-export-stream`` (:func:`voiceconv.conversion.stream_export.export_stream_onnx`)
writes ONE ONNX graph for one step of the exact streaming mode
(:class:`~voiceconv.conversion.streaming.StreamingConverter`, ``mode="exact"``): 4 new mel
frames in, 4 windowed iSTFT frames out, every piece of state an explicit input and
output. The graph boundary::

    outside (Python)   samples -> StreamingLogMel -> raw source log-mels, 4 at a time
    graph              normalise (source statistics) -> generator body (causal convolutions,
                       states in/out) -> de-normalise (target statistics) -> pick the Vocos
                       input frames (voc_index) -> Vocos backbone (causal convolutions with
                       a start mask, states in/out) -> head (log-magnitude, phase; the
                       integrated phase's running sum in float64, state in/out)
                       -> exp, cos, sin -> the iSTFT's matrix product: windowed frames
    outside (Python)   overlap-add and window-sum normalisation (StreamingISTFT), clipping

Inputs (all shapes fixed):

* ``log_mel`` float32 ``(1, n_mels, 4)``: the next 4 frames of the SOURCE speaker's
  natural-log mels in its own scale (what :class:`~voiceconv.audio.mel_stream.StreamingLogMel`
  returns; the statistics are inside the graph, as in the offline graph).
* ``voc_start`` int64 ``(1,)``: the Vocos stream position of this step's first Vocos input
  frame (the generator's body output index minus its look-ahead). Vocos input frames at
  negative positions do not exist yet: the Vocos' causal convolutions see zeros for them
  (their ``(kernel - 1)`` past frames are masked), and head frames at positions below the
  Vocos look-ahead add nothing to the phase's running sum. This is the warm-up of
  :class:`~voiceconv.vocoders.vocos.VocosStream` (which drops the generator's first
  ``lookahead`` outputs and its own first ``lookahead`` backbone outputs) done with a
  fixed shape.
* ``voc_index`` int64 ``(4,)``: which of ``[previous Vocos input frame, body output 0..3]``
  the Vocos reads at each of its 4 positions: ``[1, 2, 3, 4]`` in a running stream; at the
  end of the stream, copies of the last real frame (the Vocos' own flush).
* the states, in the order of the ``voiceconv.states_json`` metadata: every causal
  convolution's carried frames (``gen.<module>``, ``voc.<module>``), ``voc.last`` (the
  last Vocos input frame), ``voc.head_mels`` (the Vocos input frames still waiting for
  their backbone output, ``lookahead`` of them) and ``voc.phase`` (float64, the running
  phase wrapped to [0, 2 pi), integrated-phase Vocos only). A stream starts from zeros.

Outputs: ``frames`` float32 ``(1, n_fft, 4)``: the windowed iSTFT frames of the head's
spectrum (``basis @ [mag cos(phase); mag sin(phase)]``), frame ``j`` for mel frame
``voc_start + j - vocos_lookahead`` (those below 0 are warm-up and not used), then each
state's new value, named ``<state>.next``.

:class:`StepStream` is the Python around the graph (the generator's pending frames, the
positions, the flush, the overlap-add); it gives the same samples as the PyTorch exact
mode, push for push. ``StreamingConverter(..., backend="onnx")`` and
``voiceconv-stream --backend onnx`` run it. It needs the ``onnx`` extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from voiceconv.audio.mel import MelConfig
from voiceconv.audio.stats import SpeakerStats
from voiceconv.conversion import onnx_backend as ob
from voiceconv.errors import ConfigError, FileProblem
from voiceconv.vocoders.vocos import InverseSTFT, StreamingISTFT

#: value of the format key in stream-step graphs this version writes and reads
FORMAT = "voiceconv-stream-step/1"
#: mel frames per step: the generator's time stride (two stride-2 layers)
STEP_FRAMES = 4
INPUT_MEL = "log_mel"
INPUT_START = "voc_start"
INPUT_INDEX = "voc_index"
OUTPUT_FRAMES = "frames"
#: suffix of a state's output name
NEXT = ".next"

META_STEP_FRAMES = "voiceconv.step_frames"
META_BLOCK_FRAMES = "voiceconv.block_frames"
META_GEN_LOOKAHEAD = "voiceconv.generator_lookahead"
META_VOC_LOOKAHEAD = "voiceconv.vocoder_lookahead"
META_STATES = "voiceconv.states_json"

_REQUIRED = (ob.META_FORMAT, ob.META_MEL_CONFIG, ob.META_DIRECTION, ob.META_SPEAKERS, META_STEP_FRAMES,
             META_GEN_LOOKAHEAD, META_VOC_LOOKAHEAD, META_STATES)


@dataclass(frozen=True)
class StateSpec:
    """One carried tensor of the step: its input name (output: ``name + ".next"``), shape, dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "float32" or "float64"

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StateSpec:
        return cls(str(d["name"]), tuple(int(v) for v in d["shape"]), str(d["dtype"]))


@dataclass(frozen=True)
class StepSpec:
    """What the Python around a step needs to know about it."""

    mel_config: MelConfig
    generator_lookahead: int
    vocoder_lookahead: int
    states: tuple[StateSpec, ...]
    step_frames: int = STEP_FRAMES

    def state_frames(self) -> int:
        """Frames the step's states hold (time = the last axis; the phase counts as none)."""
        return sum(s.shape[-1] for s in self.states if s.dtype == "float32")


#: a step: inputs by name -> outputs by name (``frames`` and every ``<state>.next``)
StepFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class StepStream:
    """The exact streaming mode around a step function (see the module docstring).

    ``push(log_mel (n_mels, k))`` -> samples, ``flush()`` -> the rest; the same calls,
    output lengths and samples (to float rounding) as the PyTorch exact mode's
    generator + :class:`~voiceconv.vocoders.vocos.VocosStream` on the same frames.
    ``step`` maps the graph's inputs to its outputs (onnxruntime's session, or the
    PyTorch step module for tests).
    """

    def __init__(self, step: StepFn, spec: StepSpec) -> None:
        self.step = step
        self.spec = spec
        self.n_mels = spec.mel_config.n_mels
        self.istft = StreamingISTFT(InverseSTFT(spec.mel_config))
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero states, nothing pending."""
        self.states = {s.name: s.zeros() for s in self.spec.states}
        self._pending = np.zeros((self.n_mels, 0), dtype=np.float32)
        self._last: np.ndarray | None = None
        self._n_in = 0      # raw frames pushed
        self._body = 0      # generator body outputs computed (= raw frames stepped)
        self.istft.reset()

    def _step(self, x: np.ndarray, index: Sequence[int]) -> np.ndarray:
        """One step on 4 raw frames; returns the spectrum frames of real mel frames ``(n_fft, k)``."""
        s = self.spec
        start = self._body - s.generator_lookahead
        feeds = {INPUT_MEL: np.ascontiguousarray(x[None], dtype=np.float32),
                 INPUT_START: np.array([start], dtype=np.int64),
                 INPUT_INDEX: np.asarray(index, dtype=np.int64), **self.states}
        out = self.step(feeds)
        self.states = {name: out[name + NEXT] for name in self.states}
        self._body += s.step_frames
        # frame j is mel frame start + j - vocoder_lookahead; negative ones are warm-up
        first = max(0, s.vocoder_lookahead - start)
        return out[OUTPUT_FRAMES][0, :, first:]

    def _synth(self, frames: np.ndarray) -> Tensor:
        return self.istft.push_frames(torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)))

    def push(self, log_mel: Tensor) -> Tensor:
        """Samples finished by new raw source log-mel frames ``(n_mels, k)``."""
        x = log_mel.detach().cpu().numpy().astype(np.float32, copy=False) if isinstance(log_mel, Tensor) \
            else np.asarray(log_mel, dtype=np.float32)
        if x.shape[-1] == 0:
            return torch.zeros(0)
        self._last = x[:, -1:]
        self._n_in += x.shape[-1]
        self._pending = np.concatenate([self._pending, x], axis=-1)
        n = self.spec.step_frames
        plain = list(range(1, n + 1))
        pieces = []
        while self._pending.shape[-1] >= n:
            piece, self._pending = self._pending[:, :n], self._pending[:, n:]
            frames = self._step(piece, plain)
            if frames.shape[-1]:
                pieces.append(frames)
        return self._synth(np.concatenate(pieces, axis=-1)) if pieces else torch.zeros(0)

    def flush(self) -> Tensor:
        """The rest of the stream: the pending frames and the generator's look-ahead (copies
        of the last frame), the Vocos' look-ahead (copies of its last input), the iSTFT's tail."""
        if self._last is None:
            return self.istft.flush()
        s, n, total = self.spec, self.spec.step_frames, self._n_in
        # Vocos input positions up to total - 1 + vocoder_lookahead must go through
        needed = total + s.generator_lookahead + s.vocoder_lookahead
        pieces = []
        while self._body < needed:
            have = self._pending.shape[-1]
            piece = np.concatenate([self._pending, np.repeat(self._last, max(0, n - have), axis=-1)],
                                   axis=-1)[:, :n]
            self._pending = self._pending[:, min(have, n):]
            start = self._body - s.generator_lookahead
            index = []
            for j in range(n):
                if start + j < total:                 # a real generator output
                    index.append(1 + j)
                elif total - 1 >= start:              # copies of the last one, in this step
                    index.append(1 + total - 1 - start)
                else:                                 # ... or carried from the last step
                    index.append(0)
            frames = self._step(piece, index)
            # mel frames start + j - vocoder_lookahead must stay below total
            keep = max(0, total - (start - s.vocoder_lookahead) - (n - frames.shape[-1]))
            frames = frames[:, : max(0, min(frames.shape[-1], keep))]
            if frames.shape[-1]:
                pieces.append(frames)
        self._pending = np.zeros((self.n_mels, 0), dtype=np.float32)
        out = [self._synth(np.concatenate(pieces, axis=-1))] if pieces else []
        out.append(self.istft.flush())
        return torch.cat(out)

    def state_frames(self) -> int:
        """Frames held between pushes (the states and the pending frames)."""
        return self.spec.state_frames() + self._pending.shape[-1]


def _parse_spec(metadata: Mapping[str, str]) -> StepSpec:
    states = tuple(StateSpec.from_dict(d) for d in json.loads(metadata[META_STATES]))
    return StepSpec(mel_config=MelConfig.from_dict(json.loads(metadata[ob.META_MEL_CONFIG])),
                    generator_lookahead=int(metadata[META_GEN_LOOKAHEAD]),
                    vocoder_lookahead=int(metadata[META_VOC_LOOKAHEAD]),
                    states=states, step_frames=int(metadata[META_STEP_FRAMES]))


class OnnxStreamStep:
    """An exported stream-step graph run by onnxruntime (CPUExecutionProvider).

    ``threads``: intra-op threads (default onnxruntime's choice); ``spinning=False`` lets
    idle workers sleep (cores shared with other jobs). Denormal numbers are flushed to zero,
    as the PyTorch stream does (``session.set_denormal_as_zero``): near-silence must not
    cost 10x. ``mel_config``: when given, the graph's must equal it
    (:class:`~voiceconv.errors.MelConfigMismatch` naming the differing fields).
    Calling it runs one step: inputs by name -> outputs by name.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None,
                 mel_config: MelConfig | None = None, spinning: bool = True) -> None:
        self.path = Path(path)
        self.threads = threads
        self.session, self.metadata = ob.open_session(self.path, threads, spinning, denormal_as_zero=True)
        fmt = self.metadata.get(ob.META_FORMAT)
        if fmt == ob.FORMAT:
            raise FileProblem(self.path, "an offline mel -> waveform graph (voiceconv-export), not a stream "
                                         "step; export one with voiceconv-export-stream")
        missing = [key for key in _REQUIRED if key not in self.metadata]
        if missing:
            raise FileProblem(self.path, f"not a voiceconv stream-step graph (metadata {missing} missing)")
        if fmt != FORMAT:
            raise FileProblem(self.path, f"graph format {fmt!r}, this voiceconv reads {FORMAT!r}")
        try:
            self.spec = _parse_spec(self.metadata)
            self.speakers: dict[str, str] = {str(k): str(v) for k, v in
                                             json.loads(self.metadata[ob.META_SPEAKERS]).items()}
        except (ConfigError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise FileProblem(self.path, f"unusable voiceconv metadata: {exc}") from None
        self.mel_config = self.spec.mel_config
        self.direction = self.metadata[ob.META_DIRECTION]
        want_in = [INPUT_MEL, INPUT_START, INPUT_INDEX] + [s.name for s in self.spec.states]
        want_out = [OUTPUT_FRAMES] + [s.name + NEXT for s in self.spec.states]
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != want_in or got_out != want_out:
            raise FileProblem(self.path, "the graph's inputs/outputs do not match its metadata "
                                         f"({len(got_in)} inputs, {len(got_out)} outputs)")
        self._outputs = got_out
        if mel_config is not None:
            mel_config.check_same(self.mel_config, what=f"ONNX graph {self.path}")

    def check_converter(self, direction: str, stats: Mapping[str, SpeakerStats],
                        speakers: Mapping[str, str], checkpoint: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`ConfigError` unless the graph was exported for this direction,
        these speakers and statistics (``checkpoint`` only names the file in the message)."""
        where = f" of {checkpoint}" if checkpoint is not None else ""
        if direction != self.direction:
            raise ConfigError(f"ONNX graph {self.path} converts {self.direction}, not {direction}")
        mine = {str(k): str(v) for k, v in speakers.items()}
        if mine != self.speakers:
            raise ConfigError(f"ONNX graph {self.path} was exported for speakers {self.speakers}, "
                              f"not the speakers {mine}{where}")
        sha = self.metadata.get(ob.META_STATS_SHA256)
        if sha is not None and sha != ob.stats_fingerprint(stats):
            raise ConfigError(f"ONNX graph {self.path} normalises with other speaker statistics than those{where} "
                              "(exported from another training run?)")

    def describe(self) -> str:
        src = self.metadata.get(ob.META_SOURCE_SPEAKER, "?")
        tgt = self.metadata.get(ob.META_TARGET_SPEAKER, "?")
        return f"{self.path} ({self.direction}: {src} -> {tgt})"

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.session.run(self._outputs, feeds), strict=True))


__all__ = [
    "FORMAT",
    "STEP_FRAMES",
    "OnnxStreamStep",
    "StateSpec",
    "StepFn",
    "StepSpec",
    "StepStream",
]
