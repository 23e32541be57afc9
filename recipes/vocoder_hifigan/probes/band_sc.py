#!/usr/bin/env python
"""Where in frequency a Vocos's learned magnitude is right: spectral convergence per band.

For the held-out files of a vocoder run (``--run``), per voice (the file's parent folder),
the spectral convergence ``||S - S_hat||_F / ||S||_F`` within each frequency band between the
file's STFT magnitude ``S`` and (a) the checkpoint's learned magnitude, (b) its fixed
closed-form prior (the mel spread back to the bins, sharpened by NNLS updates; a Vocos with
``magnitude_prior``), both from the file's log-mel; the mean over files. Where (a) is no
lower than (b), the network added nothing to the prior in that band.

    python recipes/vocoder_hifigan/probes/band_sc.py --run RUN_V --vocoder RUN_V/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from _run import open_run, stft_magnitude


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="vocoder run folder (holdout.txt, config.yaml)")
    ap.add_argument("--vocoder", type=Path, required=True, help="a Vocos checkpoint with magnitude_prior")
    ap.add_argument("--edges", type=float, nargs="+", default=[0, 250, 500, 1000, 2000, 4000, 8000, 11025])
    args = ap.parse_args()
    cfg, front, prep, gen = open_run(args.run, args.vocoder)
    if not getattr(gen, "magnitude_prior", False):
        raise SystemExit(f"{args.vocoder}: not a Vocos with magnitude_prior")
    freqs = torch.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    bands = list(itertools.pairwise(args.edges))
    per_voice: dict[str, dict[str, list[list[float]]]] = {}
    for line in (args.run / "holdout.txt").read_text().split("\n"):
        if not line.strip():
            continue
        ref = torch.from_numpy(prep.load(Path(line), cfg.sample_rate, min_samples=cfg.n_fft))
        true = stft_magnitude(ref, cfg)
        with torch.inference_mode():
            mel = front(ref).unsqueeze(0)
            est = {"learned": torch.exp(gen.spectrum(mel)[0][0].float()),
                   "prior": torch.exp(gen.log_magnitude_prior(mel)[0].float())}
        scores = per_voice.setdefault(Path(line).parent.name, {})
        for name, mag in est.items():
            row = []
            for lo, hi in bands:
                b = (freqs >= lo) & (freqs < hi)
                row.append(float(torch.linalg.norm(true[b] - mag[b]) / torch.linalg.norm(true[b])))
            scores.setdefault(name, []).append(row)
    head = " | ".join(f"{lo:g}-{hi:g} Hz" for lo, hi in bands)
    print(f"| voice | magnitude | {head} |\n|---|---|" + "---|" * len(bands))
    for voice, scores in per_voice.items():
        for name, rows in scores.items():
            print(f"| {voice} | {name} | " + " | ".join(f"{v:.3f}" for v in np.mean(rows, axis=0)) + " |")


if __name__ == "__main__":
    main()
