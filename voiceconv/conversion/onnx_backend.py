"""Running an exported mel -> waveform graph with onnxruntime: :class:`OnnxMelToWave`.

``voiceconv-export`` (:func:`voiceconv.conversion.export.export_onnx`) writes ONE ONNX
graph per checkpoint, direction and neural vocoder: natural-log mels ``(1, n_mels, T)``
of the SOURCE speaker, in that speaker's own scale (what
:meth:`VoiceConverter.analyse <voiceconv.conversion.converter.VoiceConverter.analyse>`
returns), to the waveform ``(1, T * hop_length)``: source normalisation, generator,
target de-normalisation and vocoder in one graph. Its ``metadata_props`` say what it
was made from (the keys below); this module reads them back so that a caller can
refuse a graph made for other features (:meth:`OnnxMelToWave.check_mel_config`) or
another direction, speakers or statistics.

:class:`OnnxMelToWave` is what ``VoiceConverter.from_checkpoint(..., backend="onnx")``
and ``voiceconv-convert --backend onnx`` run instead of the PyTorch generator and
vocoder (the analysis, preparation and chunking stay the converter's). It needs the
``onnx`` extra (``pip install voiceconv[onnx]``); without onnxruntime it raises one
line saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from voiceconv.audio.mel import MelConfig
from voiceconv.audio.stats import SpeakerStats
from voiceconv.errors import ConfigError, FileProblem, MelConfigMismatch

#: the pip extra that brings onnx, onnxruntime and onnxscript
EXTRA_HINT = "pip install voiceconv[onnx]"
#: names of the graph's input and output
INPUT_NAME = "log_mel"
OUTPUT_NAME = "wav"
#: value of :data:`META_FORMAT` in graphs this version writes and reads
FORMAT = "voiceconv-mel-to-wave/1"

# metadata_props keys (all values are strings; *_json ones hold JSON)
META_FORMAT = "voiceconv.format"
META_MEL_CONFIG = "voiceconv.mel_config_json"
META_DIRECTION = "voiceconv.direction"
META_SPEAKERS = "voiceconv.speakers_json"
META_SOURCE_SPEAKER = "voiceconv.source_speaker"
META_TARGET_SPEAKER = "voiceconv.target_speaker"
META_STATS_SHA256 = "voiceconv.stats_sha256"
META_PREPARATION = "voiceconv.preparation_json"
META_CHECKPOINT = "voiceconv.checkpoint"
META_VOCODER = "voiceconv.vocoder"
META_INPUT = "voiceconv.input"
META_OUTPUT = "voiceconv.output"
META_MIN_FRAMES = "voiceconv.min_frames"
META_PARITY = "voiceconv.parity_max_abs_diff"
META_EXPORTER = "voiceconv.exporter"

_REQUIRED = (META_FORMAT, META_MEL_CONFIG, META_DIRECTION, META_SPEAKERS, META_MIN_FRAMES)


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a :class:`ConfigError` naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"onnxruntime is not installed; install the ONNX extra: {EXTRA_HINT}") from None
    return onnxruntime


def stats_fingerprint(stats: Mapping[str, SpeakerStats]) -> str:
    """SHA-256 of the A and B statistics (as JSON): tells whether a graph normalises with
    the same statistics as a checkpoint."""
    blob = json.dumps({role: stats[role].to_dict() for role in ("A", "B")}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def open_session(path: Path, threads: int | None, spinning: bool,
                 denormal_as_zero: bool = False) -> tuple[Any, dict[str, str]]:
    """An onnxruntime CPU session on ``path`` and the graph's metadata.

    One inter-op thread, sequential execution, errors-only logging; ``threads`` intra-op
    threads (None: onnxruntime's choice); ``spinning=False`` lets idle workers sleep;
    ``denormal_as_zero`` flushes denormals. Raises :class:`~voiceconv.errors.FileProblem`
    naming ``path`` for a missing or unloadable file, :class:`ConfigError` for ``threads < 1``.
    """
    ort = import_onnxruntime()
    if not path.is_file():
        raise FileProblem(path, "no such ONNX file")
    if threads is not None and threads < 1:
        raise ConfigError(f"ONNX threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    if denormal_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # not ONNX, truncated, unsupported operators
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FileProblem(path, f"cannot load ONNX graph ({type(exc).__name__}: {first})") from None
    return session, dict(session.get_modelmeta().custom_metadata_map)


class OnnxMelToWave:
    """An exported mel -> waveform graph run by onnxruntime (CPUExecutionProvider).

    ``threads``: onnxruntime's intra-op threads (default: its own choice, one per
    core); inter-op parallelism is off (one chain of operators). ``spinning=False`` lets
    idle worker threads sleep instead of spinning between operators (onnxruntime's
    ``session.intra_op.allow_spinning``): better on cores shared with other jobs, as
    ``OMP_WAIT_POLICY=PASSIVE`` is for PyTorch (measured at 2 threads on a loaded 2-core
    machine: 0.094 s instead of 0.141 s for 4 s of audio). ``mel_config``: when
    given, the graph's MelConfig must equal it (:class:`MelConfigMismatch` naming every
    differing field).

    Calling it maps log-mels ``(n_mels, T)`` to ``(T * hop_length,)`` samples, or
    ``(B, n_mels, T)`` to ``(B, T * hop_length)`` (rows one at a time: the graph's batch
    is 1); NumPy in, NumPy out, a tensor in gives a CPU float32 tensor. ``T`` must be at
    least :attr:`min_frames` (the generator's instance norms need 2 positions after
    its 4x time down-sampling), any other length works (padding inside the graph).

    Raises :class:`~voiceconv.errors.FileProblem` naming ``path`` for a missing or
    unreadable file or a graph without voiceconv metadata.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        mel_config: MelConfig | None = None,
        spinning: bool = True,
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self.session, self.metadata = open_session(self.path, threads, spinning)
        missing = [key for key in _REQUIRED if key not in self.metadata]
        if missing:
            raise FileProblem(self.path, f"not a voiceconv mel -> waveform graph (metadata {missing} missing)")
        if self.metadata[META_FORMAT] != FORMAT:
            raise FileProblem(
                self.path, f"graph format {self.metadata[META_FORMAT]!r}, this voiceconv reads {FORMAT!r}"
            )
        try:
            self.mel_config = MelConfig.from_dict(json.loads(self.metadata[META_MEL_CONFIG]))
            self.speakers: dict[str, str] = {str(k): str(v) for k, v in
                                             json.loads(self.metadata[META_SPEAKERS]).items()}
            self.min_frames = int(self.metadata[META_MIN_FRAMES])
        except (ConfigError, TypeError, ValueError, AttributeError) as exc:
            raise FileProblem(self.path, f"unusable voiceconv metadata: {exc}") from None
        self.direction = self.metadata[META_DIRECTION]
        names = [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()]
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise FileProblem(self.path, f"expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, "
                                         f"got {names[0]} -> {names[1]}")
        if mel_config is not None:
            self.check_mel_config(mel_config)

    @property
    def stats_sha256(self) -> str | None:
        """Fingerprint of the statistics baked into the graph (:func:`stats_fingerprint`)."""
        return self.metadata.get(META_STATS_SHA256)

    def describe(self) -> str:
        """``"model.onnx (a2b: low -> high)"``."""
        src, tgt = self.metadata.get(META_SOURCE_SPEAKER, "?"), self.metadata.get(META_TARGET_SPEAKER, "?")
        return f"{self.path} ({self.direction}: {src} -> {tgt})"

    def check_mel_config(self, mel_config: MelConfig) -> None:
        """Raise :class:`MelConfigMismatch` naming every field where the graph's MelConfig
        differs from ``mel_config`` (the caller's analysis)."""
        mel_config.check_same(self.mel_config, what=f"ONNX graph {self.path}")

    def check_checkpoint(
        self,
        stats: Mapping[str, SpeakerStats],
        speakers: Mapping[str, str],
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        """Raise :class:`ConfigError` unless the graph was exported with these speakers and
        statistics (``checkpoint`` only names the file in the message)."""
        where = f" of {checkpoint}" if checkpoint is not None else ""
        mine = {str(k): str(v) for k, v in speakers.items()}
        if mine != self.speakers:
            raise ConfigError(f"ONNX graph {self.path} was exported for speakers {self.speakers}, "
                              f"not the speakers {mine}{where}")
        if self.stats_sha256 is not None and self.stats_sha256 != stats_fingerprint(stats):
            raise ConfigError(f"ONNX graph {self.path} normalises with other speaker statistics than those{where} "
                              "(exported from another training run?)")

    def _run(self, mel: np.ndarray) -> np.ndarray:
        """One ``(n_mels, T)`` float32 array -> ``(T * hop,)``."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: mel[None]})[0][0]

    def __call__(self, log_mel: Tensor | np.ndarray) -> Tensor | np.ndarray:
        is_tensor = isinstance(log_mel, Tensor)
        x = log_mel.detach().to("cpu", torch.float32).numpy() if is_tensor else np.asarray(log_mel, np.float32)
        n_mels = self.mel_config.n_mels
        if x.ndim not in (2, 3) or x.shape[-2] != n_mels:
            raise MelConfigMismatch(
                f"ONNX graph {self.path}: expected ({n_mels}, T) or (B, {n_mels}, T) log-mels, "
                f"got {tuple(x.shape)}"
            )
        if x.shape[-1] < self.min_frames:
            raise ConfigError(
                f"ONNX graph {self.path}: need at least {self.min_frames} mel frames, got {x.shape[-1]}"
            )
        x = np.ascontiguousarray(x)
        out = self._run(x) if x.ndim == 2 else np.stack([self._run(row) for row in x])
        return torch.from_numpy(out) if is_tensor else out


__all__ = [
    "EXTRA_HINT",
    "FORMAT",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "OnnxMelToWave",
    "import_onnxruntime",
    "open_session",
    "stats_fingerprint",
]
