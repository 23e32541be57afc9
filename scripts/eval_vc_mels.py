#!/usr/bin/env python
"""Score a VC checkpoint on held-out parallel pairs in the log-mel domain (no vocoder).

    python scripts/eval_vc_mels.py --checkpoint RUN/checkpoints/last.ckpt \\
        --source-dir DATA/eval/rms --target-dir DATA/eval/slt [--direction a2b]

Prints the mean DTW log-mel distance to the target for the unconverted source, the
statistics-only shift, and the model's conversion (see
:mod:`voiceconv.evaluation.mel_distance`). Several checkpoints may be given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from voiceconv.audio.io import load_audio
from voiceconv.audio.mel import log_mel
from voiceconv.conversion.converter import VoiceConverter
from voiceconv.evaluation.mel_distance import dtw_log_mel_distance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", required=True, type=Path)
    ap.add_argument("--source-dir", required=True, type=Path)
    ap.add_argument("--target-dir", required=True, type=Path)
    ap.add_argument("--direction", default="a2b")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    pairs = [(p, args.target_dir / p.name) for p in sorted(args.source_dir.glob("*.wav"))
             if (args.target_dir / p.name).is_file()]
    if not pairs:
        print("no parallel pairs found", file=sys.stderr)
        return 1
    results = {}
    for ckpt in args.checkpoint:
        conv = VoiceConverter.from_checkpoint(ckpt)
        cfg = conv.mel_config
        src_role, tgt_role = conv.roles(args.direction)
        d = {"source": [], "stats": [], "converted": []}
        for sp, tp in pairs:
            s = log_mel(load_audio(sp, cfg.sample_rate)[0], cfg)
            t = log_mel(load_audio(tp, cfg.sample_rate)[0], cfg)
            shifted = conv.stats[tgt_role].denormalize(conv.stats[src_role].normalize(s))
            d["source"].append(dtw_log_mel_distance(s, t))
            d["stats"].append(dtw_log_mel_distance(np.asarray(shifted, np.float32), t))
            d["converted"].append(dtw_log_mel_distance(conv.convert_mel(s, args.direction), t))
        means = {k: float(np.mean(v)) for k, v in d.items()}
        results[str(ckpt)] = {**means, "n_pairs": len(pairs)}
        print(f"{ckpt}: n={len(pairs)}  source {means['source']:.3f}  stats-only {means['stats']:.3f}  "
              f"converted {means['converted']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
