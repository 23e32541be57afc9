"""ONNX export of one step of the exact streaming mode: :func:`export_stream_onnx`.

One graph per (checkpoint, direction, streaming Vocos): 4 new raw source log-mel frames and
every piece of the stream's state in, 4 windowed iSTFT frames and the new state out. The
graph's boundary, inputs, outputs and the Python around it are described in
:mod:`voiceconv.conversion.onnx_stream`; :class:`StreamStep` is the same computation as a
PyTorch module (the converter's own generator and Vocos, their causal convolutions fed the
state tensors instead of keeping them).

Only a streaming generator (``lookahead`` set, ``maskcyclegan_vc_stream_small``) and a
streaming Vocos (``lookahead`` set, ``vocos_stream_small``) qualify; anything else is a
:class:`~voiceconv.errors.ConfigError`, as for ``StreamingConverter(mode="exact")``.

Choices, and why:

* **Exporter**: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``). Every
  shape of a step is fixed (4 frames; each state's frame count does not depend on the
  stream), so tracing loses nothing, and it takes about a second where ``torch.export``
  + onnxscript takes tens of seconds (the export runs in the tests). The data-dependent
  parts (where the Vocos' stream starts, which frames it reads at the end) are tensor
  inputs (``voc_start``, ``voc_index``), not Python branches, so the trace keeps them.
  The phase's running sum is cast to float64 in the module itself, so the graph's
  ``CumSum``, ``Add`` and the ``2 pi`` wrap run in float64 as PyTorch's do.
* **State is explicit**: each causal convolution's ``forward`` is replaced, on the step's
  own copy of the nets, by one that reads its carried frames from the step's inputs and
  writes the new ones to its outputs (the arithmetic of
  :class:`~voiceconv.models.streaming.CausalConv1d` inside ``streaming()``). The export
  checks that every state input is consumed by the graph (no constant-folded zeros).
* **Warm-up with fixed shapes**: the PyTorch stream drops the generator's first
  ``lookahead`` outputs and the Vocos' first ``lookahead`` backbone outputs. Here the
  generator's warm-up outputs still enter the Vocos' convolutions, but masked to zeros
  (``voc_start``): exactly the zeros a fresh stream starts with. The head's warm-up frames
  are masked out of the phase sum (``keep`` of
  :meth:`~voiceconv.vocoders.vocos.VocosGenerator.head_spectrum`) and dropped by Python.
* **Parity is part of the export**: a signal (``check_audio``, brought to the training
  level as ``--gain auto`` does, or a synthetic harmonic one) is streamed through the
  written graph (onnxruntime, random push sizes) and through the PyTorch
  ``StreamingConverter`` in exact mode (block pushes); above ``tolerance`` (1e-4, max
  absolute sample difference) :class:`~voiceconv.errors.ExportParityError` and nothing is
  written. As for the offline graph the stream is cut to ``check_frames`` frames: the
  integrated phase sums float32 differences of the two implementations' products (~1e-7
  rad per frame) into a slow, inaudible drift of the phase offset. Measured with the demo's
  ``maskcyclegan_vc_stream_small`` + ``vocos_stream_small`` on 50 s of the corpus' speech:
  max |diff| 1.4e-5, 3.7e-5, 1.5e-4, 2.7e-4, 2.9e-4 after 2, 5, 10, 20, 40 s, while the
  log-mels of the two outputs differ by 4e-5 on average (their std 2.1); the PyTorch step
  module itself (the graph's computation, run eagerly) matches the PyTorch stream to 5e-8.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voiceconv.audio.io import load_audio
from voiceconv.audio.stats import SpeakerStats
from voiceconv.conversion import onnx_backend as ob
from voiceconv.conversion import onnx_stream as os_
from voiceconv.conversion.converter import DIRECTIONS, VoiceConverter
from voiceconv.conversion.export import (
    CHECK_FRAMES,
    DEFAULT_OPSET,
    MIN_OPSET,
    PARITY_TOLERANCE,
    _check_output,
    _max_opset,
    _quiet_exporter,
    _require_export_dependencies,
    _set_metadata,
    _write_model,
    synthetic_speech,
)
from voiceconv.conversion.streaming import DEFAULT_BLOCK_MS, StreamingConverter
from voiceconv.errors import ConfigError, ExportParityError, OutputExists
from voiceconv.models.streaming import _CausalConv, streaming
from voiceconv.models.vc.cyclegan_vc2 import Generator212
from voiceconv.utils.atomic import DestinationExists, atomic_path
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.vocos import VocosGenerator

#: seed of the parity check's random push sizes
PARITY_SEED = 0


class _StateIO:
    """The states of one step call: read by the causal convolutions, written back."""

    def __init__(self) -> None:
        self.states: dict[str, Tensor] = {}
        self.new: dict[str, Tensor] = {}
        self.keep: dict[int, Tensor] = {}  # Vocos: context -> (context + frames,) bool mask


def _step_conv(conv: nn.Module, io: _StateIO, name: str, masked: bool, x: Tensor) -> Tensor:
    """A causal convolution on ``x`` after its carried frames ``io.states[name]`` (the
    arithmetic of ``_CausalConv._causal_forward`` in streaming mode; a convolution that
    carries no frames, kernel 1 along time, has no state); frames the mask marks as not
    yet in the stream read as zeros."""
    state = io.states.get(name)
    buf = x if state is None else torch.cat([state, x], dim=-1)
    if masked:
        buf = torch.where(io.keep[conv.context], buf, torch.zeros_like(buf))
    span, stride = conv.context + 1, conv.time_stride
    n_out = (buf.shape[-1] - span) // stride + 1
    base = nn.Conv1d if isinstance(conv, nn.Conv1d) else nn.Conv2d
    y = base.forward(conv, buf[..., : (n_out - 1) * stride + span])
    if state is not None:
        io.new[name] = buf[..., n_out * stride :]
    return y


class StreamStep(nn.Module):
    """One step of the exact streaming mode as a module (see :mod:`~voiceconv.conversion.onnx_stream`).

    ``forward(log_mel, voc_start, voc_index, *states) -> (frames, *new_states)``, states in
    the order of :attr:`spec`. Holds its own copies of the generator and the Vocos (their
    causal convolutions' ``forward`` is replaced to read and write the step's states).
    """

    def __init__(self, generator: Generator212, vocos: VocosGenerator, source: SpeakerStats,
                 target: SpeakerStats) -> None:
        super().__init__()
        if getattr(generator, "lookahead", None) is None:
            raise ConfigError("the ONNX stream step needs a generator trained to stream "
                              "(model=maskcyclegan_vc_stream_small)")
        if not isinstance(vocos, VocosGenerator) or vocos.lookahead is None:
            raise ConfigError("the ONNX stream step needs a Vocos trained to stream (vocoder "
                              "model=vocos_stream_small)")
        if generator.n_mels != vocos.mel_config.n_mels:
            raise ConfigError(f"generator ({generator.n_mels} mels) and Vocos ({vocos.mel_config.n_mels}) differ")
        self.gen = _fresh_copy(generator)
        self.voc = _fresh_copy(vocos)
        self.mel_config = vocos.mel_config
        self.n_mels = generator.n_mels
        self.gen_lookahead = int(generator.lookahead)
        self.voc_lookahead = int(vocos.lookahead)
        self.integrated = self.voc.phase_mode == "integrated"
        for role, stats in (("source", source), ("target", target)):
            self.register_buffer(f"{role}_mean", torch.tensor(stats.mean[:, None], dtype=torch.float32))
            self.register_buffer(f"{role}_scale", torch.tensor(stats.scale[:, None], dtype=torch.float32))
        shapes = self._carried_shapes()
        self._io = _StateIO()
        self._convs: list[tuple[str, nn.Module]] = []
        for prefix, net, masked in (("gen", self.gen, False), ("voc", self.voc, True)):
            for mod_name, m in net.named_modules():
                if isinstance(m, _CausalConv):
                    name = f"{prefix}.{mod_name}"
                    m.forward = functools.partial(_step_conv, m, self._io, name, masked)
                    self._convs.append((name, m))
        states = [os_.StateSpec(name, shapes[name], "float32") for name, _ in self._convs if shapes[name][-1]]
        states.append(os_.StateSpec("voc.last", (1, self.n_mels, 1), "float32"))
        if self.voc_lookahead:
            states.append(os_.StateSpec("voc.head_mels", (1, self.n_mels, self.voc_lookahead), "float32"))
        if self.integrated:
            states.append(os_.StateSpec("voc.phase", (1, self.voc.n_freq), "float64"))
        #: the step's states, in input order
        self.spec = os_.StepSpec(self.mel_config, self.gen_lookahead, self.voc_lookahead, tuple(states))

    def _carried_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each causal convolution's carried frames after two steps of the PyTorch stream
        (``streaming()``): the same after every step, as a step is a multiple of every stride."""
        x = torch.zeros(1, self.n_mels, os_.STEP_FRAMES)
        shapes: dict[str, tuple[int, ...]] = {}
        with torch.no_grad():
            for prefix, net, run in (("gen", self.gen, lambda: self._gen_forward(x)),
                                     ("voc", self.voc, lambda: self.voc.backbone(x))):
                with streaming(net):
                    run()
                    first = {n: tuple(m._state.shape) for n, m in net.named_modules() if isinstance(m, _CausalConv)}
                    run()
                    for n, m in net.named_modules():
                        if isinstance(m, _CausalConv):
                            shape = tuple(m._state.shape)
                            if shape != first[n] or shape[-1] != m.context:
                                raise ConfigError(f"the ONNX stream step: {prefix}.{n} carries {shape[-1]} "
                                                  f"frames, expected a steady {m.context}")
                            shapes[f"{prefix}.{n}"] = shape
        return shapes

    # ------------------------------------------------------------------ the step
    def _gen_forward(self, x: Tensor) -> Tensor:
        return self.gen.body(self.gen.prepare_input(x))

    def _keep(self, voc_start: Tensor) -> dict[int, Tensor]:
        """Per context: which of ``context + 4`` Vocos input positions exist (``>= 0``)."""
        n = os_.STEP_FRAMES
        out = {}
        for name, m in self._convs:
            if name.startswith("voc.") and m.context not in out:
                pos = torch.arange(m.context + n, dtype=torch.int64) - m.context + voc_start
                out[m.context] = pos >= 0
        return out

    def forward(self, log_mel: Tensor, voc_start: Tensor, voc_index: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        specs = self.spec.states
        if len(states) != len(specs):
            raise ConfigError(f"StreamStep: expected {len(specs)} states, got {len(states)}")
        given = {s.name: t for s, t in zip(specs, states, strict=True)}
        n = os_.STEP_FRAMES
        self._io.states, self._io.new = given, {}
        self._io.keep = self._keep(voc_start)
        # generator on the normalised frames, de-normalised to the target's scale
        y = self._gen_forward((log_mel - self.source_mean) / self.source_scale)
        y = y * self.target_scale + self.target_mean
        # the Vocos' input: [previous input frame, body outputs] picked by voc_index
        v = torch.cat([given["voc.last"], y], dim=-1).index_select(-1, voc_index)
        new: dict[str, Tensor] = {"voc.last": v[..., -1:]}
        features = self.voc.backbone(v)
        if self.voc_lookahead:
            both = torch.cat([given["voc.head_mels"], v], dim=-1)
            head_mel, new["voc.head_mels"] = both[..., :n], both[..., n:]
        else:
            head_mel = v
        # head frame j is mel frame voc_start + j - lookahead: warm-up ones add no phase
        keep = (torch.arange(n, dtype=torch.int64) + voc_start - self.voc_lookahead >= 0).to(torch.float32)
        phase_start = given.get("voc.phase")
        log_mag, phase, running = self.voc.head_spectrum(features, head_mel, phase_start, keep)
        if running is not None:
            new["voc.phase"] = torch.remainder(running, 2 * math.pi)
        mag = torch.exp(log_mag.float())
        frames = torch.matmul(self.voc.istft.basis, torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=1))
        new.update(self._io.new)
        self._io.states, self._io.new = {}, {}
        return (frames, *(new[s.name] for s in specs))

    def example_inputs(self) -> tuple[Tensor, ...]:
        """Inputs of a first step (zeros; ``voc_start`` at the generator's warm-up)."""
        n = os_.STEP_FRAMES
        states = [torch.from_numpy(s.zeros()) for s in self.spec.states]
        return (torch.zeros(1, self.n_mels, n), torch.tensor([-self.gen_lookahead], dtype=torch.int64),
                torch.arange(1, n + 1, dtype=torch.int64), *states)

    def step_fn(self) -> os_.StepFn:
        """This module as a step function of NumPy arrays (for :class:`~voiceconv.conversion.onnx_stream.StepStream`)."""
        names = [os_.INPUT_MEL, os_.INPUT_START, os_.INPUT_INDEX] + [s.name for s in self.spec.states]
        outs = [os_.OUTPUT_FRAMES] + [s.name + os_.NEXT for s in self.spec.states]

        @torch.inference_mode()
        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            got = self(*(torch.from_numpy(np.asarray(feeds[k])) for k in names))
            return {k: t.numpy() for k, t in zip(outs, got, strict=True)}

        return run


def _fresh_copy(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net).eval()


@dataclass(frozen=True)
class StreamExportReport:
    """What :func:`export_stream_onnx` wrote and how closely onnxruntime matched PyTorch."""

    path: Path
    checkpoint: Path
    vocoder: Path
    direction: str
    source_speaker: str
    target_speaker: str
    opset: int
    block_frames: int
    latency_ms: float
    states: int
    state_values: int
    parity_input: str
    parity_samples: int
    max_abs_diff: float
    reference_peak: float
    tolerance: float
    export_seconds: float
    size_bytes: int

    def summary(self) -> str:
        """A few lines for the command line (the parity figure first)."""
        return (
            f"parity: max |onnxruntime stream - pytorch stream| = {self.max_abs_diff:.3g} "
            f"(tolerance {self.tolerance:g}; PyTorch peak {self.reference_peak:.3f}) on {self.parity_samples} "
            f"samples of {self.parity_input}\n"
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {self.opset}, {self.direction}: "
            f"{self.source_speaker} -> {self.target_speaker}; one step = {os_.STEP_FRAMES} frames, "
            f"{self.states} state tensors ({self.state_values} values); at block {self.block_frames} frames "
            f"the stream's latency is {self.latency_ms:.1f} ms; exported in {self.export_seconds:.1f} s)"
        )


def _metadata(vc: VoiceConverter, step: StreamStep, direction: str, checkpoint: Path, vocoder: Path,
              block_frames: int) -> dict[str, str]:
    src, tgt = vc.roles(direction)
    cfg, n = vc.mel_config, os_.STEP_FRAMES
    return {
        ob.META_FORMAT: os_.FORMAT,
        ob.META_MEL_CONFIG: json.dumps(cfg.to_dict(), sort_keys=True),
        ob.META_DIRECTION: direction,
        ob.META_SPEAKERS: json.dumps(vc.speakers, sort_keys=True),
        ob.META_SOURCE_SPEAKER: vc.speakers.get(src, src),
        ob.META_TARGET_SPEAKER: vc.speakers.get(tgt, tgt),
        ob.META_STATS_SHA256: ob.stats_fingerprint(vc.stats),
        ob.META_PREPARATION: json.dumps(vc.preparation.to_dict(), sort_keys=True),
        ob.META_CHECKPOINT: str(checkpoint.resolve()),
        ob.META_VOCODER: str(vocoder.resolve()),
        ob.META_INPUT: (f"{os_.INPUT_MEL}: float32 (1, {cfg.n_mels}, {n}): the next {n} natural-log mel frames "
                        f"of the source speaker ({vc.speakers.get(src, src)}) in its own scale; "
                        f"{os_.INPUT_START}: int64 (1,): the Vocos position of this step's first frame; "
                        f"{os_.INPUT_INDEX}: int64 ({n},): the Vocos input frames; then the states "
                        f"({META_STATES_NOTE})"),
        ob.META_OUTPUT: (f"{os_.OUTPUT_FRAMES}: float32 (1, {cfg.n_fft}, {n}): windowed iSTFT frames to "
                         f"overlap-add at hop {cfg.hop_length}; then each state's next value (<name>{os_.NEXT})"),
        ob.META_MIN_FRAMES: str(n),
        ob.META_EXPORTER: f"torch.onnx.export (TorchScript, dynamo=False) {torch.__version__}",
        os_.META_STEP_FRAMES: str(n),
        os_.META_BLOCK_FRAMES: str(block_frames),
        os_.META_GEN_LOOKAHEAD: str(step.gen_lookahead),
        os_.META_VOC_LOOKAHEAD: str(step.voc_lookahead),
        os_.META_STATES: json.dumps([s.to_dict() for s in step.spec.states]),
    }


META_STATES_NOTE = "names, shapes and dtypes in voiceconv.states_json; a stream starts from zeros"


def export_step(step: StreamStep, opset: int = DEFAULT_OPSET):  # -> onnx.ModelProto
    """The ONNX model of one ``step`` (TorchScript exporter, fixed shapes); refuses a graph
    in which a state input is missing or unused (which would mean it was folded away)."""
    import io

    import onnx

    specs = step.spec.states
    inputs = [os_.INPUT_MEL, os_.INPUT_START, os_.INPUT_INDEX] + [s.name for s in specs]
    outputs = [os_.OUTPUT_FRAMES] + [s.name + os_.NEXT for s in specs]
    buf = io.BytesIO()
    with torch.no_grad(), _quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # the shape checks, fixed here
        torch.onnx.export(step, step.example_inputs(), buf, dynamo=False, input_names=inputs,
                          output_names=outputs, opset_version=int(opset), do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    graph_inputs = [i.name for i in model.graph.input]
    used = {name for node in model.graph.node for name in node.input}
    unused = [name for name in inputs if name not in graph_inputs or name not in used]
    if unused or [o.name for o in model.graph.output] != outputs:
        raise ConfigError(f"the exported step does not carry all of its state (unused or missing: {unused})")
    return model


def _parity_signal(vc: VoiceConverter, sc: StreamingConverter, check_audio: str | os.PathLike[str] | None,
                   check_frames: int) -> tuple[np.ndarray, str]:
    """The parity stream: ``check_audio`` at the training level (as ``--gain auto``), or the
    synthetic harmonic signal; at most ``check_frames`` hops of it."""
    from voiceconv.conversion.stream_runner import auto_gain

    if check_audio is not None:
        wav, _ = load_audio(Path(check_audio), vc.sample_rate, min_samples=vc.mel_config.n_fft)
        wav = (wav * auto_gain(sc, wav)).astype(np.float32)
        what = str(check_audio)
    else:
        wav, what = synthetic_speech(vc.sample_rate), "a synthetic harmonic signal"
    return wav[: check_frames * vc.mel_config.hop_length], what


def _stream(sc: StreamingConverter, wav: np.ndarray, sizes: list[int] | None) -> np.ndarray:
    """``wav`` pushed in pieces of ``sizes`` (cycled; None: blocks), then flushed."""
    sc.reset()
    out, i, k = [], 0, 0
    while i < wav.shape[0]:
        n = sc.block_samples if sizes is None else sizes[k % len(sizes)]
        out.append(sc.push(wav[i : i + n]))
        i, k = i + n, k + 1
    out.append(sc.flush())
    return np.concatenate(out)


def export_stream_onnx(
    checkpoint: str | os.PathLike[str],
    direction: str,
    vocoder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    block_ms: float = DEFAULT_BLOCK_MS,
    check_audio: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    tolerance: float = PARITY_TOLERANCE,
    check_frames: int = CHECK_FRAMES,
    opset: int = DEFAULT_OPSET,
) -> StreamExportReport:
    """Export one step of ``checkpoint``'s exact streaming mode (``direction``, with the
    streaming Vocos ``vocoder``) to ``out`` (.onnx), checked against the PyTorch stream.

    ``block_ms`` is the converter's block for the parity stream (recorded in the metadata;
    the graph itself steps 4 frames, any block runs it block_frames / 4 times). Raises
    :class:`ConfigError` for a generator or Vocos that does not stream, a bad direction or
    opset, or a missing ``onnx`` extra; :class:`~voiceconv.errors.MelConfigMismatch` when the
    Vocos was trained on other features; :class:`OutputExists`; :class:`ExportParityError`
    above ``tolerance`` (then nothing is written).
    """
    started = time.perf_counter()
    checkpoint, out, vocoder_path = Path(checkpoint), Path(out), Path(vocoder)
    _require_export_dependencies()
    if not MIN_OPSET <= int(opset) <= _max_opset():
        raise ConfigError(f"opset must be in {MIN_OPSET}..{_max_opset()}, got {opset}")
    if check_frames < 4 * os_.STEP_FRAMES:
        raise ConfigError(f"check_frames must be >= {4 * os_.STEP_FRAMES}, got {check_frames}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
    _check_output(out, overwrite)
    vc = VoiceConverter.from_checkpoint(checkpoint, vocoder="griffinlim", precision="fp32")
    if vc.model is None:
        raise ConfigError("export_stream_onnx: the checkpoint has no generator")
    net = getattr(load_vocoder(vocoder_path, vc.mel_config, "cpu"), "net", None)
    if not isinstance(net, VocosGenerator):
        raise ConfigError(f"{vocoder_path}: the ONNX stream step needs a Vocos trained to stream "
                          f"(model=vocos_stream_small), this vocoder is a {type(net).__name__}")
    src, tgt = vc.roles(direction)
    generator = vc.model.g_ab if direction == "a2b" else vc.model.g_ba
    if getattr(generator, "lookahead", None) is None:
        raise ConfigError(f"{checkpoint}: the ONNX stream step needs a generator trained to stream "
                          "(model=maskcyclegan_vc_stream_small); an offline one streams only in window mode")
    # the PyTorch reference (it also refuses a Vocos that does not stream or has other features)
    sc = StreamingConverter(vc.model, vc.mel_config, vc.stats, net, direction, block_ms=block_ms,
                            mode="exact", speakers=vc.speakers, preparation=vc.preparation)
    step = StreamStep(generator, net, vc.stats[src], vc.stats[tgt])
    model = export_step(step, opset)
    _set_metadata(model, _metadata(vc, step, direction, checkpoint, vocoder_path, sc.block_frames))
    wav, what = _parity_signal(vc, sc, check_audio, check_frames)
    try:
        with atomic_path(out, overwrite=overwrite) as tmp:
            _write_model(model, tmp)
            ref = _stream(sc, wav, None)
            graph = StreamingConverter(vc.model, vc.mel_config, vc.stats, net, direction, block_ms=block_ms,
                                       mode="exact", speakers=vc.speakers, backend="onnx", onnx_path=tmp)
            sizes = [int(k) for k in np.random.default_rng(PARITY_SEED).integers(0, 2 * sc.block_samples + 1, 64)]
            got = _stream(graph, wav, sizes)
            if got.shape != ref.shape or graph.latency_samples != sc.latency_samples:
                raise ExportParityError(out, f"the ONNX stream gave {got.shape[0]} samples (latency "
                                             f"{graph.latency_samples}), PyTorch {ref.shape[0]} ({sc.latency_samples}); "
                                             "nothing written")
            worst = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
            if not worst <= tolerance:
                raise ExportParityError(
                    out, f"the ONNX and PyTorch streams differ by {worst:.3g} (max |diff| over {ref.shape[0]} "
                         f"samples of {what}; tolerance {tolerance:g}); nothing written", max_abs_diff=worst)
            del graph
            _set_metadata(model, {ob.META_PARITY: f"{worst:.6g}"})
            _write_model(model, tmp)
    except DestinationExists:
        raise OutputExists(out, "appeared while exporting (kept; use --overwrite / overwrite=True to replace it)") from None
    return StreamExportReport(
        path=out, checkpoint=checkpoint, vocoder=vocoder_path, direction=direction,
        source_speaker=vc.speakers.get(src, src), target_speaker=vc.speakers.get(tgt, tgt), opset=int(opset),
        block_frames=sc.block_frames, latency_ms=sc.latency_ms, states=len(step.spec.states),
        state_values=sum(int(np.prod(s.shape)) for s in step.spec.states), parity_input=what,
        parity_samples=int(ref.shape[0]), max_abs_diff=worst, reference_peak=float(np.max(np.abs(ref), initial=0.0)),
        tolerance=tolerance, export_seconds=time.perf_counter() - started, size_bytes=out.stat().st_size,
    )


__all__ = ["PARITY_SEED", "StreamExportReport", "StreamStep", "export_step", "export_stream_onnx"]
