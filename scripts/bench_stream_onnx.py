#!/usr/bin/env python
"""Per-block compute of the streaming converter: PyTorch exact mode against the ONNX step graph.

Both stream the same signal (``--audio``, brought to the training level as ``--gain auto``
does, or a synthetic harmonic one) in the converter's blocks (``--block-ms``), and every
``push`` is timed (wall clock): that is what a live stream pays per block. For each ``N``
in ``--threads`` the script prints the median and 90th percentile of the per-block compute
of each (PyTorch with ``torch.set_num_threads(N)``, onnxruntime with ``N`` intra-op
threads), the ratio of the medians (above 1: onnxruntime faster), the real-time factor
(block duration / median compute) and the max absolute difference of the two output
streams. The CPU model and the load average come first: timings on a shared machine
depend on both, so quote them together.

Without ``--onnx`` the step graph is exported first into a temporary folder (the export's
own parity check included).

    python scripts/bench_stream_onnx.py --checkpoint runs/stream/train_run/checkpoints/last.ckpt \\
        --vocoder runs/vocos_stream/checkpoints/last.ckpt --audio runs/demo/corpus/rms/vc_0001.wav
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_stream_onnx.py ... --no-spinning   # shared cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from voiceconv.conversion.converter import DIRECTIONS
from voiceconv.conversion.export import synthetic_speech
from voiceconv.conversion.stream_export import export_stream_onnx
from voiceconv.conversion.streaming import DEFAULT_BLOCK_MS, StreamingConverter
from voiceconv.utils.machine import describe_cpu


def parse_threads(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts like 1,2 (each >= 1), got {text!r}")
    return values


def timed_stream(sc: StreamingConverter, wav: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """``wav`` pushed block by block (each push timed), then flushed (not timed)."""
    sc.reset()
    out, times = [], []
    for i in range(0, wav.shape[0], sc.block_samples):
        block = wav[i : i + sc.block_samples]
        start = time.perf_counter()
        out.append(sc.push(block))
        times.append(time.perf_counter() - start)
    out.append(sc.flush())
    return np.concatenate(out), times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="VC training checkpoint of a streaming generator")
    p.add_argument("--vocoder", required=True, help="streaming Vocos checkpoint (the graph's)")
    p.add_argument("--direction", default="a2b", choices=sorted(DIRECTIONS))
    p.add_argument("--onnx", type=Path, default=None, help="an exported step graph (default: export one now)")
    p.add_argument("--audio", type=Path, default=None, help="speech file (default: synthetic signal)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the synthetic signal (default 5)")
    p.add_argument("--block-ms", type=float, default=DEFAULT_BLOCK_MS, help="converter block (default 46.4 ms)")
    p.add_argument("--threads", type=parse_threads, default=[1, 2], help="thread counts, e.g. 1,2 (default)")
    p.add_argument("--no-spinning", action="store_true",
                   help="onnxruntime threads sleep between operators (use with OMP_WAIT_POLICY=PASSIVE for "
                        "PyTorch on cores shared with other jobs)")
    args = p.parse_args(argv)

    print(f"CPU: {describe_cpu()}")
    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"onnxruntime spinning {'off' if args.no_spinning else 'on'}, load average {os.getloadavg()[0]:.1f}")
    common = dict(direction=args.direction, vocoder=args.vocoder, block_ms=args.block_ms, mode="exact")
    ref = StreamingConverter.from_checkpoint(args.checkpoint, **common)
    if args.audio is not None:
        from voiceconv.audio.io import load_audio
        from voiceconv.conversion.stream_runner import auto_gain

        wav, _ = load_audio(args.audio, ref.sample_rate)
        wav = (wav * auto_gain(ref, wav)).astype(np.float32)
        what = str(args.audio)
    else:
        wav, what = synthetic_speech(ref.sample_rate, args.seconds), f"synthetic {args.seconds:g} s"
    block_s = ref.block_samples / ref.sample_rate
    print(f"input: {what}: {wav.shape[0] / ref.sample_rate:.2f} s; {ref.describe()}")

    with tempfile.TemporaryDirectory() as tmp:
        graph_path = args.onnx
        if graph_path is None:
            graph_path = Path(tmp) / "stream_step.onnx"
            print(export_stream_onnx(args.checkpoint, args.direction, args.vocoder, graph_path,
                                     block_ms=args.block_ms).summary())
        print(f"per-block compute, block {1000 * block_s:.1f} ms ({ref.block_frames} frames), "
              f"{-(-wav.shape[0] // ref.block_samples)} blocks")
        print(f"{'threads':>7} {'torch med ms':>12} {'p90':>7} {'onnx med ms':>11} {'p90':>7} {'pt/ort':>7} "
              f"{'torch xRT':>9} {'onnx xRT':>8} {'max|diff|':>10}")
        for n in args.threads:
            torch.set_num_threads(n)
            onnx_sc = StreamingConverter.from_checkpoint(args.checkpoint, **common, backend="onnx",
                                                         onnx_path=graph_path, onnx_threads=n)
            if args.no_spinning:  # rebuild the session with sleeping workers
                from voiceconv.conversion.onnx_stream import OnnxStreamStep, StepStream

                graph = OnnxStreamStep(graph_path, threads=n, spinning=False)
                onnx_sc._step = StepStream(graph, graph.spec)
            out_pt, t_pt = timed_stream(ref, wav)
            out_ort, t_ort = timed_stream(onnx_sc, wav)
            m_pt, m_ort = statistics.median(t_pt), statistics.median(t_ort)
            q_pt = statistics.quantiles(t_pt, n=10)[-1] if len(t_pt) > 1 else m_pt
            q_ort = statistics.quantiles(t_ort, n=10)[-1] if len(t_ort) > 1 else m_ort
            diff = float(np.max(np.abs(out_pt - out_ort)))
            print(f"{n:>7} {1000 * m_pt:>12.2f} {1000 * q_pt:>7.2f} {1000 * m_ort:>11.2f} {1000 * q_ort:>7.2f} "
                  f"{m_pt / m_ort:>7.2f} {block_s / m_pt:>9.1f} {block_s / m_ort:>8.1f} {diff:>10.2e}", flush=True)
            del onnx_sc
    return 0


if __name__ == "__main__":
    sys.exit(main())
