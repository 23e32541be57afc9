"""``voiceconv-export``: one ONNX graph from log-mels to the converted waveform.

Example::

    voiceconv-export --checkpoint runs/slt2bdl/checkpoints/last.ckpt --direction a2b \\
        --vocoder runs/vocos/checkpoints/last.ckpt --out slt2bdl.onnx --check-audio in.wav

The graph holds the source normalisation, the generator, the target de-normalisation
and the neural vocoder (Vocos or HiFi-GAN; Griffin-Lim is refused); see
:mod:`voiceconv.conversion.export`. The export checks itself: onnxruntime and PyTorch
run the same mel (``--check-audio``, or a synthetic harmonic signal) and the largest
sample difference is printed; above the tolerance nothing is written. Run the graph
with ``voiceconv-convert --backend onnx --onnx slt2bdl.onnx``.

Exit status: 0 written, 1 parity check failed (nothing written), 2 could not start
(bad checkpoint, vocoder, options, missing ``onnx`` extra, existing output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from voiceconv.conversion.converter import DIRECTIONS
from voiceconv.conversion.export import CHECK_FRAMES, DEFAULT_OPSET, PARITY_TOLERANCE, export_onnx
from voiceconv.errors import ExportParityError, VoiceconvError


def build_parser() -> argparse.ArgumentParser:
    """The ``voiceconv-export`` argument parser."""
    p = argparse.ArgumentParser(
        prog="voiceconv-export",
        description="Export a checkpoint's conversion (log-mel -> waveform, with a neural vocoder) to ONNX.",
        epilog="Exit status: 0 written, 1 parity check failed (nothing written), 2 could not start.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="VC training checkpoint (.ckpt)")
    p.add_argument("--direction", required=True, choices=sorted(DIRECTIONS), help="a2b or b2a")
    p.add_argument("--vocoder", required=True, metavar="VOCODER_CKPT",
                   help="neural vocoder checkpoint (Vocos or HiFi-GAN; Griffin-Lim cannot be exported)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.onnx", help="graph to write (atomically)")
    p.add_argument("--check-audio", type=Path, default=None, metavar="FILE",
                   help="speech recording for the parity check (default: a synthetic harmonic signal)")
    p.add_argument("--check-frames", type=int, default=CHECK_FRAMES, metavar="N",
                   help=f"parity check on the first N mel frames (default {CHECK_FRAMES}; a Vocos with "
                        "the integrated phase drifts slowly between implementations, see the docs)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE, metavar="X",
                   help=f"largest accepted max |onnxruntime - PyTorch| (default {PARITY_TOLERANCE:g})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-export``; returns the exit status."""
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if args.threads is not None:
        if args.threads < 1:
            print(f"voiceconv-export: --threads must be >= 1, got {args.threads}", file=err)
            return 2
        torch.set_num_threads(args.threads)
    try:
        report = export_onnx(args.checkpoint, args.direction, args.vocoder, args.out, opset=args.opset,
                             check_audio=args.check_audio, overwrite=args.overwrite, tolerance=args.tolerance,
                             check_frames=args.check_frames)
    except ExportParityError as exc:
        print(f"voiceconv-export: {exc}", file=err)
        return 1
    except VoiceconvError as exc:
        print(f"voiceconv-export: {exc}", file=err)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
