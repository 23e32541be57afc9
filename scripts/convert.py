#!/usr/bin/env python
"""Convert speech with a trained checkpoint through the Python API (an example).

    python scripts/convert.py runs/slt2bdl/checkpoints/last.ckpt in.wav out.wav
    python scripts/convert.py CKPT in.wav out.wav --direction b2a --device cuda

Shows the two ways in: arrays (``convert``) and files (``convert_file``). For many
files, folders and globs use the ``voiceconv-convert`` command instead.
"""

from __future__ import annotations

import argparse
import sys

from voiceconv.audio.io import load_audio
from voiceconv.conversion import VoiceConverter
from voiceconv.errors import VoiceconvError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("source", help="audio file to convert")
    ap.add_argument("output", help="where to write the converted .wav")
    ap.add_argument("--direction", default="a2b", choices=["a2b", "b2a"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        # Everything (model, mel settings, speaker statistics) comes from the checkpoint.
        vc = VoiceConverter.from_checkpoint(args.checkpoint, device=args.device)
        print(f"converting {vc.describe_direction(args.direction)} at {vc.sample_rate} Hz")

        # 1. Arrays in, arrays out: any sample rate; the result is at vc.sample_rate.
        wav, sr = load_audio(args.source)
        converted, out_sr = vc.convert(wav, sr, direction=args.direction)
        print(f"{len(wav) / sr:.2f} s in, {len(converted) / out_sr:.2f} s out")

        # 2. File to file: written atomically; an existing output is kept unless overwrite=True.
        vc.convert_file(args.source, args.output, direction=args.direction, overwrite=True)
    except VoiceconvError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
