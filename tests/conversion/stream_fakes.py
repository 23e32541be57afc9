"""Test doubles for the streaming runners: a delay-line converter and a fake
``sounddevice`` module. Neither needs a model, a checkpoint or an audio device."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable

import numpy as np


class DelayConverter:
    """Follows the ``StreamingConverter`` contract with the simplest conversion there
    is: output = ``gain * input``, computed a block at a time and returned up to
    ``latency_samples`` late (time-aligned: output sample n is input sample n).

    ``sleep_on`` maps push indices (counted from the last reset) to seconds to sleep
    there (deadline misses); ``hold_on`` makes that push wait on ``release`` (an
    audio worker stalled for as long as a test wants).
    """

    def __init__(self, sample_rate: int = 8000, block_samples: int = 80, latency_samples: int = 200,
                 gain: float = 1.0, sleep_on: dict[int, float] | None = None,
                 hold_on: int | None = None) -> None:
        assert latency_samples >= block_samples
        self.sample_rate = sample_rate
        self.block_samples = block_samples
        self.latency_samples = latency_samples
        self.gain = gain
        self.sleep_on = dict(sleep_on or {})
        self.hold_on = hold_on
        self.release = threading.Event()
        self.resets = 0
        self.reset()
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.pushes = 0
        self.pushed = 0
        self.returned = 0
        self.pending: list[np.ndarray] = []  # converted, not yet returned
        self.flushed = False

    def _ready(self) -> int:
        """Samples returnable now: whole blocks computed, minus the look-ahead."""
        b = self.block_samples
        return min(self.pushed, max(0, (self.pushed // b) * b - (self.latency_samples - b)))

    def _take(self, n: int) -> np.ndarray:
        buf = np.concatenate(self.pending) if self.pending else np.zeros(0, np.float32)
        out, rest = buf[:n], buf[n:]
        self.pending = [rest]
        self.returned += len(out)
        return out.astype(np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        assert not self.flushed, "push after flush without reset"
        samples = np.asarray(samples, dtype=np.float32)
        assert samples.ndim == 1
        index = self.pushes
        self.pushes += 1
        if index in self.sleep_on:
            time.sleep(self.sleep_on[index])
        if index == self.hold_on:
            self.release.wait(10)
        self.pending.append(self.gain * samples)
        self.pushed += len(samples)
        return self._take(self._ready() - self.returned)

    def flush(self) -> np.ndarray:
        self.flushed = True
        return self._take(self.pushed - self.returned)

    def describe(self) -> str:
        return (f"delay line, gain {self.gain}, block {self.block_samples} samples, "
                f"latency {self.latency_samples} samples")


class FakeFlags:
    """Like ``sounddevice.CallbackFlags``: falsy when nothing happened."""

    def __init__(self, output_underflow: bool = False) -> None:
        self.output_underflow = output_underflow
        self.input_overflow = False

    def __bool__(self) -> bool:
        return self.output_underflow or self.input_overflow


class FakeSounddevice(types.SimpleNamespace):
    """A stand-in for the ``sounddevice`` module: ``query_devices`` and a duplex
    ``Stream`` that plays ``blocks`` (prepared input) through the callback from its own
    thread and keeps what the callback wrote to ``outdata`` in ``played``.

    ``pace(callback, i)`` runs after callback ``i`` (default: wait until the worker has
    finished that block, so that output timing is exact); ``flags_on`` lists callbacks
    whose status reports an output underflow.
    """

    def __init__(self, blocks: list[np.ndarray] | None = None,
                 devices: list[dict] | None = None, default: tuple[int, int] = (0, 1),
                 pace: Callable[[object, int], None] | None = None,
                 flags_on: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.blocks = blocks or []
        self.devices = devices if devices is not None else [
            {"name": "fake mic", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
             "default_samplerate": 48000.0},
            {"name": "fake speaker", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
             "default_samplerate": 48000.0},
        ]
        self.default = types.SimpleNamespace(device=list(default))
        self.pace = pace or (lambda cb, i: cb.wait_processed(i + 1, timeout=5.0))
        self.flags_on = flags_on
        self.played: list[np.ndarray] = []
        self.opened: dict = {}
        fake = self

        class PortAudioError(Exception):
            pass

        class CallbackStop(Exception):
            pass

        class Stream:
            def __init__(self, **kwargs) -> None:
                fake.opened = kwargs
                self.callback = kwargs["callback"]
                self.blocksize = kwargs["blocksize"]
                self.latency = (0.01, 0.02)
                self._thread: threading.Thread | None = None
                self._stop = threading.Event()

            def _run(self) -> None:
                for i, block in enumerate(fake.blocks):
                    if self._stop.is_set():
                        return
                    indata = block.reshape(-1, 1).astype(np.float32)
                    outdata = np.full((len(block), 1), np.nan, np.float32)
                    try:
                        self.callback(indata, outdata, len(block), None, FakeFlags(i in fake.flags_on))
                    except CallbackStop:
                        fake.played.append(outdata[:, 0].copy())
                        return
                    fake.played.append(outdata[:, 0].copy())
                    fake.pace(self.callback, i)

            def start(self) -> None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

            def stop(self) -> None:
                self._stop.set()
                if self._thread is not None:
                    self._thread.join(10)

            def close(self) -> None:
                self.stop()

            def __enter__(self):
                self.start()
                return self

            def __exit__(self, *exc) -> None:
                self.close()

        self.PortAudioError = PortAudioError
        self.CallbackStop = CallbackStop
        self.Stream = Stream

    def query_devices(self, device=None, kind=None):
        if device is None and kind is None:
            return list(self.devices)
        if device is None:
            device = self.default.device[0 if kind == "input" else 1]
            if device < 0 or device >= len(self.devices):
                raise self.PortAudioError(f"Error querying device {device}")
        if isinstance(device, str):
            found = [i for i, d in enumerate(self.devices) if device.lower() in d["name"].lower()]
            if not found:
                raise ValueError(f"No input/output device matching {device!r}")
            device = found[0]
        if not 0 <= device < len(self.devices):
            raise self.PortAudioError(f"Error querying device {device}")
        info = dict(self.devices[device], index=device)
        channels = "max_input_channels" if kind == "input" else "max_output_channels"
        if kind is not None and info[channels] < 1:
            raise ValueError(f"Not an {kind} device: {device}")
        return info
