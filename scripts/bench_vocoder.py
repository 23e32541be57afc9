#!/usr/bin/env python
"""Griffin-Lim benchmark: voiceconv's fast Griffin-Lim vs librosa and torchaudio.

All three get the same linear STFT magnitudes (speech rendered with flite from the
CMU ARCTIC prompts in ../shared/data, or harmonic test signals with ``--synthetic``),
the same iteration count and momentum, random phase initialisation. For each we
report the median wall time over ``--repeats`` runs and the median spectral
convergence ``||S - |STFT(x)| ||_F / ||S||_F`` of the result, measured with the same
torch STFT for all three. The ratio line says how many times faster ours is.

Threads: ``--threads`` (default 1; a comma list such as ``1,2`` runs each in turn in
the same process) sets torch's threads (ours, torchaudio) and, through threadpoolctl,
numpy's BLAS/OpenMP pools (librosa) alike. librosa's FFTs (numpy's pocketfft) are
single-threaded whatever the setting, so at 2 threads it is ours and torchaudio that
can use the second core.

    python scripts/bench_vocoder.py            # 8 ARCTIC prompts, 32 iterations, 1 thread
    python scripts/bench_vocoder.py --threads 1,2 --clips 8 --repeats 3
    python scripts/bench_vocoder.py --quick    # 2 prompts, 3 repeats

With ``--vocoders CKPT ...`` it times whole vocoders instead, on the same log-mels (THE
front end's, :class:`~voiceconv.audio.mel.MelConfig` defaults): Griffin-Lim as conversion
uses it (``load_vocoder("griffinlim")``: NNLS mel inversion + 32 iterations) and every
checkpoint (Vocos, HiFi-GAN with a Griffin-Lim source, ...) through ``load_vocoder``, fp32,
on ``--threads`` threads (default 1); each row gives the median wall and process-CPU
seconds, "x real time" for both, and the CPU-time ratio to Griffin-Lim (on a shared machine
the wall time also counts the waits for a core; the CPU time is what the work costs).
``--holdout RUN`` takes the clips from a vocoder run's held-out files. The CPU (model and vector extensions) is printed first.

    python scripts/bench_vocoder.py --holdout RUN --vocoders runs/vocos/checkpoints/last.ckpt \
        runs/hifigan_gl/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
import torchaudio
from threadpoolctl import threadpool_limits

from voiceconv.vocoders.griffinlim import fast_griffin_lim, spectral_convergence

REPO = Path(__file__).resolve().parents[1]
ARCTIC = Path(os.environ.get("VOICECONV_ARCTIC", REPO.parent / "shared" / "data" / "arctic_a.data"))


def speech_clips(n: int, sr: int) -> list[np.ndarray]:
    """Render ``n`` ARCTIC prompts with flite (voice slt) and resample to ``sr``."""
    if shutil.which("flite") is None or not ARCTIC.is_file():
        return []
    lines = [ln for ln in ARCTIC.read_text().splitlines() if ln.strip().startswith("(")][:n]
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, line in enumerate(lines):
            text = line.split('"')[1]
            out = Path(tmp) / f"{i}.wav"
            subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(out)], check=True)
            y, file_sr = sf.read(out, dtype="float32")
            clips.append(librosa.resample(y, orig_sr=file_sr, target_sr=sr))
    return clips


def synthetic_clips(n: int, sr: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(3.0 * sr)) / sr
    clips = []
    for _ in range(n):
        f0 = 100 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t)
        ph = 2 * np.pi * np.cumsum(f0) / sr
        y = sum(np.sin(k * ph) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
        clips.append((0.3 * y / np.abs(y).max()).astype(np.float32))
    return clips


def magnitude(y: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft)
    return torch.stft(torch.from_numpy(y), n_fft, hop, n_fft, win, center=True,
                      pad_mode="reflect", return_complex=True).abs()


def sc_of(wav: np.ndarray | torch.Tensor, target: torch.Tensor, n_fft: int, hop: int) -> float:
    est = magnitude(np.asarray(wav, dtype=np.float32), n_fft, hop)
    t = min(est.shape[-1], target.shape[-1])
    return float(spectral_convergence(target[..., :t], est[..., :t]))


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    fn()  # warm-up
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def timed_cpu(fn, repeats: int) -> tuple[float, float]:
    """Median wall and median process-CPU seconds of ``fn`` (after one warm-up call). On a
    shared machine the CPU time is what the work costs; the wall time also counts waiting."""
    walls, cpus = [], []
    fn()
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def held_out_clips(run: Path, sr: int) -> list[np.ndarray]:
    """The held-out files of a vocoder run (``RUN/holdout.txt``), prepared as its training data."""
    from voiceconv.audio.preparation import Preparation

    prep = Preparation(trim_top_db=40.0, normalize="peak")
    files = [Path(line) for line in (run / "holdout.txt").read_text().splitlines() if line.strip()]
    return [prep.load(f, sr, min_samples=1024) for f in files]


def bench_vocoders(clips: list[np.ndarray], source: str, ckpts: list[str], repeats: int) -> None:
    """Time Griffin-Lim and each checkpoint on the same log-mels (one batch item per clip)."""
    from voiceconv.audio.mel import LogMel, MelConfig
    from voiceconv.utils.machine import describe_cpu
    from voiceconv.vocoders.base import describe_vocoder, load_vocoder

    cfg = MelConfig()
    front = LogMel(cfg)
    with torch.inference_mode():
        mels = [front(torch.from_numpy(y)).unsqueeze(0) for y in clips]
    seconds = sum(len(y) for y in clips) / cfg.sample_rate
    print(f"# vocoder benchmark on {describe_cpu()}: {len(clips)} clips of {source}, {seconds:.1f} s audio, "
          f"fp32, torch threads {torch.get_num_threads()}, median of {repeats}")
    rows = []
    for spec in ["griffinlim", *ckpts]:
        voc = load_vocoder(spec, cfg)

        def run(voc=voc):
            with torch.inference_mode():
                return [voc(m) for m in mels]

        rows.append((describe_vocoder(voc), *timed_cpu(run, repeats)))
    print(f"{'vocoder':48s} {'wall s':>8s} {'x RT wall':>10s} {'CPU s':>8s} {'x RT CPU':>9s} {'vs GL (CPU)':>12s}")
    for name, wall, cpu in rows:
        print(f"{name[-48:]:48s} {wall:8.3f} {seconds / wall:10.1f} {cpu:8.3f} {seconds / cpu:9.1f}"
              f" {rows[0][2] / cpu:11.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--iters", type=int, default=32)
    ap.add_argument("--momentum", type=float, default=0.99)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1",
                    help="torch and BLAS threads, or a comma list run in turn (default 1; with --vocoders the first)")
    ap.add_argument("--synthetic", action="store_true", help="harmonic test signals instead of flite speech")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--vocoders", nargs="*", default=None,
                    help="time these vocoder checkpoints against Griffin-Lim on the same mels instead")
    ap.add_argument("--holdout", type=Path, default=None,
                    help="with --vocoders: the held-out files of this vocoder run folder as the clips")
    args = ap.parse_args(argv)
    if args.quick:
        args.clips, args.repeats = 2, 3
    sr, n_fft, hop = 22050, 1024, 256
    if args.holdout is not None:
        clips, source = held_out_clips(args.holdout, sr), f"held-out files of {args.holdout}"
    else:
        clips = [] if args.synthetic else speech_clips(args.clips, sr)
        source = "flite speech (ARCTIC prompts, voice slt)"
    if not clips:
        clips, source = synthetic_clips(args.clips, sr), "synthetic harmonic signals"
    if args.vocoders is not None:
        torch.set_num_threads(int(args.threads.split(",")[0]))  # --vocoders: the first count only
        bench_vocoders(clips, source, args.vocoders, args.repeats)
        return 0
    mags = [magnitude(y, n_fft, hop) for y in clips]
    seconds = sum(len(y) for y in clips) / sr
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    print(f"# Griffin-Lim benchmark: {len(clips)} clips of {source}, {seconds:.1f} s audio, "
          f"{args.iters} iterations, momentum {args.momentum}, median of {args.repeats}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")

    ta = torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=args.iters, win_length=n_fft, hop_length=hop,
                                          power=1.0, momentum=args.momentum, rand_init=True)

    def run_librosa():
        return [librosa.griffinlim(m.numpy(), n_iter=args.iters, hop_length=hop, win_length=n_fft, n_fft=n_fft,
                                   momentum=args.momentum, init="random", random_state=0) for m in mags]

    def run_torchaudio():
        torch.manual_seed(0)
        with torch.no_grad():
            return [ta(m) for m in mags]

    def run_ours():
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return [fast_griffin_lim(m, n_fft, hop, n_fft, args.iters, args.momentum, generator=g) for m in mags]

    for threads in thread_counts:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            rows = []
            for name, fn in [("librosa.griffinlim", run_librosa), ("torchaudio GriffinLim", run_torchaudio),
                             ("voiceconv fast_griffin_lim", run_ours)]:
                t, outs = timed(fn, args.repeats)
                scs = [sc_of(o, m, n_fft, hop) for o, m in zip(outs, mags, strict=True)]
                rows.append((name, t, statistics.median(scs)))
        print(f"\n## {threads} thread(s) (torch and BLAS)")
        print(f"{'implementation':28s} {'median s':>9s} {'x real time':>12s} {'median SC':>10s}")
        for name, t, sc in rows:
            print(f"{name:28s} {t:9.3f} {seconds / t:12.1f} {sc:10.4f}")
        ours = rows[-1]
        for name, t, sc in rows[:-1]:
            print(f"speed-up vs {name}: {t / ours[1]:.2f}x   (SC ours {ours[2]:.4f} vs {sc:.4f}; "
                  f"{threads} thread(s) each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
