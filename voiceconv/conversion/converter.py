"""The voice-conversion Python API: :class:`VoiceConverter`.

::

    vc = VoiceConverter.from_checkpoint("runs/slt2bdl/checkpoints/last.ckpt")
    out, sr = vc.convert(wav, 16000, direction="a2b")
    vc.convert_file("in.wav", "out/in.wav")
    results = vc.convert_files(paths, "out/", batch_size=8)

A training checkpoint holds everything conversion needs: the model (class,
hyper-parameters, weights), the :class:`~voiceconv.audio.mel.MelConfig` of its
features, the per-speaker log-mel statistics and the speaker names. Conversion is

    resample to the MelConfig rate -> trim and level-set as training did -> log-mel ->
    normalise with the SOURCE speaker's statistics -> generator (eval mode, inference
    mode) -> de-normalise with the TARGET speaker's statistics -> vocoder -> back in
    place and at the input's level -> waveform at the MelConfig rate

as in CycleGAN-VC2 / MaskCycleGAN-VC (whose papers vocode with MelGAN; Griffin-Lim
here needs no training, a neural vocoder checkpoint can be named instead).
Long inputs run chunk by chunk in bounded memory (:mod:`voiceconv.conversion.chunking`).

Backends: ``"torch"`` (default) runs the generator and the vocoder in PyTorch;
``from_checkpoint(..., backend="onnx", onnx_path=...)`` runs an exported mel -> waveform
graph (``voiceconv-export``; :class:`~voiceconv.conversion.onnx_backend.OnnxMelToWave`,
onnxruntime on the CPU) in their place for ``convert``/``convert_file``/``convert_files``.
Everything else (resampling, preparation, analysis, putting the output back at the
input's level) is the same code. The graph holds the generator AND the vocoder, so a
long input runs window by window through both: windows of ``chunk_frames`` with
``context_frames + vocoder_context_frames`` (rounded up to a multiple of 4) on each side,
starting on multiples of 4, joined with the vocoder's short cross-fade
(:func:`~voiceconv.conversion.chunking.vocode_chunked`); an input of at most
``chunk_frames`` frames is one pass, the same computation as the PyTorch path. The ONNX
backend does not batch files (``convert_files`` converts them one by one); ``convert_mel``
and ``vocode`` stay PyTorch stages.

Choices of ours, and why:

* The checkpoint's :class:`~voiceconv.audio.preparation.Preparation` (trimming, peak
  or loudness level) is applied before analysis, so a quiet or loud recording lands
  where the training features were. The output is as long as the input: the
  converted speech goes back where it was, trimmed silence stays silent (zeros), and
  by default the level is brought back to the input's (``output_level="model"``
  keeps the level the vocoder made, the behaviour before checkpoints stored their
  preparation). Checkpoints without a stored preparation use their config's
  ``data.trim_top_db``/``data.normalize``, or none at all.
* ``precision="bf16"`` runs the generator under ``torch.autocast`` (bfloat16
  convolutions, on CPU and GPU); statistics, Griffin-Lim and the neural vocoder stay
  in float32 (Griffin-Lim's phase iteration and NNLS have no use for half precision).
  ``"auto"`` is bf16 where the device computes it natively (AVX-512 BF16 / AMX CPUs,
  CUDA) and fp32 elsewhere (emulated bf16 on an AVX2 CPU is several times slower).
* A converted waveform whose peak would clip (> 0.99) is scaled down to 0.99 peak.
* :meth:`VoiceConverter.convert_files` batches short inputs of similar length,
  padding each to the longest of its group by repeating its last frame. The
  generator normalises each instance over time (instance norm), so the padded
  frames enter those statistics: a padded item's output differs slightly from its
  one-by-one output (``batch_size=1``, or items of equal length, are exact). Groups are
  formed so that the padding is at most ``max_pad_fraction`` (default 25 %) of an
  item. Only the generator is batched; each item is vocoded on its own, so that
  Griffin-Lim's seeded random start does not depend on the batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from voiceconv.audio.io import WRITE_FORMATS, audio_info, load_audio, save_audio
from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.audio.preparation import OUTPUT_LEVELS, OutputLevel, Preparation, PreparedAudio
from voiceconv.audio.processing import check_finite, is_silent, peak_dbfs, resample
from voiceconv.audio.stats import SpeakerStats
from voiceconv.conversion.chunking import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_CONTEXT_FRAMES,
    DEFAULT_VOCODER_CHUNK_FRAMES,
    DEFAULT_VOCODER_CONTEXT_FRAMES,
    log_mel_chunked,
    map_frames_chunked,
    vocode_chunked,
)
from voiceconv.errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    FileProblem,
    MelConfigMismatch,
    OutputExists,
    VoiceconvError,
)
from voiceconv.models.base import build_from_description
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.training.checkpoint import load_checkpoint
from voiceconv.utils.machine import resolve_precision
from voiceconv.vocoders.base import Vocoder, load_vocoder

#: direction -> (source role, target role) in the checkpoint's ``stats``/``speakers``
DIRECTIONS: dict[str, tuple[str, str]] = {"a2b": ("A", "B"), "b2a": ("B", "A")}
PRECISIONS = ("auto", "fp32", "bf16")
#: the generator's total time down-sampling (two stride-2 layers): window starts and
#: core lengths of a chunked pass are multiples of it
TIME_MULTIPLE = 4
#: a converted waveform whose peak exceeds this is scaled down to it
MAX_PEAK = 0.99

Status = Literal["converted", "skipped", "failed"]
BACKENDS = ("torch", "onnx")
_log = logging.getLogger(__name__)


@runtime_checkable
class MelToWaveBackend(Protocol):
    """A fused mel -> waveform backend (e.g. :class:`~voiceconv.conversion.onnx_backend.OnnxMelToWave`).

    Calling it maps SOURCE-speaker log-mels ``(1, n_mels, T)`` (``T >= min_frames``) of
    ``mel_config`` to the converted waveform ``(1, T * hop_length)`` of ``direction``:
    normalisation, generator, de-normalisation and vocoder in one step.
    """

    mel_config: MelConfig
    direction: str
    min_frames: int

    def __call__(self, log_mel: Tensor) -> Tensor: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class FileResult:
    """Outcome of converting one file: ``status`` and, unless converted, why."""

    source: Path
    output: Path | None
    status: Status
    message: str = ""

    @property
    def ok(self) -> bool:
        """True unless the file failed (a skipped file is not a failure)."""
        return self.status != "failed"


@dataclass
class _Item:
    index: int
    source: Path
    output: Path
    frames: int = 0
    prepared: PreparedAudio | None = None


def _resolve_device(device: torch.device | str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (also through links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


class VoiceConverter:
    """Converts speech between the two speakers of a trained CycleGAN-VC-style model.

    ``model=None`` gives the statistics-only baseline: the source mels normalised with the
    source speaker's statistics and de-normalised with the target's, nothing learnt.

    Build it with :meth:`from_checkpoint` (everything comes from the checkpoint), or
    directly from a model, MelConfig, statistics ``{"A": SpeakerStats, "B": ...}`` and
    a vocoder (a :class:`~voiceconv.vocoders.base.Vocoder` or a spec string for
    :func:`~voiceconv.vocoders.base.load_vocoder`).

    ``chunk_frames``/``context_frames`` set the generator's windows for long inputs
    (multiples of 4; context >= the generator's receptive-field radius, see
    :mod:`voiceconv.conversion.chunking`); ``vocoder_chunk_frames``/``vocoder_context_frames``
    the vocoder's. Inputs of at most ``chunk_frames`` frames are converted in one pass.

    ``mel_to_wave``: a fused backend (:class:`MelToWaveBackend`, e.g. an exported ONNX graph) run
    instead of the generator and vocoder by ``convert``/``convert_file``/``convert_files``
    (see the module docstring); its MelConfig must be ``mel_config``.
    """

    def __init__(
        self,
        model: CycleGAN | None,
        mel_config: MelConfig,
        stats: Mapping[str, SpeakerStats],
        vocoder: Vocoder | str | os.PathLike[str] = "griffinlim",
        *,
        speakers: Mapping[str, str] | None = None,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        context_frames: int = DEFAULT_CONTEXT_FRAMES,
        vocoder_chunk_frames: int = DEFAULT_VOCODER_CHUNK_FRAMES,
        vocoder_context_frames: int = DEFAULT_VOCODER_CONTEXT_FRAMES,
        source: str | os.PathLike[str] | None = None,
        preparation: Preparation | None = None,
        output_level: OutputLevel = "input",
        mel_to_wave: MelToWaveBackend | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        for name, value in (("chunk_frames", chunk_frames), ("context_frames", context_frames)):
            if value < 0 or value % TIME_MULTIPLE or (name == "chunk_frames" and value == 0):
                raise ConfigError(f"{name} must be a positive multiple of {TIME_MULTIPLE}, got {value}")
        if vocoder_chunk_frames < 1 or vocoder_context_frames < 0:
            raise ConfigError("vocoder_chunk_frames must be >= 1 and vocoder_context_frames >= 0")
        missing = [role for role in ("A", "B") if role not in stats]
        if missing:
            raise ConfigError(f"speaker statistics for role(s) {missing} are missing")
        for role in ("A", "B"):
            if stats[role].n_mels != mel_config.n_mels:
                raise MelConfigMismatch(
                    f"speaker statistics {role} have {stats[role].n_mels} mel bins, "
                    f"the MelConfig {mel_config.n_mels}"
                )
        model_mels = model.hparams.get("n_mels") if model is not None else None
        if model_mels is not None and model_mels != mel_config.n_mels:
            raise MelConfigMismatch(
                f"model expects {model_mels} mel bins, the MelConfig has {mel_config.n_mels}"
            )
        if output_level not in OUTPUT_LEVELS:
            raise ConfigError(f"output_level must be one of {OUTPUT_LEVELS}, got {output_level!r}")
        self.device = _resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.preparation = preparation if preparation is not None else Preparation.raw()
        self.output_level: OutputLevel = output_level
        self.mel_config = mel_config
        self.stats = {role: stats[role] for role in ("A", "B")}
        self.speakers = dict(speakers) if speakers else {"A": "A", "B": "B"}
        self.source = str(source) if source is not None else None
        self.chunk_frames = chunk_frames
        self.context_frames = context_frames
        self.vocoder_chunk_frames = vocoder_chunk_frames
        self.vocoder_context_frames = vocoder_context_frames
        # Only the generators take part in conversion: the discriminators stay where
        # they are (off the accelerator).
        self.model = model.eval() if model is not None else None
        for g in model.generators() if model is not None else ():
            g.to(self.device)
        if isinstance(vocoder, str | os.PathLike):
            vocoder = load_vocoder(vocoder, mel_config, self.device)
        else:
            mel_config.check_same(vocoder.mel_config, what="vocoder")
            vocoder = vocoder.to(self.device)
        self.vocoder: Vocoder = vocoder
        self.logmel = LogMel(mel_config).to(self.device)
        if mel_to_wave is not None:
            if self.device.type != "cpu":
                raise ConfigError(f"the {mel_to_wave.describe()} backend runs on the CPU; use device='cpu'")
            mel_config.check_same(mel_to_wave.mel_config, what=mel_to_wave.describe())
            self.roles(mel_to_wave.direction)
        self.mel_to_wave = mel_to_wave

    # ------------------------------------------------------------- building
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        vocoder: Vocoder | str | os.PathLike[str] = "griffinlim",
        precision: str = "auto",
        statistics_only: bool = False,
        *,
        backend: str = "torch",
        onnx_path: str | os.PathLike[str] | None = None,
        onnx_threads: int | None = None,
        **options: Any,
    ) -> VoiceConverter:
        """Everything from one training checkpoint (``weights_only`` loading).

        ``backend="onnx"`` runs the graph ``onnx_path`` (written by ``voiceconv-export``
        for this checkpoint) with onnxruntime on ``onnx_threads`` intra-op threads instead
        of the PyTorch generator and vocoder (see the module docstring). The graph must
        have been made for this checkpoint's MelConfig (:class:`MelConfigMismatch`
        naming the fields), speakers and statistics (:class:`ConfigError`); without
        onnxruntime a :class:`ConfigError` names the extra to install.

        ``statistics_only``: leave the generator out, so that each mel bin's mean and
        variance are moved from the source speaker's to the target's and nothing else
        (the yardstick a model must beat). ``options`` go to the constructor (chunk sizes). Raises
        :class:`~voiceconv.errors.CheckpointError` naming ``path`` when the file is
        missing, corrupt, not a training checkpoint, or holds unusable entries, and
        :class:`~voiceconv.errors.MelConfigMismatch` for a vocoder made for other mels.
        """
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnx" and onnx_path is None:
            raise ConfigError("backend='onnx' needs onnx_path (a graph written by voiceconv-export)")
        if backend != "onnx" and (onnx_path is not None or onnx_threads is not None):
            raise ConfigError("onnx_path and onnx_threads need backend='onnx'")
        if backend == "onnx" and statistics_only:
            raise ConfigError("statistics_only needs backend='torch' (an exported graph holds the generator)")
        path = Path(path)
        ckpt = load_checkpoint(path, map_location="cpu")
        try:
            mel_config = MelConfig.from_dict(dict(ckpt["mel_config"]))
            stats = {role: SpeakerStats.from_dict(dict(d)) for role, d in dict(ckpt["stats"]).items()}
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"unusable mel_config or stats entry: {exc}") from None
        missing = [role for role in ("A", "B") if role not in stats]
        if missing:
            raise CheckpointError(path, f"no speaker statistics for role(s) {missing}")
        try:
            model = build_from_description(ckpt["model"])
        except CheckpointError as exc:
            raise CheckpointError(path, exc.problem) from None
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"cannot build the model: {exc}") from None
        if not isinstance(model, CycleGAN):
            raise CheckpointError(path, f"holds a {type(model).__name__}, not a CycleGAN-style VC model")
        try:
            model.load_state_dict(ckpt["model"]["state_dict"])
        except (RuntimeError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise CheckpointError(path, f"weights do not fit the model: {first}") from None
        speakers = {str(k): str(v) for k, v in dict(ckpt.get("speakers") or {}).items()}
        options.setdefault("preparation", _checkpoint_preparation(ckpt, path))
        if backend == "onnx":
            from voiceconv.conversion.onnx_backend import OnnxMelToWave

            graph = OnnxMelToWave(onnx_path, threads=onnx_threads, mel_config=mel_config)  # type: ignore[arg-type]
            graph.check_checkpoint(stats, speakers or {"A": "A", "B": "B"}, path)
            options["mel_to_wave"] = graph
        if isinstance(vocoder, str | os.PathLike):
            vocoder = load_vocoder(vocoder, mel_config, _resolve_device(device))
        else:
            mel_config.check_same(vocoder.mel_config, what="vocoder")
        try:
            return cls(None if statistics_only else model, mel_config, stats, vocoder, speakers=speakers, device=device,
                       precision=precision, source=path, **options)
        except MelConfigMismatch as exc:
            raise CheckpointError(path, str(exc)) from None

    # ------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        """Sample rate of the converted audio (the MelConfig's)."""
        return self.mel_config.sample_rate

    def roles(self, direction: str) -> tuple[str, str]:
        """(source role, target role) of ``direction`` ("a2b" or "b2a")."""
        try:
            return DIRECTIONS[direction]
        except KeyError:
            raise ConfigError(f"direction must be 'a2b' or 'b2a', got {direction!r}") from None

    def _check_direction(self, direction: str) -> None:
        """A valid direction, and the backend's when a fused backend is set."""
        self.roles(direction)
        if self.mel_to_wave is not None and direction != self.mel_to_wave.direction:
            raise ConfigError(
                f"{self.mel_to_wave.describe()} converts {self.mel_to_wave.direction} only, asked for {direction}"
            )

    def describe_backend(self) -> str:
        """``"torch"`` or ``"onnx <graph>"``."""
        return "torch" if self.mel_to_wave is None else f"onnx {self.mel_to_wave.describe()}"

    def describe_direction(self, direction: str) -> str:
        """``"slt -> bdl"`` style description of ``direction``."""
        src, tgt = self.roles(direction)
        return f"{self.speakers.get(src, src)} -> {self.speakers.get(tgt, tgt)}"

    # ------------------------------------------------------------ the stages
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _generator(self, direction: str) -> Callable[[Tensor], Tensor]:
        if self.model is None:  # statistics only: the normalised mels pass unchanged
            return lambda x: x

        def run(x: Tensor) -> Tensor:
            with self._autocast():
                y = self.model.convert(x, direction)
            return y.float()

        return run

    def _convert_normalised(self, x: Tensor, direction: str) -> Tensor:
        """Generator on normalised mels ``(B, n_mels, T)``, chunked along time when long."""
        return map_frames_chunked(
            self._generator(direction), x, self.chunk_frames, self.context_frames, TIME_MULTIPLE
        )

    @torch.inference_mode()
    def convert_mel(self, log_mel: Tensor | np.ndarray, direction: str = "a2b") -> Tensor | np.ndarray:
        """Converted log-mels for log-mels ``(n_mels, T)`` or ``(B, n_mels, T)``.

        Input and output are natural-log mels of :attr:`mel_config` in the speakers' own
        scales (normalisation with the source statistics and de-normalisation with the
        target's happen inside). NumPy in, NumPy out (float32); a tensor in gives a
        float32 tensor on :attr:`device`.
        """
        src, tgt = self.roles(direction)
        is_numpy = isinstance(log_mel, np.ndarray)
        x = torch.as_tensor(np.asarray(log_mel, dtype=np.float32) if is_numpy else log_mel)
        if x.dim() not in (2, 3) or x.shape[-2] != self.mel_config.n_mels or x.shape[-1] < 1:
            raise ConfigError(
                f"convert_mel: expected ({self.mel_config.n_mels}, T) or (B, "
                f"{self.mel_config.n_mels}, T) log-mels, got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise AudioError(None, "convert_mel: log-mels contain NaN or Inf")
        squeeze = x.dim() == 2
        x = x.to(self.device, torch.float32)
        x = x[None] if squeeze else x
        y = self.stats[tgt].denormalize(self._convert_normalised(self.stats[src].normalize(x), direction))
        y = y[0] if squeeze else y
        return y.cpu().numpy() if is_numpy else y

    @torch.inference_mode()
    def vocode(self, log_mel: Tensor, n_samples: int, source: Path | None = None) -> np.ndarray:
        """Waveform ``(n_samples,)`` at :attr:`sample_rate` from log-mels ``(n_mels, T)``,
        vocoded in windows (:func:`~voiceconv.conversion.chunking.vocode_chunked`) and
        scaled down if it would clip; ``source`` names the file in errors."""
        wav = vocode_chunked(
            self.vocoder, log_mel, n_samples, self.mel_config.hop_length,
            self.vocoder_chunk_frames, self.vocoder_context_frames,
        )
        return _limit_peak(wav.numpy(), source)

    @torch.inference_mode()
    def analyse(self, wav: np.ndarray) -> Tensor:
        """Log-mel ``(n_mels, frames)`` on :attr:`device` of a mono waveform at
        :attr:`sample_rate` (computed in segments, see
        :func:`~voiceconv.conversion.chunking.log_mel_chunked`)."""
        return log_mel_chunked(self.logmel, torch.from_numpy(np.ascontiguousarray(wav)), device=self.device)

    def prepare(self, wav: np.ndarray, sr: int, path: Path | None = None) -> np.ndarray:
        """``wav`` checked, down-mixed to mono and resampled to :attr:`sample_rate`
        (the level and trimming come later, :meth:`prepare_for_model`).

        Raises :class:`~voiceconv.errors.AudioError` (naming ``path``, or
        ``<array>``) for integer samples, a bad shape, NaN/inf, silence, a rate
        outside 1 kHz..384 kHz, or fewer samples than one analysis window.
        """
        arr = np.asarray(wav)
        if arr.dtype.kind != "f":
            raise AudioError(path, f"expected float samples in [-1, 1], got dtype {arr.dtype}")
        if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
            raise AudioError(path, f"expected samples shaped (T,) or (channels, T), got {arr.shape}")
        check_finite(arr, path)
        if is_silent(arr):
            raise AudioError(path, f"all silent (peak {peak_dbfs(arr):.1f} dBFS)")
        if arr.ndim == 2:
            arr = arr.mean(axis=0)
        if isinstance(sr, bool) or not isinstance(sr, int | np.integer) or not 1000 <= sr <= 384000:
            raise AudioError(path, f"sample rate {sr!r} is not a whole number of Hz in 1000..384000")
        arr = np.clip(arr.astype(np.float32, copy=False), -1.0, 1.0)
        if int(sr) != self.sample_rate:
            arr = resample(arr, int(sr), self.sample_rate)
        return self._check_length(arr, path)

    def _check_length(self, wav: np.ndarray, path: Path | None) -> np.ndarray:
        need = self.mel_config.n_fft
        if wav.shape[-1] < need:
            raise AudioError(
                path,
                f"too short: {wav.shape[-1]} samples at {self.sample_rate} Hz, need at least "
                f"{need} (one analysis window)",
            )
        return wav

    def prepare_for_model(self, wav: np.ndarray, path: Path | None = None) -> PreparedAudio:
        """The checkpoint's trimming and level applied to a mono waveform at :attr:`sample_rate`."""
        return self.preparation.for_conversion(wav, self.sample_rate, path, min_samples=self.mel_config.n_fft)

    def _vocode_prepared(self, prepared: PreparedAudio, log_mel: Tensor, path: Path | None = None) -> np.ndarray:
        """Converted log-mels of ``prepared``'s span -> the finished output waveform."""
        return self.finish(prepared, self.vocode(log_mel, prepared.wav.shape[-1], path), path)

    def finish(self, prepared: PreparedAudio, converted: np.ndarray, path: Path | None = None) -> np.ndarray:
        """Converted span back in place, at :attr:`output_level`, scaled down if it would clip."""
        return _limit_peak(prepared.restore(converted, self.output_level), path)

    @torch.inference_mode()
    def _convert_wave(self, wav: np.ndarray, direction: str, source: Path | None = None) -> np.ndarray:
        """Checked mono waveform at the MelConfig rate -> converted waveform, same length."""
        prepared = self.prepare_for_model(wav, source)
        if self.mel_to_wave is not None:
            log_mel = self.analyse(prepared.wav)
            return self.finish(prepared, self._mel_to_wave(log_mel, prepared.wav.shape[-1], source), source)
        conv = self.convert_mel(self.analyse(prepared.wav), direction)
        assert isinstance(conv, Tensor)
        return self._vocode_prepared(prepared, conv, source)

    def _mel_to_wave(self, log_mel: Tensor, n_samples: int, source: Path | None = None) -> np.ndarray:
        """Source log-mels ``(n_mels, T)`` -> converted waveform ``(n_samples,)`` through the
        fused backend, window by window when long (see the module docstring)."""
        assert self.mel_to_wave is not None
        context = self.context_frames + self.vocoder_context_frames
        context = -(-context // TIME_MULTIPLE) * TIME_MULTIPLE
        wav = vocode_chunked(
            self.mel_to_wave, log_mel, n_samples, self.mel_config.hop_length, self.chunk_frames, context,
            align_sign=False, multiple=TIME_MULTIPLE,
        )
        return _limit_peak(wav.numpy(), source)

    # ------------------------------------------------------------ public API
    def convert(
        self, wav: np.ndarray, sr: int, direction: str = "a2b"
    ) -> tuple[np.ndarray, int]:
        """Convert ``wav`` (``(T,)`` or ``(channels, T)`` float samples at ``sr`` Hz).

        Returns ``(converted float32 (T',), sample_rate)`` at :attr:`sample_rate`, as
        long as the input resampled to that rate. Raises
        :class:`~voiceconv.errors.AudioError` for NaN/inf, silent, too short input,
        integer samples or an impossible rate.
        """
        self._check_direction(direction)
        return self._convert_wave(self.prepare(wav, sr), direction), self.sample_rate

    def _load(self, src: Path) -> np.ndarray:
        wav, _ = load_audio(src, self.sample_rate, min_samples=self.mel_config.n_fft)
        return wav

    def _convert_path(self, src: Path, direction: str) -> np.ndarray:
        """Audio file ``src`` -> converted waveform (chunked when long)."""
        return self._convert_wave(self._load(src), direction, src)

    def check_output(
        self, src: str | os.PathLike[str], dst: str | os.PathLike[str], overwrite: bool = False
    ) -> Path:
        """Raise unless ``dst`` may be written for ``src``: a writable extension, not
        the input itself, and absent unless ``overwrite`` (:class:`OutputExists`)."""
        src, dst = Path(src), Path(dst)
        if dst.suffix.lower() not in WRITE_FORMATS:
            raise FileProblem(dst, f"cannot write '{dst.suffix}' files (use one of {', '.join(WRITE_FORMATS)})")
        if _same_file(src, dst):
            raise FileProblem(dst, "output is the input file itself; refusing to overwrite an input")
        if dst.is_dir():
            raise FileProblem(dst, "output path is a directory")
        if dst.exists() and not overwrite:
            raise OutputExists(dst, "exists already (kept; use --overwrite / overwrite=True to replace it)")
        return dst

    def convert_file(
        self,
        src: str | os.PathLike[str],
        dst: str | os.PathLike[str],
        direction: str = "a2b",
        overwrite: bool = False,
    ) -> Path:
        """Convert audio file ``src`` into ``dst`` (``.wav``/``.flac``, written atomically).

        Refuses (:class:`~voiceconv.errors.FileProblem`) a ``dst`` that is ``src``
        itself, and keeps an existing ``dst`` (:class:`OutputExists`) unless
        ``overwrite``. Returns ``dst``.
        """
        self._check_direction(direction)
        src = Path(src)
        dst = self.check_output(src, dst, overwrite)
        return save_audio(dst, self._convert_path(src, direction), self.sample_rate, overwrite=overwrite)

    def convert_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str],
        direction: str = "a2b",
        overwrite: bool = False,
        batch_size: int = 8,
        max_pad_fraction: float = 0.25,
        suffix: str = ".wav",
        on_result: Callable[[FileResult], None] | None = None,
    ) -> list[FileResult]:
        """Convert many files into ``out_dir/<stem><suffix>``; one result per input, in order.

        One bad file never stops the batch: an exception in any step of one item
        (reading, analysis, generator, vocoder, writing) gives that file a
        ``"failed"`` result with a one-line message naming it, and the others go on
        (a :class:`~voiceconv.errors.VoiceconvError` keeps its message; anything else
        is reported as unexpected, with its traceback at DEBUG log level). When a
        batched generator pass fails, its items are retried one by one so that only
        the culprit fails. Only ``KeyboardInterrupt`` and the like stop the run.

        An existing output is ``"skipped"`` unless ``overwrite``, also one that
        appears while converting (outputs are published without clobbering); an
        output path equal to any input is refused even with ``overwrite``; two
        inputs with the same stem cannot share an output (the second fails). Inputs
        up to ``chunk_frames`` frames are converted in batches of up to
        ``batch_size`` similar lengths (see the module docstring); longer ones one at
        a time in chunks. ``on_result`` is called with each result as soon as it is
        known.
        """
        self._check_direction(direction)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if max_pad_fraction < 0:
            raise ConfigError(f"max_pad_fraction must be >= 0, got {max_pad_fraction}")
        out_dir = Path(out_dir)
        sources = [Path(p) for p in paths]
        results: list[FileResult | None] = [None] * len(sources)

        def report(index: int, output: Path | None, status: Status, message: str = "") -> None:
            res = FileResult(sources[index], output, status, message)
            results[index] = res
            if on_result is not None:
                on_result(res)

        def fail(index: int, exc: Exception, output: Path | None = None) -> None:
            if isinstance(exc, OutputExists):
                report(index, output, "skipped", str(exc))
            else:
                report(index, None, "failed", _failure_line(sources[index], exc))

        def write(it: _Item, make: Callable[[], np.ndarray]) -> None:
            """Make ``it``'s waveform and save it; an exception in either is its line
            (``on_result`` itself runs outside the try)."""
            try:
                save_audio(it.output, make(), self.sample_rate, overwrite=overwrite)
            except Exception as exc:
                fail(it.index, exc, it.output)
            else:
                report(it.index, it.output, "converted")

        inputs = {}
        for src in sources:
            with contextlib.suppress(OSError):
                inputs[src.resolve()] = src
        claimed: dict[Path, Path] = {}
        items: list[_Item] = []
        for i, src in enumerate(sources):
            dst = out_dir / f"{src.stem}{suffix}"
            try:
                key = dst.resolve()
                if key in inputs:
                    raise FileProblem(
                        src, f"output {dst} would overwrite input {inputs[key]}; choose another --out-dir"
                    )
                if key in claimed:
                    raise FileProblem(src, f"output {dst} is also the output of {claimed[key]} (same file name)")
                claimed[key] = src
                self.check_output(src, dst, overwrite)
                info = audio_info(src)
                frames = self.mel_config.frames(round(info.frames * self.sample_rate / info.sample_rate))
                items.append(_Item(i, src, dst, frames))
            except Exception as exc:
                fail(i, exc, dst)

        # a fused backend converts one file at a time (no batched generator pass)
        batched = self.mel_to_wave is None
        short = sorted((it for it in items if batched and it.frames <= self.chunk_frames), key=lambda it: it.frames)
        long = [it for it in items if not batched or it.frames > self.chunk_frames]
        for group in _groups(short, batch_size, max_pad_fraction):
            loaded = []
            for it in group:
                try:
                    it.prepared = self.prepare_for_model(self._load(it.source), it.source)
                    loaded.append(it)
                except Exception as exc:
                    fail(it.index, exc, it.output)
            if loaded:
                self._convert_batch(loaded, direction, write, fail)
        for it in long:
            write(it, partial(self._convert_path, it.source, direction))
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def _generate(self, mels: Sequence[Tensor], direction: str) -> list[Tensor]:
        """Generator on log-mels together (padded by repeating their last frame), each
        output cropped back to its own length."""
        src, tgt = self.roles(direction)
        lengths = [m.shape[-1] for m in mels]
        longest = max(lengths)
        batch = torch.stack([F.pad(m[None], (0, longest - m.shape[-1]), mode="replicate")[0] for m in mels])
        y = self.stats[tgt].denormalize(self._convert_normalised(self.stats[src].normalize(batch), direction))
        return [row[:, :n] for row, n in zip(y, lengths, strict=True)]

    @torch.inference_mode()
    def _convert_batch(
        self,
        items: Sequence[_Item],
        direction: str,
        write: Callable[[_Item, Callable[[], np.ndarray]], None],
        fail: Callable[[int, Exception, Path | None], None],
    ) -> None:
        """Loaded short items: analysed one by one, generator on all together (one by
        one if that fails), then each vocoded and written on its own; a failing step
        costs only its item."""
        ready: list[tuple[_Item, Tensor]] = []
        for it in items:
            assert it.prepared is not None
            try:
                ready.append((it, self.analyse(it.prepared.wav)))
            except Exception as exc:
                fail(it.index, exc, it.output)
        if not ready:
            return
        try:
            converted: list[tuple[_Item, Tensor]] = list(
                zip((it for it, _ in ready), self._generate([m for _, m in ready], direction), strict=True)
            )
        except Exception as exc:
            if len(ready) == 1:
                fail(ready[0][0].index, exc, ready[0][0].output)
                return
            converted = []
            for it, mel in ready:  # find the culprit: the others must not pay for it
                try:
                    converted.append((it, self._generate([mel], direction)[0]))
                except Exception as one_exc:
                    fail(it.index, one_exc, it.output)
        for it, y in converted:
            # each item's own frames, vocoded alone: a file's waveform does not
            # depend on the other files of its batch (Griffin-Lim's random start)
            prepared, it.prepared = it.prepared, None
            assert prepared is not None
            write(it, partial(self._vocode_prepared, prepared, y, it.source))


def _failure_line(source: Path, exc: Exception) -> str:
    """One line for ``exc`` raised while converting ``source``, naming a file."""
    if isinstance(exc, FileProblem):
        return str(exc)
    if isinstance(exc, VoiceconvError):
        return f"{source}: {exc}"
    _log.debug("unexpected error converting %s", source, exc_info=exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{source}: unexpected {type(exc).__name__}: {first}"


def _checkpoint_preparation(ckpt: Mapping[str, Any], path: Path) -> Preparation:
    """The checkpoint's stored preparation; for older ones, its config's ``data`` settings
    (what its feature cache was made with), else none."""
    stored = ckpt.get("preparation")
    try:
        if stored:
            return Preparation.from_dict(dict(stored))
        data = dict((ckpt.get("config") or {}).get("data") or {})
        if "trim_top_db" in data or "normalize" in data:
            return Preparation.from_data_config(data)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"unusable preparation settings: {exc}") from None
    return Preparation.raw()


def _groups(items: Sequence[_Item], batch_size: int, max_pad_fraction: float) -> list[list[_Item]]:
    """Consecutive runs of length-sorted ``items``: at most ``batch_size`` each, and the
    longest at most ``1 + max_pad_fraction`` times the shortest."""
    groups: list[list[_Item]] = []
    for it in items:
        g = groups[-1] if groups else None
        if g and len(g) < batch_size and it.frames <= (1.0 + max_pad_fraction) * max(g[0].frames, 1):
            g.append(it)
        else:
            groups.append([it])
    return groups


def _limit_peak(wav: np.ndarray, source: Path | None = None) -> np.ndarray:
    """Scale ``wav`` down to :data:`MAX_PEAK` if its peak is above it (would clip)."""
    wav = np.asarray(wav, dtype=np.float32)
    if not np.isfinite(wav).all():
        raise AudioError(source, "conversion produced non-finite samples (model or vocoder fault)")
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    return wav * np.float32(MAX_PEAK / peak) if peak > MAX_PEAK else wav


__all__ = [
    "BACKENDS",
    "DIRECTIONS",
    "PRECISIONS",
    "FileResult",
    "MelToWaveBackend",
    "OutputExists",
    "VoiceConverter",
]
