"""``voiceconv-export-stream``: one ONNX graph for one step of the exact streaming mode.

Example::

    voiceconv-export-stream --checkpoint runs/stream/train_run/checkpoints/last.ckpt --direction a2b \\
        --vocoder runs/vocos_stream/checkpoints/last.ckpt --out stream_a2b.onnx

The graph takes 4 new source log-mel frames and the stream's whole state (every causal
convolution's carried frames, the Vocos' pending frames and running phase) and returns
4 windowed iSTFT frames and the new state; see :mod:`voiceconv.conversion.onnx_stream`.
Only a generator and a Vocos trained to stream qualify (``maskcyclegan_vc_stream_small``,
``vocos_stream_small``). The export checks itself: a signal (``--check-audio``, or a
synthetic harmonic one) is streamed through onnxruntime and through the PyTorch stream,
and the largest sample difference is printed; above the tolerance nothing is written.
Run the graph with ``voiceconv-stream --backend onnx --onnx stream_a2b.onnx``.

Exit status: 0 written, 1 parity check failed (nothing written), 2 could not start
(bad checkpoint, vocoder, options, missing ``onnx`` extra, existing output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from voiceconv.conversion.converter import DIRECTIONS
from voiceconv.conversion.export import CHECK_FRAMES, DEFAULT_OPSET, PARITY_TOLERANCE
from voiceconv.conversion.streaming import DEFAULT_BLOCK_MS
from voiceconv.errors import ExportParityError, VoiceconvError

PROG = "voiceconv-export-stream"


def build_parser() -> argparse.ArgumentParser:
    """The ``voiceconv-export-stream`` argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export one step of a streaming checkpoint's exact streaming conversion "
                    "(generator + streaming Vocos, state in and out) to ONNX.",
        epilog="Exit status: 0 written, 1 parity check failed (nothing written), 2 could not start.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="VC training checkpoint of a streaming generator (model=maskcyclegan_vc_stream_small)")
    p.add_argument("--direction", required=True, choices=sorted(DIRECTIONS), help="a2b or b2a")
    p.add_argument("--vocoder", required=True, metavar="VOCODER_CKPT",
                   help="a Vocos checkpoint trained to stream (model=vocos_stream_small)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.onnx", help="graph to write (atomically)")
    p.add_argument("--block-ms", type=float, default=DEFAULT_BLOCK_MS, metavar="MS",
                   help=f"block of the parity stream, recorded in the graph (default {DEFAULT_BLOCK_MS:g}; "
                        "the graph steps 4 frames and runs with any block)")
    p.add_argument("--check-audio", type=Path, default=None, metavar="FILE",
                   help="speech recording for the parity check, brought to the training level "
                        "(default: a synthetic harmonic signal)")
    p.add_argument("--check-frames", type=int, default=CHECK_FRAMES, metavar="N",
                   help=f"parity check on the first N hops of it (default {CHECK_FRAMES}; the integrated "
                        "phase drifts slowly between implementations, see the docs)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE, metavar="X",
                   help=f"largest accepted max |onnxruntime - PyTorch| (default {PARITY_TOLERANCE:g})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-export-stream``; returns the exit status."""
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if args.threads is not None and args.threads < 1:
        print(f"{PROG}: --threads must be >= 1, got {args.threads}", file=err)
        return 2
    if not args.block_ms > 0:
        print(f"{PROG}: --block-ms must be > 0, got {args.block_ms}", file=err)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        from voiceconv.conversion.stream_export import export_stream_onnx

        report = export_stream_onnx(args.checkpoint, args.direction, args.vocoder, args.out,
                                    block_ms=args.block_ms, check_audio=args.check_audio,
                                    overwrite=args.overwrite, tolerance=args.tolerance,
                                    check_frames=args.check_frames, opset=args.opset)
    except ExportParityError as exc:
        print(f"{PROG}: {exc}", file=err)
        return 1
    except VoiceconvError as exc:
        print(f"{PROG}: {exc}", file=err)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
