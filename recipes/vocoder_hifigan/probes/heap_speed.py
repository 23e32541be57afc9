#!/usr/bin/env python
"""How fast offline phase-gradient heap integration can be, against the whole vocoder.

``pesq_ceiling.py``'s heap phase (Prusa et al. 2017) written for numba (installed with
librosa), checked equal to the Python version on one held-out file, then timed against the
whole forward pass of the checkpoint (log-mel -> waveform, its own phase and projections)
on the same frames: one thread, median of ``--repeats``, one process.

    python recipes/vocoder_hifigan/probes/heap_speed.py --run RUN_V --vocoder RUN_V/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numba
import numpy as np
import torch
from _run import open_run
from pesq_ceiling import heap_inputs, heap_phase


@numba.njit(cache=True)
def _heap(log_mag, d_time, d_freq, centre, phase, done):  # pragma: no cover - compiled
    n_freq, n_frames = log_mag.shape
    order = np.argsort(-log_mag.ravel())
    keys = np.empty(n_freq * n_frames)
    items = np.empty(n_freq * n_frames, np.int64)
    size, next_seed = 0, 0
    flat_done = done.ravel()
    while True:
        if size == 0:
            while next_seed < order.size and flat_done[order[next_seed]]:
                next_seed += 1
            if next_seed == order.size:
                return np.remainder(phase, 2 * math.pi)
            idx = order[next_seed]
            phase[idx // n_frames, idx % n_frames] = 0.0
            flat_done[idx] = True
            keys[0], items[0], size = log_mag.ravel()[idx], idx, 1
        idx = items[0]  # pop the loudest, sift the last item down
        size -= 1
        if size:
            key, item, pos = keys[size], items[size], 0
            while 2 * pos + 1 < size:
                c = 2 * pos + 1
                if c + 1 < size and keys[c + 1] > keys[c]:
                    c += 1
                if keys[c] <= key:
                    break
                keys[pos], items[pos], pos = keys[c], items[c], c
            keys[pos], items[pos] = key, item
        k, t = idx // n_frames, idx % n_frames
        p = phase[k, t]
        for d in range(4):
            kk, tt = k + (d == 2) - (d == 3), t + (d == 0) - (d == 1)
            if kk < 0 or kk >= n_freq or tt < 0 or tt >= n_frames or flat_done[kk * n_frames + tt]:
                continue
            if d == 0:
                v = p + centre[k] + 0.5 * (d_time[k, t] + d_time[kk, tt])
            elif d == 1:
                v = p - centre[k] - 0.5 * (d_time[k, t] + d_time[kk, tt])
            elif d == 2:
                v = p - math.pi + 0.5 * (d_freq[k, t] + d_freq[kk, tt])
            else:
                v = p + math.pi - 0.5 * (d_freq[k, t] + d_freq[kk, tt])
            phase[kk, tt] = v
            flat_done[kk * n_frames + tt] = True
            key, pos = log_mag[kk, tt], size  # push, sift up
            size += 1
            while pos > 0 and keys[(pos - 1) // 2] < key:
                keys[pos], items[pos], pos = keys[(pos - 1) // 2], items[(pos - 1) // 2], (pos - 1) // 2
            keys[pos], items[pos] = key, kk * n_frames + tt


def compiled_heap_phase(gen, log_mag: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """:func:`pesq_ceiling.heap_phase`, compiled, from the same :func:`pesq_ceiling.heap_inputs`."""
    return _heap(log_mag, *heap_inputs(gen, log_mag, tol))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--vocoder", type=Path, required=True, help="a Vocos checkpoint with phase='pghi'")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    cfg, front, prep, gen = open_run(args.run, args.vocoder)
    path = next(line for line in (args.run / "holdout.txt").read_text().split("\n") if line.strip())
    mel = front(torch.from_numpy(prep.load(Path(path), cfg.sample_rate, min_samples=cfg.n_fft))).unsqueeze(0)
    with torch.inference_mode():
        log_mag = gen.spectrum(mel)[0][0].double().numpy()
    same = np.abs(np.angle(np.exp(1j * (compiled_heap_phase(gen, log_mag) - heap_phase(gen, log_mag))))).max()
    print(f"{Path(path).name}: {mel.shape[-1]} frames; compiled heap vs Python heap: max angle difference {same:.2e} rad")

    def median_ms(fn) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * float(np.median(times))

    with torch.inference_mode():
        heap_ms = median_ms(lambda: compiled_heap_phase(gen, log_mag))
        whole_ms = median_ms(lambda: gen(mel))
        pghi_ms = median_ms(lambda: gen.pghi_phase(torch.from_numpy(log_mag).float()[None]))
    seconds = mel.shape[-1] * cfg.hop_length / cfg.sample_rate
    print(f"compiled heap phase {heap_ms:.1f} ms, the checkpoint's pghi phase {pghi_ms:.1f} ms, the whole vocoder "
          f"{whole_ms:.1f} ms ({seconds / whole_ms * 1000:.0f}x real time); heap / whole = {heap_ms / whole_ms:.2f}")


if __name__ == "__main__":
    main()
