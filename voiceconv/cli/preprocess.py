"""``voiceconv-preprocess``: read a corpus and fill a feature cache with log-mels.

Example::

    voiceconv-preprocess --corpus cmu_arctic --root data/cmu_arctic \\
        --speakers slt bdl --out cache/arctic --workers 2

Every :class:`~voiceconv.audio.mel.MelConfig` field can be overridden with an
option of the same name (``--sample-rate 16000 --n-mels 80 --fmax none``). Files
that cannot be used are listed one per line; the exit status is non-zero only
when no utterance of the corpus ended up in the cache (or the corpus / cache
could not be opened at all).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from voiceconv.audio.mel import MelConfig
from voiceconv.data.cache import NORMALIZE_CHOICES, preprocess
from voiceconv.data.corpora import CORPUS_READERS, read_corpus
from voiceconv.errors import VoiceconvError


def _none_or(conv: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("none", "null") else conv(text)

    parse.__name__ = conv.__name__
    return parse


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# MelConfig field annotations (strings under ``from __future__ import annotations``).
_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _bool,
    "float | None": _none_or(float),
    "int | None": _none_or(int),
    "str | None": _none_or(str),
}


def add_mel_config_options(parser: argparse.ArgumentParser) -> None:
    """Add one ``--field-name`` option per :class:`MelConfig` field (absent unless given)."""
    group = parser.add_argument_group("mel features (MelConfig overrides)")
    for f in dataclasses.fields(MelConfig):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        conv = _PARSERS.get(kind, str)
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"mel_{f.name}",
            type=conv,
            default=argparse.SUPPRESS,
            metavar=kind.split(" ")[0].upper() if kind != "bool" else "BOOL",
            help=f"default {f.default!r}" + (" ('none' for None)" if "None" in kind else ""),
        )


def mel_config_from_args(args: argparse.Namespace) -> MelConfig:
    """The :class:`MelConfig` defaults with the options given on the command line."""
    overrides = {
        f.name: getattr(args, f"mel_{f.name}")
        for f in dataclasses.fields(MelConfig)
        if hasattr(args, f"mel_{f.name}")
    }
    return MelConfig(**overrides)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``voiceconv-preprocess``."""
    p = argparse.ArgumentParser(
        prog="voiceconv-preprocess",
        description="Compute log-mel features of a corpus into a resumable feature cache.",
    )
    p.add_argument("--corpus", required=True, choices=sorted(CORPUS_READERS), help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder")
    p.add_argument(
        "--speakers",
        nargs="+",
        default=None,
        metavar="NAME",
        help="speakers to read (default: all)",
    )
    p.add_argument("--out", required=True, help="feature cache folder (created or resumed)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--split", choices=("train", "eval"), default="train", help="vcc2018 split")
    p.add_argument("--mic", default="mic1", help="VCTK 0.92 microphone (default mic1)")
    p.add_argument(
        "--trim-top-db",
        type=_none_or(float),
        default=40.0,
        metavar="DB",
        help="cut leading/trailing audio this far below the peak (default 40; 'none': no trim)",
    )
    p.add_argument(
        "--normalize",
        type=_none_or(str),
        choices=list(NORMALIZE_CHOICES),
        default="peak",
        help="level normalisation: peak, loudness or none (default peak)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_mel_config_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-preprocess``; returns the exit status."""
    args = build_parser().parse_args(argv)
    reader_kw: dict[str, Any] = {"speakers": args.speakers}
    if args.corpus == "vcc2018":
        reader_kw["split"] = args.split
    elif args.corpus == "vctk":
        reader_kw["mic"] = args.mic
    try:
        mel_cfg = mel_config_from_args(args)
        corpus = read_corpus(args.corpus, args.root, **reader_kw)
        n_utts = sum(len(v) for v in corpus.values())
        print(f"{args.corpus} corpus at {args.root}: {len(corpus)} speakers, {n_utts} utterances")
        summary = preprocess(
            corpus,
            args.out,
            mel_cfg,
            workers=args.workers,
            trim_top_db=args.trim_top_db,
            normalize=args.normalize,
            progress=not args.no_progress,
        )
    except VoiceconvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for _, message in summary.failed:
        print(f"skipped bad file: {message}", file=sys.stderr)
    print(
        f"done {summary.done}, already cached {summary.skipped_existing}, "
        f"failed {len(summary.failed)}; cache: {args.out}"
    )
    return 0 if summary.usable > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
