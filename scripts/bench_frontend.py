#!/usr/bin/env python
"""Log-mel front-end benchmark: voiceconv's ``LogMel`` vs librosa, in one run.

Every method gets the same float32 clips (``--clips`` x ``--seconds`` at the
MelConfig's 22.05 kHz: speech-like harmonic/chirp/noise signals, or with
``--speech`` flite-rendered CMU ARCTIC prompts cropped/looped to length) and
computes the same log-mel (HiFi-GAN settings: n_fft 1024, hop 256, 80 Slaney mels
0-8 kHz, magnitude, log clamped at 1e-5):

* ``librosa/clip``   ``librosa.feature.melspectrogram`` + ``np.log(np.maximum(.))``
                     per clip (the usual way; rebuilds the mel basis each call)
* ``librosa/basis``  per clip, ``librosa.stft`` + ``np.abs`` + a reused mel basis
                     (librosa at its best per clip)
* ``librosa/batch``  one ``melspectrogram`` call on the (clips, samples) array
* ``ours/clip``      one ``LogMel`` module, called per clip
* ``ours/batch``     one ``LogMel`` call on the whole batch
* ``ours/cuda``      the batch on the GPU (input already there; synchronised),
                     only when CUDA is present

Timing: ``--repeats`` rounds after one warm-up; in each round every method runs
once (interleaved, so load drift from other processes hits all alike); we quote
the median wall time per method, x real time (audio seconds / median seconds)
and, for each librosa method, how many times faster ours is on the same work:
``librosa/batch`` against ``ours/batch`` (the same (clips, samples) array),
``librosa/basis`` and ``librosa/clip`` against ``ours/clip`` (per clip). The two
headline ratios are batch vs batch and per clip vs per clip with a reused basis;
per-clip librosa against batched ours is not equal work and is not quoted.

Memory: for each method, a fresh ``spawn`` child process loads the same clips,
runs a small warm-up, returns free heap pages to the OS (``malloc_trim``), resets
the kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the method once and
reports peak RSS minus RSS before the run (``VmHWM - VmRSS``): every byte the run
touched, numpy, torch and allocator slack alike, outputs included (tracemalloc
cannot see torch's allocations). For the librosa methods it also reports
tracemalloc's peak (Python/numpy allocations only). ``ours/cuda`` reports
``torch.cuda.max_memory_allocated``.

Also printed: the largest |log-mel difference| between ``ours/batch`` and
``librosa/clip`` where the mel is above 10x the floor (they must compute the
same thing for the timing to mean anything).

Threads: ``--threads N`` (default 1) sets torch's threads and, through
threadpoolctl, numpy's BLAS/OpenMP pools (librosa's mel-basis product), so that
both sides run at the same thread count. On a machine with more runnable processes than cores, torch's OpenMP
worker threads spin-wait at every parallel region and multi-threaded runs can be
several times *slower* than ``--threads 1`` (seen on the shared 2-core dev box:
212x vs 1134x real time). ``OMP_WAIT_POLICY=PASSIVE`` in the environment (it must
be set before torch starts) avoids that; the header prints its value.

    python scripts/bench_frontend.py            # 32 clips x 4 s, 7 repeats
    python scripts/bench_frontend.py --quick    # 8 clips x 2 s, 3 repeats, no memory
    python scripts/bench_frontend.py --speech --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from voiceconv.audio.mel import LogMel, MelConfig

REPO = Path(__file__).resolve().parents[1]
ARCTIC = Path(os.environ.get("VOICECONV_ARCTIC", REPO.parent / "shared" / "data" / "arctic_a.data"))
#: librosa method -> ours on the same work
SAME_WORK = {"librosa/clip": "ours/clip", "librosa/basis": "ours/clip", "librosa/batch": "ours/batch"}


# ---------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------


def speech_like_clips(n: int, seconds: float, sr: int) -> np.ndarray:
    """(n, samples) float32: harmonic source with vibrato + chirp + noise, AM-modulated."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    out = np.empty((n, t.size), dtype=np.float32)
    for i in range(n):
        f0 = 90 + 150 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        y = sum(np.sin(k * phase + rng.uniform(0, 6.3)) / k for k in range(1, 30))
        y += 0.3 * np.sin(2 * np.pi * (300 * t + 400 * rng.random() * t**2))
        y += 0.05 * rng.standard_normal(t.size)
        y *= 0.5 + 0.5 * np.sin(2 * np.pi * (2 + 2 * rng.random()) * t) ** 2
        out[i] = 0.3 * y / np.abs(y).max()
    return out


def flite_clips(n: int, seconds: float, sr: int) -> np.ndarray | None:
    """(n, samples) float32 of flite speech (ARCTIC prompts), looped/cropped to length."""
    if shutil.which("flite") is None or not ARCTIC.is_file():
        return None
    lines = [ln for ln in ARCTIC.read_text().splitlines() if ln.strip().startswith("(")]
    voices = ["slt", "rms", "awb", "kal16"]
    length = int(seconds * sr)
    out = np.empty((n, length), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            text = lines[i % len(lines)].split('"')[1]
            wav = Path(tmp) / f"{i}.wav"
            cmd = ["flite", "-voice", voices[i % len(voices)], "-t", text, "-o", str(wav)]
            subprocess.run(cmd, check=True, capture_output=True)
            y, file_sr = sf.read(wav, dtype="float32")
            y = librosa.resample(y, orig_sr=file_sr, target_sr=sr)
            out[i] = np.resize(y, length)  # loops short prompts
    return out


def make_clips(args: argparse.Namespace, sr: int) -> tuple[np.ndarray, str]:
    if args.speech:
        clips = flite_clips(args.clips, args.seconds, sr)
        if clips is not None:
            return clips, "flite speech (ARCTIC prompts)"
        print("flite or the ARCTIC prompts are missing: using speech-like signals", file=sys.stderr)
    return speech_like_clips(args.clips, args.seconds, sr), "speech-like synthetic signals"


# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------


def librosa_kwargs(cfg: MelConfig) -> dict:
    return dict(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=cfg.center,
        pad_mode=cfg.pad_mode,
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
    )


def build_methods(
    clips: np.ndarray, cfg: MelConfig, with_cuda: bool
) -> dict[str, Callable[[], object]]:
    """Name -> zero-argument callable computing the log-mel of all clips."""
    kw = librosa_kwargs(cfg)
    basis = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
    )
    floor = cfg.log_floor

    def librosa_clip() -> list[np.ndarray]:
        return [np.log(np.maximum(librosa.feature.melspectrogram(y=y, **kw), floor)) for y in clips]

    def librosa_basis() -> list[np.ndarray]:
        out = []
        for y in clips:
            spec = np.abs(
                librosa.stft(
                    y,
                    n_fft=cfg.n_fft,
                    hop_length=cfg.hop_length,
                    win_length=cfg.win_length,
                    center=cfg.center,
                    pad_mode=cfg.pad_mode,
                )
            )
            out.append(np.log(np.maximum(basis @ spec, floor)))
        return out

    def librosa_batch() -> np.ndarray:
        return np.log(np.maximum(librosa.feature.melspectrogram(y=clips, **kw), floor))

    module = LogMel(cfg)
    batch = torch.from_numpy(clips)
    rows = list(batch)

    def ours_clip() -> list[torch.Tensor]:
        with torch.inference_mode():
            return [module(y) for y in rows]

    def ours_batch() -> torch.Tensor:
        with torch.inference_mode():
            return module(batch)

    methods: dict[str, Callable[[], object]] = {
        "librosa/clip": librosa_clip,
        "librosa/basis": librosa_basis,
        "librosa/batch": librosa_batch,
        "ours/clip": ours_clip,
        "ours/batch": ours_batch,
    }
    if with_cuda:
        gpu_module = LogMel(cfg).to("cuda")
        gpu_batch = batch.to("cuda")

        def ours_cuda() -> torch.Tensor:
            with torch.inference_mode():
                out = gpu_module(gpu_batch)
            torch.cuda.synchronize()
            return out

        methods["ours/cuda"] = ours_cuda
    return methods


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def time_methods(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds per method over ``repeats`` interleaved rounds (after a warm-up)."""
    for fn in methods.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _rss_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (KiB), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int:
    """Give free heap pages back to the OS and reset the peak-RSS mark; return RSS (KiB).

    Falls back to ``ru_maxrss`` (which cannot be reset) where /proc is missing.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to VmRSS
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _rss_kib("VmRSS") or 0


def _peak_rss() -> int:
    return _rss_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def set_threads(n: int) -> None:
    """``n`` threads for torch and for numpy's BLAS/OpenMP pools alike."""
    torch.set_num_threads(n)
    threadpool_limits(n)


def _memory_child(name: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    set_threads(args.threads)
    cfg = MelConfig()
    clips, _ = make_clips(args, cfg.sample_rate)
    # Warm-up on a tiny problem: imports, FFT plans, mel basis code paths.
    small = build_methods(clips[:1, : cfg.sample_rate // 2], cfg, name == "ours/cuda")
    small[name]()
    methods = build_methods(clips, cfg, name == "ours/cuda")
    if name == "ours/cuda":
        torch.cuda.reset_peak_memory_stats()
        methods[name]()
        queue.put((name, None, None, torch.cuda.max_memory_allocated() / 2**20))
        return
    del small
    before = _reset_peak_rss()
    tracing = name.startswith("librosa")
    if tracing:
        tracemalloc.start()
    result = methods[name]()
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if tracing else None
    if tracing:
        tracemalloc.stop()
    after = _peak_rss()
    del result
    queue.put((name, (after - before) / 1024, traced, None))


def measure_memory(names: list[str], args: argparse.Namespace) -> dict[str, tuple]:
    """Name -> (peak RSS growth MiB, tracemalloc peak MiB, CUDA peak MiB), one child each."""
    ctx = mp.get_context("spawn")
    results = {}
    for name in names:
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(name, args, queue))
        proc.start()
        got = queue.get(timeout=600)
        proc.join()
        results[name] = got[1:]
    return results


def max_log_mel_diff(ours: torch.Tensor, ref: list[np.ndarray], cfg: MelConfig) -> float:
    worst = 0.0
    for o, r in zip(ours.numpy(), ref, strict=True):
        mask = r > np.log(10 * cfg.log_floor)
        worst = max(worst, float(np.abs(o - r)[mask].max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads for every method (default 1)")
    parser.add_argument("--speech", action="store_true", help="flite-rendered ARCTIC prompts")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory children")
    parser.add_argument("--quick", action="store_true", help="8 clips x 2 s, 3 repeats, no memory")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.seconds, args.repeats, args.no_memory = 8, 2.0, 3, True
    set_threads(args.threads)

    cfg = MelConfig()
    clips, source = make_clips(args, cfg.sample_rate)
    audio_s = clips.shape[0] * clips.shape[1] / cfg.sample_rate
    with_cuda = torch.cuda.is_available()
    methods = build_methods(clips, cfg, with_cuda)

    diff = max_log_mel_diff(methods["ours/batch"](), methods["librosa/clip"](), cfg)
    medians = time_methods(methods, args.repeats)
    memory = {} if args.no_memory else measure_memory(list(methods), args)

    device = torch.cuda.get_device_name() if with_cuda else "none"
    print(
        f"\n{clips.shape[0]} clips x {clips.shape[1] / cfg.sample_rate:.2f} s of {source} "
        f"at {cfg.sample_rate} Hz ({audio_s:.0f} s of audio); torch and BLAS threads {args.threads} "
        f"of {mp.cpu_count()} CPUs; CUDA: {device}; median of {args.repeats} repeats"
    )
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"max |log-mel ours - librosa| (mel > 10x floor): {diff:.2e}\n")
    head = f"{'method':<15}{'median s':>10}{'x realtime':>12}{'ours faster (same work)':>25}"
    if memory:
        head += f"{'peak RSS +MiB':>15}{'tracemalloc MiB':>17}{'CUDA MiB':>10}"
    print(head)
    print("-" * len(head))
    for name, sec in medians.items():
        ratio = f"{sec / medians[SAME_WORK[name]]:.2f}x vs {SAME_WORK[name]}" if name in SAME_WORK else ""
        line = f"{name:<15}{sec:>10.4f}{audio_s / sec:>12.0f}{ratio:>25}"
        if memory:
            rss, traced, cuda = memory[name]
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            line += f"{fmt(rss):>15}{fmt(traced):>17}{fmt(cuda):>10}"
        print(line)
    batch = medians["librosa/batch"] / medians["ours/batch"]
    clip = medians["librosa/basis"] / medians["ours/clip"]
    print(
        f"\nsame work, {args.threads} thread(s): batch {batch:.1f}x faster than librosa on the same "
        f"array ({audio_s / medians['ours/batch']:.0f}x real time); per clip {clip:.1f}x faster than "
        f"librosa with a reused mel basis ({audio_s / medians['ours/clip']:.0f}x real time)"
    )
    print("Timings on a shared machine are noisy; compare ratios from one run only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
