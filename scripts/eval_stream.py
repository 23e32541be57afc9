#!/usr/bin/env python
"""Streamed against offline conversion on held-out pairs: quality and per-block compute.

For each system ``MODE=CHECKPOINT`` (``exact`` for a streaming generator, ``window`` for an
offline one) every held-out source file is converted with the same streaming Vocos three
ways: as a stream (:class:`~voiceconv.conversion.streaming.StreamingConverter`, a new
stream per file, the file's level set as training did via ``auto_gain``, pushed in
blocks); offline the demo's way (:class:`~voiceconv.conversion.converter.VoiceConverter`:
trimmed, level-set, put back); and offline on exactly the stream's input (no trimming, the
same gain: what isolates the error of streaming itself). It prints, per system, the mean
MCD (dB, DTW, c1-c24, the demo's metric) of streamed vs same-input offline, streamed vs
target and offline vs target, and the per-block compute time (median and 99th percentile)
against the block's duration::

    python scripts/eval_stream.py --vocoder runs/stream/vocos_stream_small/checkpoints/last.ckpt \\
        --system exact=runs/stream/demo_stream/train_run/checkpoints/last.ckpt \\
        --system window=runs/demo/train_run/checkpoints/last.ckpt \\
        --source runs/demo/eval/rms --target runs/demo/eval/slt --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from voiceconv.audio.io import load_audio
from voiceconv.audio.preparation import Preparation
from voiceconv.conversion.converter import VoiceConverter
from voiceconv.conversion.stream_runner import auto_gain
from voiceconv.conversion.streaming import DEFAULT_BLOCK_MS, StreamingConverter
from voiceconv.evaluation.mcd import mcd
from voiceconv.evaluation.report import audio_files_by_stem
from voiceconv.utils.machine import describe_cpu


def stream_file(sc: StreamingConverter, wav: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """``wav`` through a fresh stream in blocks; the output and each block's compute (s)."""
    sc.reset()
    sc.gain = auto_gain(sc, wav)
    out, times = [], []
    for i in range(0, wav.shape[0], sc.block_samples):
        t = time.perf_counter()
        out.append(sc.push(wav[i : i + sc.block_samples]))
        times.append(time.perf_counter() - t)
    out.append(sc.flush())
    return np.concatenate(out), times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", action="append", required=True, metavar="MODE=CKPT")
    ap.add_argument("--vocoder", required=True, help="streaming Vocos checkpoint")
    ap.add_argument("--source", required=True, help="held-out source utterances")
    ap.add_argument("--target", required=True, help="the same sentences by the target speaker")
    ap.add_argument("--direction", default="a2b")
    ap.add_argument("--block-ms", type=float, default=DEFAULT_BLOCK_MS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sources, targets = audio_files_by_stem(args.source), audio_files_by_stem(args.target)
    stems = sorted(set(sources) & set(targets))[: args.limit]
    print(f"CPU: {describe_cpu()}; {args.threads} thread(s); {len(stems)} held-out pairs; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')}")
    results = {}
    for spec in args.system:
        mode, _, ckpt = spec.partition("=")
        offline = VoiceConverter.from_checkpoint(ckpt, vocoder=args.vocoder, precision="fp32")
        same = VoiceConverter.from_checkpoint(ckpt, vocoder=args.vocoder, precision="fp32",
                                              preparation=Preparation.raw(), output_level="model")
        sc = StreamingConverter.from_checkpoint(ckpt, args.direction, vocoder=args.vocoder,
                                                block_ms=args.block_ms, mode=mode)
        rows, times = [], []
        for stem in stems:
            wav, sr = load_audio(sources[stem], offline.sample_rate)
            ref, _ = load_audio(targets[stem], offline.sample_rate)
            off, _ = offline.convert(wav, sr, args.direction)
            st, t = stream_file(sc, wav)
            same_input = same.convert(wav * sc.gain, sr, args.direction)[0] / sc.gain
            times += t
            rows.append((mcd(same_input, st, sr), mcd(ref, st, sr), mcd(ref, off, sr)))
        r = np.array(rows)
        ms = 1000 * np.array(times)
        block_ms = 1000 * sc.block_samples / sc.sample_rate
        results[mode] = {
            "checkpoint": ckpt, "latency_ms": sc.latency_ms, "block_ms": block_ms,
            "compute_median_ms": float(np.median(ms)), "compute_p99_ms": float(np.percentile(ms, 99)),
            "mcd_streamed_vs_same_input_offline": float(r[:, 0].mean()), "mcd_streamed_vs_target": float(r[:, 1].mean()),
            "mcd_offline_vs_target": float(r[:, 2].mean()), "files": len(rows),
        }
        print(f"{mode}: {sc.describe()}")
    print("\n| mode | latency ms | block ms | compute median / p99 ms | MCD streamed vs offline (same input) | "
          "MCD streamed vs target | MCD offline vs target | difference |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, x in results.items():
        print(f"| {mode} | {x['latency_ms']:.1f} | {x['block_ms']:.1f} | {x['compute_median_ms']:.1f} / "
              f"{x['compute_p99_ms']:.1f} | {x['mcd_streamed_vs_same_input_offline']:.2f} | {x['mcd_streamed_vs_target']:.2f} | "
              f"{x['mcd_offline_vs_target']:.2f} | {x['mcd_streamed_vs_target'] - x['mcd_offline_vs_target']:+.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
