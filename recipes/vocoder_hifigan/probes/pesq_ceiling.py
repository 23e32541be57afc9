#!/usr/bin/env python
"""What caps a parameter-free-phase Vocos's wideband PESQ: the magnitude or the phase?

For the held-out files of a vocoder run (``--run``; ``--voice rms`` keeps the files whose
path names that voice), each combination of
  magnitude: ``learned`` (the checkpoint's log-magnitude from the file's log-mel),
             ``true_above_HZ`` (learned below ``--split-hz``, the file's true STFT magnitude
             above it), ``true`` (the file's STFT magnitude: an oracle),
  phase:     ``pghi`` (the checkpoint's own parameter-free phase), and with ``--heap`` the
             offline phase-gradient heap integration of Prusa, Balazs & Sondergaard (2017;
             a Python heap, about 6x real time: a yardstick here, too slow for the vocoder),
  projections: each of ``--iters`` fast Griffin-Lim projections before the iSTFT
is synthesised and scored as ``scripts/eval_vocoder.py`` scores (the run's trimming and
level rule, spectral convergence, wideband PESQ at 16 kHz). ``--results`` (an
``eval_vocoder.py`` results.json of the same files) adds, per combination, the number of
files on which it beats ``--against`` (default ``hifigan_gl_small``).

    python recipes/vocoder_hifigan/probes/pesq_ceiling.py --run RUN_V --vocoder RUN_V/checkpoints/last.ckpt \\
        --results RUN_V/eval/results.json --voice rms --iters 2 8 16 --heap
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
from pathlib import Path

import numpy as np
import torch
from _run import open_run, stft_magnitude
from eval_vocoder import spectral_convergence_of, wideband_pesq  # on the path through _run

from voiceconv.vocoders.vocos import VocosGenerator, central_difference


def heap_inputs(gen: VocosGenerator, log_mag: np.ndarray, tol: float) -> tuple[np.ndarray, ...]:
    """What the heap integrates, from a ``(F, T)`` natural-log magnitude: the instantaneous-
    frequency deviation per hop, the phase change per bin beyond -pi (the group delay), each
    bin's centre advance per hop, the starting phase (a seed-0 random phase on the bins more
    than ``1/tol`` below the loudest, 0 elsewhere) and the mask of those quiet bins."""
    cfg = gen.mel_config
    lm = torch.from_numpy(log_mag)
    d_time = (gen.if_gain * 0.5 * central_difference(lm, 0)).numpy()
    d_freq = (gen.gd_gain * 0.5 * central_difference(lm, 1)).numpy()
    centre = (np.arange(log_mag.shape[0]) * cfg.hop_length % cfg.n_fft) * 2 * np.pi / cfg.n_fft
    small = log_mag < log_mag.max() + math.log(tol)
    phase = np.zeros_like(log_mag)
    phase[small] = np.random.default_rng(0).uniform(0, 2 * np.pi, int(small.sum()))
    return d_time, d_freq, centre, phase, small


def heap_phase(gen: VocosGenerator, log_mag: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """Offline phase-gradient heap integration (Prusa et al. 2017) of a ``(F, T)`` natural-log
    magnitude, with the generator's phase-gradient gains: from the loudest bin, each bin takes
    its phase from the loudest already-phased neighbour in time (the instantaneous frequency,
    trapezoid) or frequency (the group delay, trapezoid; adjacent bins of a centred frame in
    antiphase); bins more than ``1/tol`` below the loudest get a random phase."""
    n_freq, n_frames = log_mag.shape
    d_time, d_freq, centre, phase, done = heap_inputs(gen, log_mag, tol)
    order, next_seed, heap = np.argsort(-log_mag, axis=None), 0, []

    def visit(k: int, t: int, value: float) -> None:
        phase[k, t], done[k, t] = value, True
        heapq.heappush(heap, (-log_mag[k, t], k, t))

    while True:
        if not heap:  # a new seed: the loudest bin not yet phased
            while next_seed < order.size and done.flat[order[next_seed]]:
                next_seed += 1
            if next_seed == order.size:
                return np.remainder(phase, 2 * np.pi)
            visit(*divmod(int(order[next_seed]), n_frames), 0.0)
        _, k, t = heapq.heappop(heap)
        p = phase[k, t]
        if t + 1 < n_frames and not done[k, t + 1]:
            visit(k, t + 1, p + centre[k] + 0.5 * (d_time[k, t] + d_time[k, t + 1]))
        if t > 0 and not done[k, t - 1]:
            visit(k, t - 1, p - centre[k] - 0.5 * (d_time[k, t] + d_time[k, t - 1]))
        if k + 1 < n_freq and not done[k + 1, t]:
            visit(k + 1, t, p - np.pi + 0.5 * (d_freq[k, t] + d_freq[k + 1, t]))
        if k > 0 and not done[k - 1, t]:
            visit(k - 1, t, p + np.pi - 0.5 * (d_freq[k, t] + d_freq[k - 1, t]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="vocoder run folder (holdout.txt, config.yaml)")
    ap.add_argument("--vocoder", type=Path, required=True, help="a Vocos checkpoint with phase='pghi'")
    ap.add_argument("--results", type=Path, help="eval_vocoder.py results.json of the same files")
    ap.add_argument("--against", default="hifigan_gl_small", help="the results.json vocoder to count wins against")
    ap.add_argument("--voice", default="", help="keep files whose path contains this (e.g. rms)")
    ap.add_argument("--iters", type=int, nargs="+", default=[2, 8, 16])
    ap.add_argument("--split-hz", type=float, default=1000.0)
    ap.add_argument("--heap", action="store_true", help="also the offline heap phase (slow)")
    args = ap.parse_args()
    cfg, front, prep, gen = open_run(args.run, args.vocoder)
    if getattr(gen, "phase_mode", None) != "pghi":
        raise SystemExit(f"{args.vocoder}: not a Vocos with phase='pghi'")
    files = [line for line in (args.run / "holdout.txt").read_text().split("\n") if line.strip() and args.voice in line]
    against = {}
    if args.results:
        against = {r["file"]: r[args.against]["pesq_wb"] for r in json.loads(args.results.read_text())["files"]}
    above = (torch.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft >= args.split_hz)[:, None]
    scores: dict[str, list[tuple[float, float, bool]]] = {}
    for f in files:
        ref = prep.load(Path(f), cfg.sample_rate, min_samples=cfg.n_fft)
        true = torch.log(stft_magnitude(torch.from_numpy(ref), cfg).clamp_min(1e-5))
        with torch.inference_mode():
            learned = gen.spectrum(front(torch.from_numpy(ref)).unsqueeze(0))[0][0].float()
        mags = {"learned": learned, f"true_above_{args.split_hz:g}": torch.where(above, true, learned), "true": true}
        line = []
        for mname, mag in mags.items():
            phases = {"pghi": gen.pghi_phase(mag[None])}
            if args.heap:
                phases["heap"] = torch.from_numpy(heap_phase(gen, mag.double().numpy())).float()[None]
            for pname, phase in phases.items():
                for n_iter in args.iters:
                    gen.refine_iters = n_iter
                    with torch.inference_mode():
                        wav = gen.synthesize(mag[None], phase)[0].numpy()
                    wav = np.clip(wav, -1.0, 1.0)
                    sc, pq = spectral_convergence_of(ref, wav, front), wideband_pesq(ref, wav, cfg.sample_rate)
                    key = f"{mname} / {pname} / {n_iter}"
                    scores.setdefault(key, []).append((sc, pq, f in against and pq > against[f]))
                    line.append(f"{pq:.2f}")
        print(Path(f).parent.name, Path(f).stem, "PESQ", " ".join(line),
              f"| {args.against} {against[f]:.2f}" if f in against else "", flush=True)
    print(f"\n| magnitude / phase / projections | SC | PESQ | files above {args.against} |\n|---|---|---|---|")
    for key, rows in scores.items():
        a = np.array(rows, dtype=float)
        wins = f"{int(a[:, 2].sum())}/{len(a)}" if against else "-"
        print(f"| {key} | {a[:, 0].mean():.4f} | {a[:, 1].mean():.3f} | {wins} |")


if __name__ == "__main__":
    main()
