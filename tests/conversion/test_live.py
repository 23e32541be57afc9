"""Live mode with a fake sounddevice module and a delay-line converter: converted audio
reaches the output in order; underruns (a stalled worker) are zero-filled and counted;
an overfull output buffer drops its oldest samples; clear one-line errors when
sounddevice, PortAudio or a device is missing."""

from __future__ import annotations

import _thread
import importlib.abc
import math
import signal
import sys

import numpy as np
import pytest
from stream_fakes import DelayConverter, FakeSounddevice

from voiceconv.conversion.live import (
    LivePipeline,
    SampleFifo,
    import_sounddevice,
    list_devices,
    pick_device,
    run_live,
)
from voiceconv.errors import AudioDeviceError

SR, B, L = 8000, 80, 200


def blocks(n: int, seed: int = 0) -> list[np.ndarray]:
    """n input blocks of samples in [0.2, 0.4]: never zero, so zero-fill is recognisable."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.2, 0.4, B).astype(np.float32) for _ in range(n)]


def played(fake: FakeSounddevice) -> np.ndarray:
    out = np.concatenate(fake.played)
    assert np.isfinite(out).all()  # every output sample was written by the callback
    return out


def test_converted_audio_reaches_the_output_in_order() -> None:
    ins = blocks(40)
    fake = FakeSounddevice(ins)
    conv = DelayConverter(SR, B, L, gain=0.5)
    rep = run_live(conv, seconds=30 * B / SR, sd=fake)
    assert fake.opened["samplerate"] == SR and fake.opened["blocksize"] == B
    assert fake.opened["channels"] == 1 and fake.opened["device"] == (0, 1)
    out = played(fake)
    assert len(fake.played) == rep.callbacks == 30  # stopped after `seconds` of input (CallbackStop)
    assert rep.seconds_received == pytest.approx(30 * B / SR)
    assert rep.underruns == rep.underrun_samples == 0 and rep.dropped_input_blocks == 0
    delay = int(np.argmax(out != 0))  # playback starts on a block boundary...
    assert delay % B == 0 and delay <= (math.ceil(L / B) + 1) * B  # ...within latency + one block
    expected = 0.5 * np.concatenate(ins)
    np.testing.assert_array_equal(out[delay:], expected[:len(out) - delay])
    assert rep.blocks in (29, 30)  # the last block may be discarded unconverted at the stop
    assert rep.latency_ms == pytest.approx(1000 * L / SR)
    assert rep.device_latency_ms == pytest.approx(30.0) and not rep.interrupted
    assert conv.resets == 1


def test_a_stalled_worker_gives_counted_zero_filled_underruns() -> None:
    stall, m = 10, 4  # push 10 blocks until after callback 13
    conv = DelayConverter(SR, B, L, hold_on=stall)

    def pace(cb, i: int) -> None:
        if stall <= i < stall + m - 1:
            return  # the worker is stuck: the device keeps calling
        if i == stall + m - 1:
            conv.release.set()
        assert cb.wait_processed(i + 1, timeout=5.0)

    ins = blocks(30, seed=1)
    fake = FakeSounddevice(ins, pace=pace, flags_on=(12,))
    rep = run_live(conv, seconds=30 * B / SR, sd=fake)
    out = played(fake)
    # callback 10 plays what was queued; 11 .. 13 find too little: three underruns
    assert rep.underruns == m - 1
    delay = int(np.argmax(out != 0))
    zeros_after_start = int(np.sum(out[delay:] == 0))
    assert rep.underrun_samples == zeros_after_start > 0
    assert rep.underrun_ms == pytest.approx(1000 * zeros_after_start / SR)
    # nothing lost, nothing reordered: without the zeros it is the converted input
    heard = out[delay:][out[delay:] != 0]
    np.testing.assert_array_equal(heard, np.concatenate(ins)[:len(heard)])
    assert rep.dropped_output_samples == 0 and rep.device_status_flags == 1


def test_an_overfull_output_buffer_drops_its_oldest_samples() -> None:
    stall, m, buffer_blocks = 5, 7, 2  # capacity (2 + 2) blocks
    conv = DelayConverter(SR, B, L, hold_on=stall)

    def pace(cb, i: int) -> None:
        if stall <= i < stall + m - 1:
            return
        if i == stall + m - 1:
            conv.release.set()
        assert cb.wait_processed(i + 1, timeout=5.0)

    ins = blocks(25, seed=2)
    fake = FakeSounddevice(ins, pace=pace)
    rep = run_live(conv, seconds=25 * B / SR, sd=fake, buffer_blocks=buffer_blocks)
    # the worker catches up m blocks at once into an empty buffer of 4 blocks
    assert rep.dropped_output_samples == (m - (buffer_blocks + 2)) * B
    out = played(fake)
    delay = int(np.argmax(out != 0))
    heard = out[delay:][out[delay:] != 0]
    conv_all = np.concatenate(ins)
    # what was heard is the converted input with one gap where the oldest were dropped
    cut = int(np.argmax(heard != conv_all[:len(heard)]))
    skip = rep.dropped_output_samples
    np.testing.assert_array_equal(heard[:cut], conv_all[:cut])
    np.testing.assert_array_equal(heard[cut:], conv_all[cut + skip:cut + skip + len(heard) - cut])


def test_input_blocks_are_dropped_not_waited_for_when_the_queue_is_full() -> None:
    conv = DelayConverter(SR, B, L, hold_on=0)
    pipe = LivePipeline(conv, queue_blocks=2)
    outdata = np.zeros((B, 1), np.float32)
    for blk in blocks(5):
        pipe(blk.reshape(-1, 1), outdata, B, None, None)  # no worker: the queue fills up
    assert pipe.dropped_input_blocks == 3 and pipe.received == 5 * B
    assert not pipe.playing and pipe.underruns == 0  # silence before playback is not an underrun
    assert (outdata == 0).all()


def test_an_error_in_push_is_raised_after_the_stream_is_closed() -> None:
    class Broken(DelayConverter):
        def push(self, samples: np.ndarray) -> np.ndarray:
            if self.pushes == 3:
                raise RuntimeError("model exploded")
            return super().push(samples)

    with pytest.raises(RuntimeError, match="model exploded"):
        run_live(Broken(SR, B, L), sd=FakeSounddevice(blocks(10)))


def test_ctrl_c_ends_the_run_with_a_report() -> None:
    fake = FakeSounddevice(blocks(5))

    def ctrl_c(row) -> None:
        if row.index == 2:
            _thread.interrupt_main()  # as SIGINT would: KeyboardInterrupt in the main thread

    # a shell's background job (`cmd &`, nohup) starts Python with SIGINT ignored, and then
    # interrupt_main does nothing; give the test Python's own Ctrl-C handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rep = run_live(DelayConverter(SR, B, L), sd=fake, on_block=ctrl_c)  # no `seconds`: until Ctrl-C
    finally:
        signal.signal(signal.SIGINT, previous)
    assert rep.interrupted and rep.blocks >= 3


def test_no_audio_from_the_device_is_an_error() -> None:
    with pytest.raises(AudioDeviceError, match="no audio arrived from input device 0 in 0.2 s"):
        run_live(DelayConverter(SR, B, L), sd=FakeSounddevice([]), no_audio_timeout_s=0.2)
    # a device that stops delivering (here: after 5 blocks) does not hang the run either
    with pytest.raises(AudioDeviceError, match=r"input device 0 stopped delivering audio \(nothing for 0.3 s after 5 blocks\)"):
        run_live(DelayConverter(SR, B, L), sd=FakeSounddevice(blocks(5)), seconds=10, no_audio_timeout_s=0.3)


def test_a_stream_that_cannot_be_opened_is_one_line() -> None:
    fake = FakeSounddevice(blocks(2))

    def refuse(**kwargs):
        raise fake.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    fake.Stream = refuse
    with pytest.raises(AudioDeviceError) as info:
        run_live(DelayConverter(SR, B, L), sd=fake, seconds=1)
    assert "at 8000 Hz" in str(info.value) and "Invalid sample rate" in str(info.value)
    assert "\n" not in str(info.value)


def test_no_devices_and_unknown_devices_are_one_line() -> None:
    none = FakeSounddevice(devices=[], default=(-1, -1))
    with pytest.raises(AudioDeviceError) as info:
        run_live(DelayConverter(SR, B, L), sd=none)
    msg = str(info.value)
    assert msg.startswith("no audio input device found (sounddevice lists none)")
    assert "voiceconv-stream --input FILE" in msg and "\n" not in msg
    speaker_only = FakeSounddevice(devices=[{"name": "spk", "max_input_channels": 0,
                                             "max_output_channels": 2}])
    with pytest.raises(AudioDeviceError, match="no audio input device found"):
        pick_device(speaker_only, None, "input")
    fake = FakeSounddevice(default=(-1, 1))
    with pytest.raises(AudioDeviceError, match="no default audio input device; choose one with --input-device"):
        pick_device(fake, None, "input")
    with pytest.raises(AudioDeviceError, match="audio input device 'usb'"):
        pick_device(fake, "usb", "input")
    with pytest.raises(AudioDeviceError, match="audio output device 0"):
        pick_device(fake, "0", "output")  # the mic has no output channels
    assert pick_device(fake, "mic", "input") == 0 and pick_device(fake, "1", "output") == 1


def test_list_devices() -> None:
    devs = list_devices(FakeSounddevice())
    assert [(d.index, d.inputs, d.outputs) for d in devs] == [(0, 1, 0), (1, 0, 2)]
    assert devs[0].default_input and devs[1].default_output
    assert "fake mic" in str(devs[0]) and str(devs[0]).startswith("<")
    assert list_devices(FakeSounddevice(devices=[])) == []


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise self.exc
        return None


def test_missing_sounddevice_or_portaudio_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(AudioDeviceError) as info:
        import_sounddevice()
    assert str(info.value).startswith("live mode needs the 'live' extra: pip install voiceconv[live]")
    with pytest.raises(AudioDeviceError, match="needs the 'live' extra"):
        run_live(DelayConverter(SR, B, L))
    monkeypatch.delitem(sys.modules, "sounddevice")
    monkeypatch.setattr(sys, "meta_path", [_Refuse(OSError("PortAudio library not found")), *sys.meta_path])
    with pytest.raises(AudioDeviceError) as info:
        list_devices()
    msg = str(info.value)
    assert "PortAudio" in msg and "libportaudio2" in msg and "\n" not in msg


def test_sample_fifo_wraps_and_drops_oldest() -> None:
    fifo = SampleFifo(5)
    assert fifo.write(np.arange(4, dtype=np.float32)) == 0
    out = np.zeros(3, np.float32)
    assert fifo.read_into(out) == 3 and out.tolist() == [0, 1, 2]
    assert fifo.write(np.arange(10, 16, dtype=np.float32)) == 2  # 7 samples for 5 places
    out = np.zeros(6, np.float32)
    assert fifo.read_into(out, at_least=6) == 0  # only 5 waiting
    assert fifo.read_into(out) == 5 and out[:5].tolist() == [11, 12, 13, 14, 15]
    assert len(fifo) == 0 and fifo.write(np.arange(8, dtype=np.float32)) == 3


def test_the_real_sounddevice_where_installed() -> None:
    try:
        sd = import_sounddevice()
    except AudioDeviceError as exc:
        pytest.skip(str(exc))
    devices = list_devices(sd)
    assert all(d.inputs >= 0 and d.outputs >= 0 for d in devices)
    if not any(d.inputs for d in devices):  # e.g. a server or CI machine: no sound card
        with pytest.raises(AudioDeviceError, match="no audio input device found"):
            pick_device(sd, None, "input")
