"""Streaming conversion of audio files: the file mode of ``voiceconv-stream``.

:func:`stream_files` drives a streaming converter (anything with the
:class:`StreamingConverterLike` protocol, e.g.
:class:`voiceconv.conversion.streaming.StreamingConverter`) exactly as a live
audio stream would, but from files and as fast as it can: the inputs are loaded
(mono, resampled to the converter's rate), joined into ONE continuous stream in the
order given, and pushed in block-sized pieces. Every ``push`` is timed, so the
report says whether the converter keeps up with real time (compute per block,
real-time factor, deadline misses) and whether its memory stays flat over a long
stream (``min_seconds`` repeats the inputs without resetting the converter).

The converter's output is time-aligned with its input (returned ``latency_samples``
late at most), so after ``flush`` each file's span is cut from the output at the
same place as in the input and written to ``OUT_DIR/<stem>.wav`` atomically.

Definitions used in the report:

* a *block* is one ``push`` call; its *duration* is the audio it carried
  (``samples / sample_rate``); with the default push size that is the
  converter's block;
* a *deadline miss* is a non-empty block whose compute time (wall clock, around
  ``push`` only) exceeded its duration: fed in real time, the converter would have
  fallen behind there;
* *real-time factor* is compute time / audio time (below 1 keeps up), per block
  (median) and over the whole stream (overall);
* resident memory (RSS) is read after every block: at the end of the first 10 % of
  the stream, at the end, and the maximum.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from voiceconv.audio.io import load_audio, save_audio
from voiceconv.audio.preparation import Preparation
from voiceconv.conversion.converter import FileResult, _failure_line
from voiceconv.errors import ConfigError, FileProblem, OutputExists

PushSizes = int | Callable[[], int] | np.random.Generator | None
"""How many samples each ``push`` gets: ``None`` (the converter's block), a fixed
count, a callable returning the next count, or a generator for random counts
(0 .. 2 blocks, see :func:`random_push_sizes`)."""


@runtime_checkable
class StreamingConverterLike(Protocol):
    """What the stream runners need from a streaming converter."""

    sample_rate: int
    block_samples: int
    latency_samples: int

    def push(self, samples: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def reset(self) -> None: ...

    def describe(self) -> str: ...


def load_converter(checkpoint: str | os.PathLike[str], **kwargs: Any) -> StreamingConverterLike:
    """``StreamingConverter.from_checkpoint(checkpoint, **kwargs)``.

    Imported here, not at module level, so that the runners (and their tests, which
    replace this function with a fake) do not need the model code.
    """
    from voiceconv.conversion.streaming import StreamingConverter

    return StreamingConverter.from_checkpoint(checkpoint, **kwargs)


def auto_gain(converter: StreamingConverterLike, wav: np.ndarray) -> float:
    """The factor that brings ``wav`` to the level the model was trained at: the
    converter's :class:`~voiceconv.audio.preparation.Preparation` when it exposes one
    (``converter.preparation``, the checkpoint's), else the default (peak 0.95),
    measured on the span its trimming would keep. A stream cannot do this (it has no
    whole recording); file mode can, per file."""
    prep = getattr(converter, "preparation", None)
    if not isinstance(prep, Preparation):
        prep = Preparation()
    start, end = prep.span(wav, int(converter.sample_rate))
    return float(prep.gain(wav[start:end]))


def random_push_sizes(seed: int | np.random.Generator, block_samples: int) -> Callable[[], int]:
    """Random push sizes, 0 .. 2 blocks inclusive: what a jittery audio callback or
    network source might hand over. A converter's output must not depend on them."""
    rng = np.random.default_rng(seed)
    return lambda: int(rng.integers(0, 2 * block_samples + 1))


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``); where that file is
    missing, the peak so far (``getrusage``), which still shows growth."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


@dataclass(frozen=True)
class BlockTiming:
    """One timed ``push``: what ``on_block`` receives."""

    index: int
    samples: int
    compute_s: float  # wall clock around push
    cpu_s: float  # this thread's CPU time around push
    duration_s: float  # audio carried: samples / sample_rate
    missed: bool  # compute_s > duration_s (non-empty blocks only)


class BlockTimer:
    """Collects :class:`BlockTiming` rows and summarises them (shared by the file and
    live modes, so both report the same numbers in the same way)."""

    def __init__(self, sample_rate: int, capacity: int = 4096) -> None:
        self.sample_rate = sample_rate
        # (compute s, cpu s, rtf) per push in a buffer written through at once, so that the
        # records do not show up as memory growth of the stream being measured
        self._rows = np.full((max(int(capacity), 16), 3), np.nan)
        self._n = 0
        self.samples = 0
        self.misses = 0
        self.nonempty = 0

    @property
    def compute(self) -> np.ndarray:
        return self._rows[: self._n, 0]

    @property
    def cpu(self) -> np.ndarray:
        return self._rows[: self._n, 1]

    @property
    def rtf(self) -> np.ndarray:
        rtf = self._rows[: self._n, 2]
        return rtf[~np.isnan(rtf)]

    def timed_push(self, converter: StreamingConverterLike, piece: np.ndarray) -> tuple[np.ndarray, BlockTiming]:
        """``converter.push(piece)``, timed; returns its output and the timing row."""
        c0 = time.thread_time()
        t0 = time.perf_counter()
        out = converter.push(piece)
        t1 = time.perf_counter()
        c1 = time.thread_time()
        return out, self.add(len(piece), t1 - t0, c1 - c0)

    def add(self, samples: int, compute_s: float, cpu_s: float) -> BlockTiming:
        """Record one push of ``samples`` that took ``compute_s`` (``cpu_s`` CPU)."""
        duration = samples / self.sample_rate
        missed = samples > 0 and compute_s > duration
        row = BlockTiming(self._n, samples, compute_s, cpu_s, duration, missed)
        if self._n == self._rows.shape[0]:  # beyond the expected length: double
            self._rows = np.concatenate([self._rows, np.full_like(self._rows, np.nan)])
        self._rows[self._n] = (compute_s, cpu_s, compute_s / duration if samples > 0 else np.nan)
        self._n += 1
        self.samples += samples
        if samples > 0:
            self.nonempty += 1
            self.misses += missed
        return row

    def fields(self) -> dict[str, Any]:
        """The timing fields of :class:`StreamReport` / ``LiveReport``."""
        ms = 1000.0
        seconds = self.samples / self.sample_rate
        compute = np.asarray(self.compute, dtype=np.float64)
        has = compute.size > 0
        return {
            "seconds_streamed": seconds,
            "blocks": int(compute.size),
            "block_ms": ms * seconds / self.nonempty if self.nonempty else 0.0,
            "compute_median_ms": ms * float(np.median(compute)) if has else 0.0,
            "compute_p99_ms": ms * float(np.percentile(compute, 99)) if has else 0.0,
            "compute_max_ms": ms * float(compute.max()) if has else 0.0,
            "cpu_median_ms": ms * float(np.median(self.cpu)) if has else 0.0,
            "rtf_median": float(np.median(self.rtf)) if self.rtf.size else 0.0,
            "rtf_overall": float(compute.sum()) / seconds if seconds > 0 else 0.0,
            "deadline_misses": self.misses,
        }


@dataclass(kw_only=True)
class TimingReport:
    """Per-block timing of a stream (file or live). Times in ms; real-time factor is
    compute / audio time (below 1 keeps up)."""

    seconds_streamed: float = 0.0
    blocks: int = 0
    block_ms: float = 0.0  # mean audio per non-empty push (the block, with fixed pushes)
    compute_median_ms: float = 0.0
    compute_p99_ms: float = 0.0
    compute_max_ms: float = 0.0
    cpu_median_ms: float = 0.0  # CPU time of the pushing thread (excludes torch's pool)
    rtf_median: float = 0.0
    rtf_overall: float = 0.0
    deadline_misses: int = 0
    latency_ms: float = 0.0  # the converter's algorithmic latency
    converter: str = ""  # its describe()

    def timing_lines(self) -> list[str]:
        """The timing part of :meth:`summary`."""
        return [
            f"streamed {self.seconds_streamed:.2f} s in {self.blocks} blocks of {self.block_ms:.1f} ms",
            f"compute per block: median {self.compute_median_ms:.2f} ms, p99 "
            f"{self.compute_p99_ms:.2f} ms, max {self.compute_max_ms:.2f} ms "
            f"(thread CPU median {self.cpu_median_ms:.2f} ms)",
            f"real-time factor: median {self.rtf_median:.3f}, overall {self.rtf_overall:.3f}; "
            f"deadline misses: {self.deadline_misses} of {self.blocks} blocks",
            f"algorithmic latency: {self.latency_ms:.1f} ms",
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        return _jsonable(asdict(self))


@dataclass(kw_only=True)
class StreamReport(TimingReport):
    """What :func:`stream_files` measured and wrote."""

    passes: int = 0  # times the input list was streamed (``min_seconds``)
    flush_ms: float = 0.0
    rss_start_mb: float = 0.0  # before the first push (inputs loaded, buffers allocated)
    rss_10pct_mb: float = 0.0  # at the end of the first 10 % of the stream
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    streamed: list[Path] = field(default_factory=list)  # the inputs in the stream, in order
    input_gains: list[float] = field(default_factory=list)  # factor each was scaled by (gain="auto")
    files: list[FileResult] = field(default_factory=list)  # per input: written, skipped, failed

    @property
    def written(self) -> list[FileResult]:
        """The files written."""
        return [f for f in self.files if f.status == "converted"]

    @property
    def failed(self) -> list[FileResult]:
        """The inputs that could not be read, or whose output could not be written."""
        return [f for f in self.files if f.status == "failed"]

    def summary(self) -> str:
        """Several lines for people: timing, latency, memory, files."""
        lines = self.timing_lines()
        lines.insert(1, f"passes over the inputs: {self.passes}; flush {self.flush_ms:.1f} ms")
        lines.append(
            f"resident memory: {self.rss_start_mb:.1f} MB at start, {self.rss_10pct_mb:.1f} MB "
            f"after 10 %, {self.rss_end_mb:.1f} MB at end (max {self.rss_max_mb:.1f} MB)"
        )
        skipped = sum(f.status == "skipped" for f in self.files)
        lines.append(f"{len(self.streamed)} input(s) streamed: {len(self.written)} written, "
                     f"{skipped} skipped, {len(self.failed)} failed")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _push_sizes(push_samples: PushSizes, block: int) -> Callable[[], int]:
    if push_samples is None:
        return lambda: block
    if isinstance(push_samples, np.random.Generator):
        return random_push_sizes(push_samples, block)
    if isinstance(push_samples, int) and not isinstance(push_samples, bool):
        if push_samples < 1:
            raise ConfigError(f"push_samples must be >= 1, got {push_samples}")
        size = push_samples
        return lambda: size
    if callable(push_samples):
        return push_samples
    raise ConfigError(f"push_samples must be None, an int, a callable or a numpy Generator, got {push_samples!r}")


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    return False


@dataclass
class _Input:
    source: Path
    length: int  # samples at the converter's rate
    output: Path | None  # None: not written (no out_dir, or a conflict already reported)
    gain: float = 1.0
    start: int = 0  # span in one pass of the stream


def _plan_outputs(sources: Sequence[Path], out_dir: Path, overwrite: bool) -> dict[int, Path | FileResult]:
    """Each input's output path, or why it cannot have one (never an input, never
    two inputs onto one output, an existing file kept unless ``overwrite``)."""
    inputs: dict[Path, Path] = {}
    for src in sources:
        with contextlib.suppress(OSError):
            inputs.setdefault(src.resolve(), src)
    plan: dict[int, Path | FileResult] = {}
    claimed: dict[Path, Path] = {}
    for i, src in enumerate(sources):
        dst = out_dir / f"{src.stem}.wav"
        key = dst.resolve()
        clash = inputs.get(key) or (src if _same_file(src, dst) else None)  # links too
        if clash is not None:
            problem = FileProblem(src, f"output {dst} would overwrite input {clash}; choose another --out")
            plan[i] = FileResult(src, None, "failed", str(problem))
        elif key in claimed:
            problem = FileProblem(src, f"output {dst} is also the output of {claimed[key]} (same file name)")
            plan[i] = FileResult(src, None, "failed", str(problem))
        elif dst.is_dir():
            plan[i] = FileResult(src, None, "failed", str(FileProblem(dst, "output path is a directory")))
        elif dst.exists() and not overwrite:
            kept = OutputExists(dst, "exists already (kept; use --overwrite to replace it)")
            plan[i] = FileResult(src, dst, "skipped", str(kept))
        else:
            claimed[key] = src
            plan[i] = dst
    return plan


def _take(stream: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples of the endlessly repeated ``stream`` from ``start``."""
    length = len(stream)
    a = start % length
    if a + n <= length:
        return stream[a:a + n]
    return stream[(start + np.arange(n)) % length]


def stream_files(
    converter: StreamingConverterLike,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None,
    *,
    min_seconds: float = 0.0,
    push_samples: PushSizes = None,
    gain: float | Literal["auto"] = 1.0,
    on_block: Callable[[BlockTiming], None] | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    overwrite: bool = False,
) -> StreamReport:
    """Stream ``inputs`` through ``converter`` as one continuous stream; time it and
    write each file's converted span to ``out_dir/<stem>.wav`` (``None``: measure only).

    The converter is :meth:`reset` once, before the stream, and never during it: with
    ``min_seconds`` the list is streamed again and again (only the first pass is
    written) until that much audio went through, so growing state shows in the
    memory figures. ``push_samples`` sets the piece sizes (:data:`PushSizes`); the
    output must not depend on them. An input that cannot be read gets a ``"failed"``
    :class:`~voiceconv.conversion.converter.FileResult` whose message is one line
    naming it, and is left out of the stream; an output that cannot be written
    (it is an input, two inputs share a stem, it exists and not ``overwrite``) is
    reported without stopping the others. ``on_file`` receives each result as soon as
    it is known, ``on_block`` each block's timing.

    ``gain`` scales each file's samples before they join the stream (clipped to
    [-1, 1], as a microphone's would be): a number, or ``"auto"`` for the level the
    model was trained at, measured per file (:func:`auto_gain`). The converter's own
    ``gain`` applies on top; the usual split is ``"auto"`` here and 1.0 there.
    """
    sr = int(converter.sample_rate)
    block = int(converter.block_samples)
    if block < 1 or sr < 1:
        raise ConfigError(f"converter reports block_samples={block}, sample_rate={sr}")
    if not math.isfinite(min_seconds) or min_seconds < 0:
        raise ConfigError(f"min_seconds must be >= 0, got {min_seconds}")
    if gain != "auto" and not (isinstance(gain, int | float) and math.isfinite(gain) and gain > 0):
        raise ConfigError(f"gain must be a positive number or 'auto', got {gain!r}")
    next_size = _push_sizes(push_samples, block)
    sources = [Path(p) for p in inputs]
    results: list[FileResult | None] = [None] * len(sources)

    def report(index: int, res: FileResult) -> None:
        results[index] = res
        if on_file is not None:
            on_file(res)

    out_path = Path(out_dir) if out_dir is not None else None
    plan = _plan_outputs(sources, out_path, overwrite) if out_path is not None else {}
    loaded: list[tuple[int, _Input]] = []
    wavs: list[np.ndarray] = []
    for i, src in enumerate(sources):
        try:
            wav, _ = load_audio(src, sr, mono=True)
            factor = auto_gain(converter, wav) if gain == "auto" else float(gain)
            if factor != 1.0:
                wav = np.clip(wav * np.float32(factor), -1.0, 1.0)
        except Exception as exc:  # one bad file never stops the others
            report(i, FileResult(src, None, "failed", _failure_line(src, exc)))
            continue
        target = plan.get(i)
        if isinstance(target, FileResult):
            report(i, target)  # streamed all the same, not written
            target = None
        loaded.append((i, _Input(src, len(wav), target, factor)))
        wavs.append(wav)

    rep = StreamReport(latency_ms=1000.0 * converter.latency_samples / sr, converter=converter.describe())
    if not loaded:
        rep.files = [r for r in results if r is not None]
        return rep
    pos = 0
    for _, item in loaded:
        item.start = pos
        pos += item.length
    stream = np.concatenate(wavs).astype(np.float32, copy=False)
    del wavs
    pass_len = len(stream)
    passes = max(1, math.ceil(min_seconds * sr / pass_len))
    total = passes * pass_len
    timer = BlockTimer(sr, capacity=2 * math.ceil(total / max(1, int(converter.block_samples))) + 16)
    writing = any(item.output is not None for _, item in loaded)
    rescaled = any(item.gain != 1.0 for _, item in loaded)
    if rescaled and hasattr(converter, "clip"):
        converter.clip = False  # each file's span is brought back to its level below, then clipped
    first = np.empty(pass_len if writing else 0, dtype=np.float32)
    first.fill(0.0)  # touch its pages now, so that RSS growth during the stream is the converter's

    converter.reset()
    done_in = done_out = 0
    rss_start = rss_10 = resident_bytes()
    rss_max = rss_start
    mark_10 = max(1, total // 10)

    def collect(out: np.ndarray) -> None:
        nonlocal done_out
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        if done_out + len(out) > done_in:
            raise RuntimeError(
                f"converter returned {done_out + len(out)} samples for {done_in} pushed: "
                "its output is not time-aligned with its input"
            )
        if writing and done_out < pass_len:
            n = min(len(out), pass_len - done_out)
            first[done_out:done_out + n] = out[:n]
        done_out += len(out)

    zeros = 0
    while done_in < total:
        n = int(next_size())
        zeros = zeros + 1 if n == 0 else 0
        if n < 0 or zeros > 1000:
            raise ConfigError(f"push sizes must be >= 0 and not all 0, got {n} ({zeros} zeros in a row)")
        piece = np.array(_take(stream, done_in, min(n, total - done_in)))  # its own, like a callback's
        out, row = timer.timed_push(converter, piece)
        done_in += len(piece)
        collect(out)
        rss = resident_bytes()
        rss_max = max(rss_max, rss)
        if done_in >= mark_10 > done_in - len(piece):
            rss_10 = rss
        if on_block is not None:
            on_block(row)
    t0 = time.perf_counter()
    tail = converter.flush()
    rep.flush_ms = 1000.0 * (time.perf_counter() - t0)
    collect(tail)
    if done_out != done_in:
        raise RuntimeError(
            f"converter returned {done_out} samples in all for {done_in} pushed: "
            "after flush the output must be as long as the input"
        )
    rss_end = resident_bytes()
    rss_max = max(rss_max, rss_end)

    for i, item in loaded:
        if item.output is None:
            continue  # no out_dir, or its conflict was reported before the stream
        try:
            span = first[item.start:item.start + item.length]
            if rescaled:  # back at the input's level (as offline conversion does), then clipped
                span = np.clip(span / np.float32(item.gain), -1.0, 1.0)
            save_audio(item.output, span, sr, overwrite=overwrite)
        except OutputExists as exc:
            report(i, FileResult(item.source, item.output, "skipped", str(exc)))
        except Exception as exc:
            report(i, FileResult(item.source, None, "failed", _failure_line(item.source, exc)))
        else:
            report(i, FileResult(item.source, item.output, "converted"))

    mb = 1.0 / 2**20
    for key, value in timer.fields().items():
        setattr(rep, key, value)
    rep.passes = passes
    rep.streamed = [item.source for _, item in loaded]
    rep.input_gains = [item.gain for _, item in loaded]
    rep.rss_start_mb, rep.rss_10pct_mb = rss_start * mb, rss_10 * mb
    rep.rss_end_mb, rep.rss_max_mb = rss_end * mb, rss_max * mb
    rep.files = [r for r in results if r is not None]
    return rep
