"""``voiceconv-render-corpus``: a parallel speech corpus from flite voices.

Example::

    voiceconv-render-corpus --voices rms slt --out data/flite --limit 50

renders the first 50 sentences of voiceconv's prompt list (or ``--prompts FILE``:
a plain sentence list or a Festival ``( id "text" )`` file) with each voice into
``OUT/<voice>/<id>.wav`` plus ``OUT/transcripts.tsv``; read it back with
``voiceconv-preprocess --corpus folders --root OUT``. Re-running resumes.
"""

from __future__ import annotations

import argparse
import sys

from voiceconv.data.flite import render_corpus
from voiceconv.data.prompts import load_prompts
from voiceconv.errors import VoiceconvError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``voiceconv-render-corpus``."""
    p = argparse.ArgumentParser(
        prog="voiceconv-render-corpus",
        description="Render prompts with flite voices into a parallel corpus (resumable).",
    )
    p.add_argument(
        "--voices",
        nargs="+",
        default=["rms", "slt"],
        metavar="VOICE",
        help="flite voices (default: rms slt)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="prompt list (default: the one shipped with voiceconv)",
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="render only the first N prompts"
    )
    p.add_argument("--workers", type=int, default=2, help="parallel flite jobs (default 2)")
    p.add_argument(
        "--sample-rate", type=int, default=22050, help="output sample rate in Hz (default 22050)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-render-corpus``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        prompts = load_prompts(args.prompts)
        result = render_corpus(
            prompts,
            args.voices,
            out_dir=args.out,
            sample_rate=args.sample_rate,
            workers=args.workers,
            limit=args.limit,
            progress=not args.no_progress,
        )
    except VoiceconvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for voice, paths in result.items():
        print(f"{voice}: {len(paths)} files in {args.out}/{voice}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
