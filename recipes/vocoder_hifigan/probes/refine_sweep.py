#!/usr/bin/env python
"""How many Griffin-Lim projections a Vocos with a parameter-free phase needs.

For each held-out file of a vocoder run (``--run``): the log-mel (THE front end) through the
checkpoint's backbone and head, then the waveform synthesised with 0, 2, 4, ... projections
of its phase (``refined_istft``); prints the mean spectral convergence of the predicted
magnitude alone and of each waveform against the file's STFT magnitude (float output, peak
normalised to 0.95, no trimming: close to, not the same as, ``eval_vocoder.py``'s scores).

    python recipes/vocoder_hifigan/probes/refine_sweep.py --run RUN_V --vocoder RUN_V/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.griffinlim import refined_istft, spectral_convergence
from voiceconv.vocoders.magnitude import linear_magnitude


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="vocoder run folder (its holdout.txt)")
    ap.add_argument("--vocoder", type=Path, required=True, help="a Vocos checkpoint with phase summed, locked or pghi")
    ap.add_argument("--iters", type=int, nargs="+", default=[0, 2, 4, 8, 16, 32])
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = MelConfig.from_dict(json.loads((args.run / "mel_config.json").read_text()))
    front = LogMel(cfg)
    gen = load_vocoder(args.vocoder, cfg).net.eval()
    files = [Path(line) for line in (args.run / "holdout.txt").read_text().split("\n") if line.strip()]
    scores: dict[str, list[float]] = {}
    for path in files:
        x, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != cfg.sample_rate:
            raise SystemExit(f"{path}: {rate} Hz, the run's mels are {cfg.sample_rate} Hz")
        wav = torch.from_numpy(x.mean(axis=1))[None]
        wav = wav / wav.abs().max().clamp_min(1e-9) * 0.95
        ref, mel = linear_magnitude(wav, front), front(wav)
        t = min(ref.shape[-1], mel.shape[-1])
        ref, mel = ref[..., :t], mel[..., :t]
        with torch.no_grad():
            log_mag, phase = gen.spectrum(mel)
        mag = torch.exp(log_mag)
        scores.setdefault("magnitude alone", []).append(float(spectral_convergence(ref, mag).mean()))
        for n in args.iters:
            est = linear_magnitude(refined_istft(mag, phase, cfg.n_fft, cfg.hop_length, cfg.win_length, n), front)
            k = min(t, est.shape[-1])
            scores.setdefault(f"{n} projections", []).append(
                float(spectral_convergence(ref[..., :k], est[..., :k]).mean()))
    print(f"{len(files)} held-out files of {args.run}, {args.vocoder}: mean spectral convergence")
    for name, values in scores.items():
        print(f"  {name:18s} {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
