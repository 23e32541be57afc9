"""ONNX export of the whole conversion after analysis: :func:`export_onnx`.

One graph per (checkpoint, direction, neural vocoder)::

    log_mel (1, n_mels, T)   natural-log mels of the SOURCE speaker in its own scale,
                             exactly what VoiceConverter.analyse returns for prepared audio
      -> normalise with the source speaker's statistics
      -> generator (model.convert, as VoiceConverter runs it: MaskCycleGAN-VC's all-ones mask)
      -> de-normalise with the target speaker's statistics
      -> neural vocoder (Vocos or HiFi-GAN checkpoint)
    wav (1, T * hop_length)  frame t at sample t * hop_length, at the MelConfig's rate

The preparation (resampling, trimming, level) and the log-mel analysis stay outside
the graph (the converter's, :class:`~voiceconv.conversion.onnx_backend.OnnxMelToWave`),
as do the chunking of long inputs and the restoring of the input's level. Griffin-Lim,
and a HiFi-GAN that runs Griffin-Lim for its source, are refused (:class:`ConfigError`):
an iterative phase search with a random start is not a graph we export.

Choices, and why:

* **Exporter**: ``torch.export`` (non-strict) with a symbolic frame count, then
  ``torch.onnx.export(exported_program, dynamo=True)`` (onnxscript's torchlib). The
  TorchScript exporter (``dynamo=False``) traces Python integers as constants: the
  generator's ``pad = (-T) % 4`` and ``if pad:`` would be frozen at the example's
  length, giving a graph that is wrong (or fails) for lengths with another remainder
  mod 4. ``torch.export`` keeps the frame count symbolic instead. It is called with
  ``prefer_deferred_runtime_asserts_over_guards=True`` because the generator's
  reshapes produce shape guards (e.g. ``min(k, 4k) == k`` for ``k = ceil(T / 4)``)
  that are true for every length but that its solver cannot prove; those become
  runtime assertions (dropped in ONNX) instead of a refusal.
* **Any T >= 5** (:data:`MIN_FRAMES`): the graph itself pads the frame axis to a
  multiple of 4 by repeating the last frame, which is the generator's own replicate
  padding, done with an ``index_select`` of clamped indices (a gather whose length is
  an expression of ``T`` that torch.export can carry; ``F.pad`` by a computed amount
  is not), and crops the generator's output back to ``T`` frames before the vocoder,
  as the PyTorch path does. 5 frames is the generator's own minimum (its instance
  norms need 2 positions after the 4x down-sampling; the converter never analyses
  fewer than ``1 + n_fft // hop`` frames).
* **PyTorch's arithmetic for sums and constants**: PyTorch's CPU ``cumsum`` accumulates
  float32 input in float64 and rounds each output once, ONNX Runtime's ``CumSum`` in
  float32 (0.27 rad apart after 1000 frames of phase advances, measured), so the graph
  casts to float64, sums and casts back. torchlib builds ``scalar_tensor`` (every Python
  number the exporter turns into a tensor) as a float32 constant and casts it, which made
  the float64 ``2 pi`` that wraps Vocos' running phase 6.2831854820 (5e-3 rad off after
  3e4 turns); here the constant is made in its own dtype. (Vocos' integrated phase is
  itself summed in float64 and wrapped, see :mod:`voiceconv.vocoders.vocos`: in float32
  PyTorch's own output moved by 1.7e-4 when its input moved by 1e-7, so no graph could
  match it to 1e-4.)
* **Parity is part of the export**: the graph is written to a temporary file beside
  ``out``, run by onnxruntime (CPUExecutionProvider) on a real mel (``check_audio``,
  prepared and analysed as the converter does) or a synthetic harmonic signal, at two
  lengths with different remainders mod 4 (the dynamic axis at work), and compared with
  PyTorch fp32 running the converter's own stages (``convert_mel`` + the vocoder) on
  the same mel. Above ``tolerance`` (1e-4, max absolute difference of samples in
  [-1, 1]) :class:`~voiceconv.errors.ExportParityError` is raised and nothing is
  written; otherwise the file is renamed into place (atomic). The parity mel is the
  first ``check_frames`` (default 512, about 6 s at 22.05 kHz and hop 256) frames:
  a Vocos with the integrated phase sums every frame's phase advance, so any float32
  difference of the two implementations' matrix products (~5e-7 rad per frame in some
  bins, the same every frame for a steady input) accumulates linearly into a slowly
  drifting, inaudible phase offset. Measured with an untrained ``vocos_small_integrated`` on
  concatenated speech: max |diff| 6.7e-6, 6.0e-6, 7.5e-5, 3.2e-4 after 256, 512, 1024,
  2048 frames; with a HiFi-GAN 7.5e-8 after 2048 frames (no drift).
* **Metadata**: ``metadata_props`` record the MelConfig (JSON), direction, speakers, a
  fingerprint of the speaker statistics, the preparation, the checkpoint and vocoder
  paths, the input/output meaning, the minimum length and the measured parity, so
  that the runtime can refuse a graph made for other features (see
  :mod:`voiceconv.conversion.onnx_backend`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voiceconv.audio.io import load_audio
from voiceconv.audio.stats import SpeakerStats
from voiceconv.conversion import onnx_backend as ob
from voiceconv.conversion.converter import TIME_MULTIPLE, VoiceConverter
from voiceconv.errors import ConfigError, ExportParityError, FileProblem, OutputExists
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.utils.atomic import DestinationExists, atomic_path
from voiceconv.vocoders.base import GRIFFIN_LIM, NeuralVocoder

#: shortest input the graph takes (see the module docstring)
MIN_FRAMES = TIME_MULTIPLE + 1
#: largest max |onnxruntime - PyTorch| accepted, samples in [-1, 1]
PARITY_TOLERANCE = 1e-4
#: ONNX opset written by default (the range the exporter and onnxruntime both handle)
DEFAULT_OPSET = 20
MIN_OPSET = 18
#: length of the synthetic parity signal, seconds
SYNTHETIC_SECONDS = 3.0
#: default length of the parity mel, frames (see the module docstring)
CHECK_FRAMES = 512


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime matched PyTorch."""

    path: Path
    checkpoint: Path
    vocoder: Path
    direction: str
    source_speaker: str
    target_speaker: str
    opset: int
    parity_input: str
    parity_frames: tuple[int, ...]
    max_abs_diff: float
    reference_peak: float
    tolerance: float
    export_seconds: float
    size_bytes: int

    def summary(self) -> str:
        """A few lines for the command line (the parity figure first)."""
        frames = " and ".join(str(n) for n in self.parity_frames)
        return (
            f"parity: max |onnxruntime - pytorch| = {self.max_abs_diff:.3g} "
            f"(tolerance {self.tolerance:g}; PyTorch peak {self.reference_peak:.3f}) on {frames} frames "
            f"of {self.parity_input}\n"
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {self.opset}, "
            f"{self.direction}: {self.source_speaker} -> {self.target_speaker}, "
            f"exported in {self.export_seconds:.1f} s)"
        )


class MelToWave(nn.Module):
    """The graph's computation as a module: ``(1, n_mels, T) -> (1, T * hop)``.

    Built from the converter's own parts (the CycleGAN, whose ``convert`` is called as
    the converter calls it, the statistics, the vocoder network) so that the exported
    graph is the PyTorch path with the time padding written export-friendly.
    """

    def __init__(
        self,
        model: CycleGAN,
        direction: str,
        source: SpeakerStats,
        target: SpeakerStats,
        vocoder_net: nn.Module,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.direction = direction
        self.vocoder_net = vocoder_net.eval()
        for name, stats in (("source", source), ("target", target)):
            self.register_buffer(f"{name}_mean", torch.tensor(stats.mean[:, None], dtype=torch.float32))
            self.register_buffer(f"{name}_scale", torch.tensor(stats.scale[:, None], dtype=torch.float32))

    def forward(self, log_mel: Tensor) -> Tensor:
        frames = log_mel.shape[-1]
        padded = (frames + TIME_MULTIPLE - 1) // TIME_MULTIPLE * TIME_MULTIPLE
        # replicate padding to a multiple of 4 (the generator's own) as a gather
        index = torch.arange(padded, device=log_mel.device).clamp(max=frames - 1)
        x = (log_mel.index_select(-1, index) - self.source_mean) / self.source_scale
        y = self.model.convert(x, self.direction)
        y = y.index_select(-1, torch.arange(frames, device=log_mel.device))
        wav = self.vocoder_net(y * self.target_scale + self.target_mean)
        return wav[:, 0] if wav.dim() == 3 else wav


def synthetic_speech(sample_rate: int, seconds: float = SYNTHETIC_SECONDS, f0: float = 120.0) -> np.ndarray:
    """A gliding harmonic tone (harmonics up to the Nyquist rate) with a syllable-rate
    envelope: a deterministic stand-in for speech when no recording is given."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.4 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    n_harm = max(1, int(0.45 * sample_rate / (f0 * 1.15)))
    y = sum(np.sin(k * phase) / k for k in range(1, n_harm + 1))
    y = y * (0.2 + 0.8 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def _require_export_dependencies() -> None:
    """onnx, onnxscript and onnxruntime importable, else one line naming the extra."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            raise ConfigError(f"{name} is not installed; install the ONNX extra: {ob.EXTRA_HINT}") from None


def _cumsum_float64():  # -> onnxscript trace-only function
    """``aten.cumsum`` as Cast(float64) -> CumSum -> CastLike: PyTorch's CPU accumulation."""
    from onnxscript import DOUBLE
    from onnxscript import opset18 as op

    def cumsum(self, dim, dtype=-1):  # noqa: ANN001, ANN202 (onnxscript traces it)
        return op.CastLike(op.CumSum(op.Cast(self, to=DOUBLE.dtype), dim), self)

    return cumsum


def _scalar_tensor_exact():  # -> onnxscript trace-only function
    """``aten.scalar_tensor`` as a constant made in the requested dtype. torchlib's makes a
    float32 constant and casts it, so a float64 ``2 * pi`` became ``6.2831854820``: off by
    1.7e-7 per turn, 5e-3 rad after 3e4 turns of a running phase."""
    import onnx_ir as ir
    from onnxscript import opset18 as op

    def scalar_tensor(s: float, dtype: int = -1, layout: str = "", device: str = "",
                      pin_memory: bool = False):  # noqa: ANN202 (onnxscript traces it)
        kind = ir.DataType(dtype if dtype != -1 else ir.DataType.FLOAT)
        return op.Constant(value=ir.tensor(np.array(s, dtype=kind.numpy())))

    return scalar_tensor


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's notices (missing torchvision ops, deprecations) for the call."""
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._export")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_program(module: MelToWave, example: Tensor, opset: int = DEFAULT_OPSET):  # -> onnx.ModelProto
    """The ONNX model of ``module`` with a dynamic frame axis (``example``: ``(1, n_mels, T)``)."""
    frames = torch.export.Dim("frames", min=MIN_FRAMES)
    with torch.no_grad(), _quiet_exporter():
        program = torch.export.export(
            module, (example,), dynamic_shapes={"log_mel": {2: frames}}, strict=False,
            prefer_deferred_runtime_asserts_over_guards=True,
        )
        onnx_program = torch.onnx.export(
            program, (example,), dynamo=True, input_names=[ob.INPUT_NAME], output_names=[ob.OUTPUT_NAME],
            opset_version=opset, external_data=False, verbose=False, optimize=True,
            custom_translation_table={torch.ops.aten.cumsum.default: _cumsum_float64(),
                                      torch.ops.aten.scalar_tensor.default: _scalar_tensor_exact()},
        )
    return onnx_program.model_proto


def _second_length(frames: int) -> int | None:
    """A second parity length <= ``frames`` with another remainder mod 4 (None if too short)."""
    for n in (frames // 2 + k for k in range(TIME_MULTIPLE)):
        if MIN_FRAMES <= n < frames and n % TIME_MULTIPLE != frames % TIME_MULTIPLE:
            return n
    n = frames - 1
    return n if n >= MIN_FRAMES else None


def parity_mel(
    vc: VoiceConverter, check_audio: str | os.PathLike[str] | None, max_frames: int = CHECK_FRAMES
) -> tuple[Tensor, str]:
    """(log-mel ``(n_mels, T)``, description) for the parity check: ``check_audio`` loaded,
    prepared and analysed as the converter does, or :func:`synthetic_speech`; its first
    ``max_frames`` frames (at most ``vc.chunk_frames``, the converter's one-window pass)."""
    if check_audio is not None:
        path = Path(check_audio)
        wav, _ = load_audio(path, vc.sample_rate, min_samples=vc.mel_config.n_fft)
        prepared = vc.prepare_for_model(wav, path)
        what = str(path)
    else:
        prepared = vc.prepare_for_model(synthetic_speech(vc.sample_rate), None)
        what = f"a synthetic harmonic signal ({SYNTHETIC_SECONDS:g} s)"
    mel = vc.analyse(prepared.wav)
    if mel.shape[-1] < MIN_FRAMES:
        raise FileProblem(check_audio, f"too short for the parity check: {mel.shape[-1]} frames, need {MIN_FRAMES}")
    return mel[:, : min(max_frames, vc.chunk_frames)], what


@torch.inference_mode()
def torch_mel_to_wave(vc: VoiceConverter, log_mel: Tensor, direction: str) -> np.ndarray:
    """The reference: the converter's PyTorch stages on ``log_mel`` ``(n_mels, T)``,
    ``convert_mel`` then the vocoder on the whole mel -> ``(T * hop,)`` float32."""
    converted = vc.convert_mel(log_mel, direction)
    assert isinstance(converted, Tensor)
    return vc.vocoder(converted[None])[0].float().cpu().numpy()


def _check_vocoder_spec(vocoder: str | os.PathLike[str]) -> Path:
    if isinstance(vocoder, str) and vocoder.strip().lower().partition(":")[0] == GRIFFIN_LIM:
        raise ConfigError(
            "Griffin-Lim cannot be exported to ONNX (an iterative phase search from a random start, not a "
            "graph); name a neural vocoder checkpoint (Vocos or HiFi-GAN)"
        )
    return Path(vocoder)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != ".onnx":
        raise FileProblem(out, "the ONNX graph's file name must end in .onnx")
    if out.is_dir():
        raise FileProblem(out, "output path is a directory")
    if out.exists() and not overwrite:
        raise OutputExists(out, "exists already (kept; use --overwrite / overwrite=True to replace it)")


def _metadata(vc: VoiceConverter, direction: str, checkpoint: Path, vocoder: Path) -> dict[str, str]:
    src, tgt = vc.roles(direction)
    hop = vc.mel_config.hop_length
    return {
        ob.META_FORMAT: ob.FORMAT,
        ob.META_MEL_CONFIG: json.dumps(vc.mel_config.to_dict(), sort_keys=True),
        ob.META_DIRECTION: direction,
        ob.META_SPEAKERS: json.dumps(vc.speakers, sort_keys=True),
        ob.META_SOURCE_SPEAKER: vc.speakers.get(src, src),
        ob.META_TARGET_SPEAKER: vc.speakers.get(tgt, tgt),
        ob.META_STATS_SHA256: ob.stats_fingerprint(vc.stats),
        ob.META_PREPARATION: json.dumps(vc.preparation.to_dict(), sort_keys=True),
        ob.META_CHECKPOINT: str(checkpoint.resolve()),
        ob.META_VOCODER: str(vocoder.resolve()),
        ob.META_INPUT: (f"{ob.INPUT_NAME}: float32 (1, {vc.mel_config.n_mels}, T), T >= {MIN_FRAMES}: natural-log "
                        f"mels of the source speaker ({vc.speakers.get(src, src)}) in its own scale, "
                        "as VoiceConverter.analyse returns them for prepared audio"),
        ob.META_OUTPUT: (f"{ob.OUTPUT_NAME}: float32 (1, T * {hop}): the converted waveform at "
                         f"{vc.sample_rate} Hz, frame t at sample t * {hop} (not peak-limited)"),
        ob.META_MIN_FRAMES: str(MIN_FRAMES),
        ob.META_EXPORTER: f"torch.export + torch.onnx (dynamo) {torch.__version__}",
    }


def _set_metadata(model, metadata: dict[str, str]) -> None:  # noqa: ANN001 (onnx.ModelProto)
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _write_model(model, path: Path) -> None:  # noqa: ANN001 (onnx.ModelProto)
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
        fh.flush()
        os.fsync(fh.fileno())


def export_onnx(
    checkpoint: str | os.PathLike[str],
    direction: str,
    vocoder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    check_audio: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    tolerance: float = PARITY_TOLERANCE,
    check_frames: int = CHECK_FRAMES,
) -> ExportReport:
    """Export ``checkpoint``'s ``direction`` with the neural ``vocoder`` to ``out`` (.onnx).

    See the module docstring for the graph, the exporter and the parity check
    (``check_frames``: length of the parity mel; a second length is its half). Raises
    :class:`ConfigError` for Griffin-Lim (or a HiFi-GAN with a Griffin-Lim source), a bad
    direction or opset, or a missing ``onnx`` extra; :class:`~voiceconv.errors.CheckpointError`
    / :class:`~voiceconv.errors.MelConfigMismatch` as ``VoiceConverter.from_checkpoint``
    does; :class:`OutputExists` for an existing ``out`` unless ``overwrite``;
    :class:`ExportParityError` when onnxruntime and PyTorch differ by more than
    ``tolerance`` (then nothing is written).
    """
    started = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out)
    vocoder_path = _check_vocoder_spec(vocoder)
    _require_export_dependencies()
    if not MIN_OPSET <= int(opset) <= _max_opset():
        raise ConfigError(f"opset must be in {MIN_OPSET}..{_max_opset()}, got {opset}")
    if check_frames < MIN_FRAMES:
        raise ConfigError(f"check_frames must be >= {MIN_FRAMES}, got {check_frames}")
    _check_output(out, overwrite)
    vc = VoiceConverter.from_checkpoint(checkpoint, vocoder=vocoder_path, precision="fp32", device="cpu")
    src, tgt = vc.roles(direction)
    if vc.model is None:
        raise ConfigError("export_onnx: the converter has no generator")
    if not isinstance(vc.vocoder, NeuralVocoder):
        raise ConfigError(f"vocoder {vocoder_path}: not a neural vocoder network; cannot export it")
    blocker = getattr(vc.vocoder.net, "export_blocker", None)
    if blocker:
        raise ConfigError(f"vocoder {vocoder_path}: {blocker}")
    mel, what = parity_mel(vc, check_audio, check_frames)
    module = MelToWave(vc.model, direction, vc.stats[src], vc.stats[tgt], vc.vocoder.net)
    model = export_program(module, mel[None], int(opset))
    _set_metadata(model, _metadata(vc, direction, checkpoint, vocoder_path))
    lengths = [mel.shape[-1]] + [n for n in (_second_length(mel.shape[-1]),) if n is not None]
    try:
        worst, peak = _check_and_publish(model, out, overwrite, vc, mel, lengths, direction, what, tolerance)
    except DestinationExists:
        raise OutputExists(out, "appeared while exporting (kept; use --overwrite / overwrite=True to replace it)") from None
    return ExportReport(
        path=out, checkpoint=checkpoint, vocoder=vocoder_path, direction=direction,
        source_speaker=vc.speakers.get(src, src), target_speaker=vc.speakers.get(tgt, tgt),
        opset=int(opset), parity_input=what, parity_frames=tuple(lengths), max_abs_diff=worst,
        reference_peak=peak, tolerance=tolerance, export_seconds=time.perf_counter() - started,
        size_bytes=out.stat().st_size,
    )


def _check_and_publish(
    model,  # noqa: ANN001 (onnx.ModelProto)
    out: Path,
    overwrite: bool,
    vc: VoiceConverter,
    mel: Tensor,
    lengths: list[int],
    direction: str,
    what: str,
    tolerance: float,
) -> tuple[float, float]:
    """Write ``model`` beside ``out``, compare onnxruntime with PyTorch on ``mel`` cut to each
    of ``lengths``, and rename it onto ``out`` only within ``tolerance``; (max |diff|, peak)."""
    with atomic_path(out, overwrite=overwrite) as tmp:
        _write_model(model, tmp)
        runtime = ob.OnnxMelToWave(tmp, mel_config=vc.mel_config)
        worst, peak = 0.0, 0.0
        for n in lengths:
            ref = torch_mel_to_wave(vc, mel[:, :n], direction)
            got = runtime(mel[:, :n].cpu().numpy())
            if got.shape != ref.shape:
                raise ExportParityError(out, f"onnxruntime gave {got.shape} samples for {n} frames, "
                                             f"PyTorch {ref.shape}; nothing written")
            diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
            worst = diff if math.isnan(diff) else max(worst, diff)
            peak = max(peak, float(np.max(np.abs(ref))))
        if not worst <= tolerance:
            raise ExportParityError(
                out, f"onnxruntime and PyTorch differ by {worst:.3g} (max |diff| over {lengths} frames of "
                     f"{what}; tolerance {tolerance:g}); nothing written", max_abs_diff=worst)
        del runtime
        _set_metadata(model, {ob.META_PARITY: f"{worst:.6g}"})
        _write_model(model, tmp)
    return worst, peak


def _max_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


__all__ = [
    "CHECK_FRAMES",
    "DEFAULT_OPSET",
    "MIN_FRAMES",
    "PARITY_TOLERANCE",
    "ExportReport",
    "MelToWave",
    "export_onnx",
    "export_program",
    "parity_mel",
    "synthetic_speech",
    "torch_mel_to_wave",
]
