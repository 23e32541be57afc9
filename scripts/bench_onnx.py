#!/usr/bin/env python
"""Speed of the exported mel -> waveform graph (onnxruntime) against PyTorch fp32.

Both run the same thing on the same mel: the source log-mel of ``--audio`` (prepared
and analysed as the converter does) or of a synthetic harmonic signal, through
normalisation, generator, de-normalisation and the neural vocoder, in one pass (the
mel is cut to the converter's window, ``chunk_frames``). PyTorch runs the converter's
own stages (``convert_mel`` + the vocoder, fp32, ``torch.set_num_threads(N)``);
onnxruntime runs the graph on the CPU provider with ``N`` intra-op threads. For each
``N`` in ``--threads`` the script prints the median of ``--repeats`` timed runs (after
one warm-up run each), the ratio PyTorch / onnxruntime (above 1: onnxruntime faster),
the real-time factor of each (audio seconds per compute second) and the max absolute
difference of their samples. The CPU model comes first: timings on a shared machine
depend on it and on the other load, so quote them together.

Without ``--onnx`` the graph is exported first into a temporary folder (the export's
own parity check included).

    python scripts/bench_onnx.py --checkpoint runs/demo/train_run/checkpoints/last.ckpt \\
        --vocoder runs/vocos/checkpoints/last.ckpt --audio runs/demo/corpus/rms/vc_0001.wav
    python scripts/bench_onnx.py --checkpoint CKPT --onnx model.onnx --vocoder VOC --seconds 10 --threads 1,2,4
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_onnx.py ... --no-spinning     # cores shared with other jobs
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from voiceconv.conversion.converter import DIRECTIONS, VoiceConverter
from voiceconv.conversion.export import export_onnx, synthetic_speech, torch_mel_to_wave
from voiceconv.conversion.onnx_backend import OnnxMelToWave
from voiceconv.utils.machine import describe_cpu


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_threads(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts like 1,2 (each >= 1), got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="VC training checkpoint")
    p.add_argument("--vocoder", required=True, help="neural vocoder checkpoint (the graph's)")
    p.add_argument("--direction", default="a2b", choices=sorted(DIRECTIONS))
    p.add_argument("--onnx", type=Path, default=None, help="an exported graph (default: export one now)")
    p.add_argument("--audio", type=Path, default=None, help="speech file (default: synthetic signal)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the synthetic signal (default 5)")
    p.add_argument("--threads", type=parse_threads, default=[1, 2], help="thread counts, e.g. 1,2 (default)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median; default 5)")
    p.add_argument("--no-spinning", action="store_true",
                   help="onnxruntime threads sleep between operators (use with OMP_WAIT_POLICY=PASSIVE for "
                        "PyTorch on cores shared with other jobs)")
    args = p.parse_args(argv)

    print(f"CPU: {describe_cpu()}")
    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"onnxruntime spinning {'off' if args.no_spinning else 'on'}, load average {os.getloadavg()[0]:.1f}")
    vc = VoiceConverter.from_checkpoint(args.checkpoint, vocoder=args.vocoder, precision="fp32")
    if args.audio is not None:
        from voiceconv.audio.io import load_audio

        wav, _ = load_audio(args.audio, vc.sample_rate, min_samples=vc.mel_config.n_fft)
        what = str(args.audio)
    else:
        wav = synthetic_speech(vc.sample_rate, args.seconds)
        what = f"synthetic {args.seconds:g} s"
    mel = vc.analyse(vc.prepare_for_model(wav, args.audio).wav)[:, : vc.chunk_frames]
    audio_s = mel.shape[-1] * vc.mel_config.hop_length / vc.sample_rate
    print(f"input: {what}: {mel.shape[-1]} frames = {audio_s:.2f} s of audio at {vc.sample_rate} Hz "
          f"(one pass; chunk_frames {vc.chunk_frames})")

    with tempfile.TemporaryDirectory() as tmp:
        graph_path = args.onnx
        if graph_path is None:
            graph_path = Path(tmp) / "bench.onnx"
            report = export_onnx(args.checkpoint, args.direction, args.vocoder, graph_path)
            print(report.summary())
        mel_np = mel.cpu().numpy()
        print(f"{'threads':>7} {'pytorch s':>10} {'onnxrt s':>10} {'pt/ort':>7} {'pt xRT':>7} {'ort xRT':>8} "
              f"{'max|diff|':>10}")
        for n in args.threads:
            torch.set_num_threads(n)
            graph = OnnxMelToWave(graph_path, threads=n, mel_config=vc.mel_config, spinning=not args.no_spinning)
            ref = torch_mel_to_wave(vc, mel, args.direction)
            got = graph(mel_np)
            diff = float(np.max(np.abs(got - ref)))
            t_pt = median_seconds(lambda: torch_mel_to_wave(vc, mel, args.direction), args.repeats)
            t_ort = median_seconds(lambda graph=graph: graph(mel_np), args.repeats)
            print(f"{n:>7} {t_pt:>10.3f} {t_ort:>10.3f} {t_pt / t_ort:>7.2f} {audio_s / t_pt:>7.1f} "
                  f"{audio_s / t_ort:>8.1f} {diff:>10.2e}", flush=True)
            del graph
    return 0


if __name__ == "__main__":
    sys.exit(main())
