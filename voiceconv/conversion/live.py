"""Live mode of ``voiceconv-stream``: microphone in, converted voice out, in real time.

:func:`run_live` opens one duplex ``sounddevice`` stream (mono, at the converter's
rate, one converter block per callback) and splits the work over two threads:

* the **audio callback** (PortAudio's thread) only moves samples: it copies the
  input block into a bounded queue (``put_nowait``; when the queue is full the
  block is dropped and counted, it never waits) and fills the output block from a
  bounded ring buffer of converted samples (:class:`SampleFifo`, a short lock);
* a **worker thread** takes input blocks from the queue, calls
  ``converter.push`` (timed like the file mode: :class:`BlockTimer`) and appends
  what it returns to the ring buffer.

Playback starts once one device block of converted audio is waiting, so the
output is the input delayed by at most ``(ceil(latency / block) + 1)`` blocks
(the converter's algorithmic latency, rounded up to blocks, plus the block being
computed) plus the device's own buffers. After that, a callback that finds fewer
converted samples than it must play is an **underrun**: what is there is played,
the rest of the block is zeros, and the late samples play afterwards (the
delay grows by the gap). The ring buffer holds at most ``buffer_blocks`` blocks
beyond that; when a worker catching up after a stall overfills it, the oldest
samples are dropped (counted), which brings the delay back down. A **deadline
miss** is as in file mode: a push that took longer than its block lasts.

sounddevice is an optional dependency (the ``live`` extra) and needs PortAudio;
either missing, or no usable device, is an :class:`~voiceconv.errors.AudioDeviceError`
with one line saying what to do.
"""

from __future__ import annotations

import importlib
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from voiceconv.conversion.stream_runner import (
    BlockTimer,
    BlockTiming,
    StreamingConverterLike,
    TimingReport,
)
from voiceconv.errors import AudioDeviceError, ConfigError

FILE_MODE_HINT = "use file mode: voiceconv-stream --input FILE ..."


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def import_sounddevice() -> ModuleType:
    """The ``sounddevice`` module, or :class:`AudioDeviceError` saying how to get it.

    Importing sounddevice raises ``OSError`` (not ``ImportError``) when the PortAudio
    library is missing; both are turned into one actionable line.
    """
    try:
        return importlib.import_module("sounddevice")
    except ImportError:
        raise AudioDeviceError(
            f"live mode needs the 'live' extra: pip install voiceconv[live] (or {FILE_MODE_HINT})"
        ) from None
    except OSError as exc:
        raise AudioDeviceError(
            f"live mode needs the PortAudio library, which sounddevice could not load "
            f"({_one_line(exc)}): apt-get install libportaudio2 (or {FILE_MODE_HINT})"
        ) from None


@dataclass(frozen=True)
class AudioDevice:
    """One audio device as PortAudio lists it."""

    index: int
    name: str
    hostapi: int
    inputs: int  # max input channels
    outputs: int  # max output channels
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False

    def __str__(self) -> str:
        mark = ("<" if self.default_input else " ") + (">" if self.default_output else " ")
        return (f"{mark} {self.index:3d} {self.name} ({self.inputs} in, {self.outputs} out, "
                f"{self.default_samplerate:g} Hz)")


def list_devices(sd: ModuleType | Any | None = None) -> list[AudioDevice]:
    """The audio devices sounddevice sees (possibly none); ``<``/``>`` in ``str()``
    mark the default input/output."""
    sd = import_sounddevice() if sd is None else sd
    default_in, default_out = _defaults(sd)
    return [
        AudioDevice(
            index=i,
            name=str(d.get("name", "?")),
            hostapi=int(d.get("hostapi", 0)),
            inputs=int(d.get("max_input_channels", 0)),
            outputs=int(d.get("max_output_channels", 0)),
            default_samplerate=float(d.get("default_samplerate", 0.0)),
            default_input=i == default_in,
            default_output=i == default_out,
        )
        for i, d in enumerate(sd.query_devices())
    ]


def _defaults(sd: Any) -> tuple[int, int]:
    try:
        pair = list(sd.default.device)
        return int(pair[0]), int(pair[1])
    except (AttributeError, TypeError, ValueError, IndexError):
        return -1, -1


def pick_device(sd: Any, spec: str | int | None, kind: str) -> int:
    """Index of the ``kind`` (``"input"``/``"output"``) device named by ``spec`` (an
    index, or part of a name), or of the default one when ``spec`` is None."""
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    option = f"--{kind}-device"
    devices = list(sd.query_devices())
    if not any(int(d.get(channels, 0)) > 0 for d in devices):
        lists = "lists none" if not devices else f"lists {len(devices)} device(s), none with {kind}"
        raise AudioDeviceError(f"no audio {kind} device found (sounddevice {lists}); {FILE_MODE_HINT}")
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    try:
        info = sd.query_devices(spec, kind=kind) if spec is not None else sd.query_devices(kind=kind)
    except Exception as exc:  # ValueError, sounddevice.PortAudioError
        if spec is None:
            raise AudioDeviceError(
                f"no default audio {kind} device; choose one with {option} "
                "(voiceconv-stream --list-devices lists them)") from None
        raise AudioDeviceError(
            f"audio {kind} device {spec!r}: {_one_line(exc)} "
            "(voiceconv-stream --list-devices lists them)") from None
    if int(info.get(channels, 0)) < 1:
        raise AudioDeviceError(f"audio device {spec!r} has no {kind} channels; choose another with {option}")
    if "index" in info:
        return int(info["index"])
    return next((i for i, d in enumerate(devices) if d.get("name") == info.get("name")), -1)


class SampleFifo:
    """Bounded, thread-safe ring buffer of float32 samples (one writer, one reader).

    A write that would overfill it drops the oldest samples (returned, so the caller
    can count them): a late burst shortens the queue instead of growing the delay.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._start = 0
        self._size = 0
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Samples it can hold."""
        return len(self._buf)

    def __len__(self) -> int:
        with self._lock:
            return self._size

    def write(self, samples: np.ndarray) -> int:
        """Append ``samples``; returns how many old samples were dropped to fit them."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        cap = len(self._buf)
        with self._lock:
            dropped = 0
            if len(x) > cap:
                dropped += len(x) - cap
                x = x[-cap:]
            excess = self._size + len(x) - cap
            if excess > 0:
                self._start = (self._start + excess) % cap
                self._size -= excess
                dropped += excess
            end = (self._start + self._size) % cap
            first = min(len(x), cap - end)
            self._buf[end:end + first] = x[:first]
            self._buf[:len(x) - first] = x[first:]
            self._size += len(x)
            return dropped

    def read_into(self, out: np.ndarray, *, at_least: int = 0) -> int:
        """Move up to ``len(out)`` samples into ``out`` (nothing unless at least
        ``at_least`` are waiting); returns how many."""
        cap = len(self._buf)
        with self._lock:
            if self._size < at_least:
                return 0
            n = min(len(out), self._size)
            first = min(n, cap - self._start)
            out[:first] = self._buf[self._start:self._start + first]
            out[first:n] = self._buf[:n - first]
            self._start = (self._start + n) % cap
            self._size -= n
            return n


@dataclass(kw_only=True)
class LiveReport(TimingReport):
    """What :func:`run_live` measured. ``blocks``/timing fields count the blocks the
    worker converted; the rest is what the audio callback saw."""

    seconds_received: float = 0.0  # input audio delivered by the device
    callbacks: int = 0
    underruns: int = 0  # callbacks (after playback began) short of converted audio
    underrun_samples: int = 0  # zeros played in their place
    underrun_ms: float = 0.0  # the same in ms
    dropped_input_blocks: int = 0  # input blocks lost because the worker's queue was full
    dropped_output_samples: int = 0  # converted samples dropped from an overfull output buffer
    device_status_flags: int = 0  # callbacks whose PortAudio status reported an over/underflow
    device_latency_ms: float = 0.0  # input + output latency PortAudio reports for the stream
    interrupted: bool = False  # stopped by Ctrl-C

    def summary(self) -> str:
        """Several lines for people."""
        lines = self.timing_lines()
        lines.append(
            f"output underruns: {self.underruns} of {self.callbacks} callbacks "
            f"({self.underrun_ms:.1f} ms of zeros); dropped: "
            f"{self.dropped_input_blocks} input blocks, {self.dropped_output_samples} output samples; "
            f"PortAudio status flags: {self.device_status_flags}"
        )
        lines.append(f"device latency (in + out): {self.device_latency_ms:.1f} ms")
        return "\n".join(lines)


class LivePipeline:
    """The audio callback (call it like a sounddevice duplex callback) and the
    worker loop, with their counters. :func:`run_live` wires it to a stream."""

    def __init__(
        self,
        converter: StreamingConverterLike,
        *,
        stop_after_samples: int | None = None,
        queue_blocks: int = 64,
        buffer_blocks: int = 4,
        callback_stop: type[BaseException] | None = None,
        on_block: Callable[[BlockTiming], None] | None = None,
    ) -> None:
        block = int(converter.block_samples)
        self.converter = converter
        self.timer = BlockTimer(int(converter.sample_rate))
        self.inbox: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=queue_blocks)
        self.outbox = SampleFifo((buffer_blocks + 2) * block)
        self.stop_after_samples = stop_after_samples
        self.callback_stop = callback_stop
        self.on_block = on_block
        self.done = threading.Event()  # enough audio received, or the worker failed
        self.error: BaseException | None = None
        self.playing = False
        self.callbacks = self.received = 0
        self.underruns = self.underrun_samples = 0
        self.dropped_input_blocks = self.dropped_output_samples = 0
        self.device_status_flags = 0
        self.processed = 0
        self.device_latency_ms = 0.0
        self.last_callback = 0.0  # time.monotonic() of the latest callback
        self._progress = threading.Condition()

    def __call__(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """sounddevice duplex callback: move samples, never wait, never compute."""
        self.last_callback = time.monotonic()
        self.callbacks += 1
        if status:
            self.device_status_flags += 1
        try:
            self.inbox.put_nowait(np.array(indata[:, 0], dtype=np.float32))  # PortAudio reuses indata
        except queue.Full:
            self.dropped_input_blocks += 1
        self.received += frames
        out = outdata[:, 0]
        n = self.outbox.read_into(out, at_least=0 if self.playing else frames)
        self.playing = self.playing or n > 0
        if n < frames:
            out[n:] = 0.0
            if self.playing:
                self.underruns += 1
                self.underrun_samples += frames - n
        if outdata.shape[1] > 1:
            outdata[:, 1:] = outdata[:, :1]
        if self.stop_after_samples is not None and self.received >= self.stop_after_samples:
            self.done.set()
            if self.callback_stop is not None:
                raise self.callback_stop

    def work(self) -> None:
        """Worker loop: push each queued block, queue its output; ``None`` ends it."""
        while True:
            block = self.inbox.get()
            if block is None:
                return
            try:
                out, row = self.timer.timed_push(self.converter, block)
                self.dropped_output_samples += self.outbox.write(out)
                if self.on_block is not None:
                    self.on_block(row)
            except BaseException as exc:  # reported by run_live after the stream is closed
                self.error = exc
                self.done.set()
            with self._progress:
                self.processed += 1
                self._progress.notify_all()
            if self.error is not None:
                return

    def wait_processed(self, n: int, timeout: float | None = None) -> bool:
        """Wait until the worker has finished ``n`` blocks (or failed); False on timeout.
        Lets a simulated device pace itself exactly."""
        with self._progress:
            return self._progress.wait_for(lambda: self.processed >= n or self.error is not None, timeout)

    def stop_worker(self, worker: threading.Thread) -> None:
        """Discard unconverted input, end the worker loop and wait for it."""
        while True:
            try:
                self.inbox.get_nowait()
            except queue.Empty:
                break
        self.inbox.put(None)
        worker.join()

    def report(self, latency_samples: int, describe: str) -> LiveReport:
        """The counters as a :class:`LiveReport`."""
        sr = self.timer.sample_rate
        rep = LiveReport(**self.timer.fields())
        rep.latency_ms = 1000.0 * latency_samples / sr
        rep.converter = describe
        rep.seconds_received = self.received / sr
        rep.callbacks = self.callbacks
        rep.underruns, rep.underrun_samples = self.underruns, self.underrun_samples
        rep.underrun_ms = 1000.0 * self.underrun_samples / sr
        rep.dropped_input_blocks = self.dropped_input_blocks
        rep.dropped_output_samples = self.dropped_output_samples
        rep.device_status_flags = self.device_status_flags
        rep.device_latency_ms = self.device_latency_ms
        return rep


def run_live(
    converter: StreamingConverterLike,
    input_device: str | int | None = None,
    output_device: str | int | None = None,
    seconds: float | None = None,
    sd: ModuleType | Any | None = None,
    *,
    queue_blocks: int = 64,
    buffer_blocks: int = 4,
    no_audio_timeout_s: float = 5.0,
    on_block: Callable[[BlockTiming], None] | None = None,
) -> LiveReport:
    """Convert the input device's audio to the output device until ``seconds`` of
    input have arrived (``None``: until Ctrl-C); returns what was measured.

    ``sd`` is the sounddevice module (tests pass a fake). The converter is reset
    first. Ctrl-C ends the run normally (``report.interrupted``). Raises
    :class:`AudioDeviceError` when sounddevice/PortAudio or a device is missing,
    the stream cannot be opened, or no audio arrives for ``no_audio_timeout_s``
    (at the start or later: a device that stopped);
    an exception inside ``converter.push`` is re-raised after the stream is closed.
    """
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"seconds must be > 0, got {seconds}")
    if queue_blocks < 1 or buffer_blocks < 0:
        raise ValueError(f"queue_blocks >= 1 and buffer_blocks >= 0, got {queue_blocks}, {buffer_blocks}")
    sd = import_sounddevice() if sd is None else sd
    in_dev = pick_device(sd, input_device, "input")
    out_dev = pick_device(sd, output_device, "output")
    sr = int(converter.sample_rate)
    converter.reset()
    pipe = LivePipeline(
        converter,
        stop_after_samples=None if seconds is None else max(1, round(seconds * sr)),
        queue_blocks=queue_blocks,
        buffer_blocks=buffer_blocks,
        callback_stop=getattr(sd, "CallbackStop", None),
        on_block=on_block,
    )
    worker = threading.Thread(target=pipe.work, name="voiceconv-live-worker", daemon=True)
    worker.start()
    interrupted = False
    try:
        _play(sd, pipe, (in_dev, out_dev), no_audio_timeout_s)
    except KeyboardInterrupt:  # wherever it lands while the stream is opened, runs or closes
        interrupted = True
    finally:
        pipe.stop_worker(worker)
    if pipe.error is not None:
        raise pipe.error
    rep = pipe.report(int(converter.latency_samples), converter.describe())
    rep.interrupted = interrupted
    return rep


def _play(sd: Any, pipe: LivePipeline, device: tuple[int, int], no_audio_timeout_s: float) -> None:
    """Open the duplex stream with ``pipe`` as its callback and wait until ``pipe`` is
    done (or the device stops); the stream is closed on the way out."""
    sr, block = pipe.timer.sample_rate, int(pipe.converter.block_samples)
    try:
        stream = sd.Stream(samplerate=sr, blocksize=block, device=device, channels=1,
                           dtype="float32", callback=pipe)
    except Exception as exc:  # sounddevice.PortAudioError, ValueError
        raise AudioDeviceError(
            f"could not open audio devices {device[0]} (in) and {device[1]} (out) at {sr} Hz, "
            f"mono, {block}-sample blocks: {_one_line(exc)}") from None
    with stream:
        lat = getattr(stream, "latency", None)
        if isinstance(lat, tuple | list):
            pipe.device_latency_ms = 1000.0 * float(sum(lat))
        elif isinstance(lat, int | float):
            pipe.device_latency_ms = 1000.0 * float(lat)
        pipe.last_callback = time.monotonic()
        while not pipe.done.wait(0.05):
            if time.monotonic() - pipe.last_callback > no_audio_timeout_s:
                if pipe.callbacks == 0:
                    raise AudioDeviceError(
                        f"no audio arrived from input device {device[0]} in {no_audio_timeout_s:g} s")
                raise AudioDeviceError(
                    f"input device {device[0]} stopped delivering audio (nothing for "
                    f"{no_audio_timeout_s:g} s after {pipe.callbacks} blocks)")
            if not getattr(stream, "active", True) and pipe.callbacks:
                return  # PortAudio ended the stream (device gone)
