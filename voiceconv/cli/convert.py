"""``voiceconv-convert``: convert audio files with a trained checkpoint.

Example::

    voiceconv-convert --checkpoint runs/slt2bdl/checkpoints/last.ckpt --direction a2b \\
        recordings/ extra/*.flac --out-dir converted/ --batch-size 8

``INPUT`` may be files, folders (audio files inside, recursively; hidden ones
skipped) or glob patterns (quoted, so that this tool expands them: ``"in/**/*.wav"``).
Each input becomes ``OUT_DIR/<stem>.wav`` at the model's sample rate, written
atomically (a crash or Ctrl-C never leaves a partial file).

``--backend onnx --onnx GRAPH.onnx`` runs a graph written by ``voiceconv-export`` for
this checkpoint (generator and vocoder in one, onnxruntime on the CPU, ``--threads``
intra-op threads) instead of the PyTorch generator and vocoder; ``--vocoder`` and
``--precision`` do not apply then (the graph has its vocoder and runs in float32).
It needs the ``onnx`` extra (``pip install voiceconv[onnx]``).

Each input that cannot be converted, whichever step fails for it (reading, analysis,
generator, vocoder, writing), gets one line on stderr naming the file and the
problem, and the others are still converted. An output that exists already, or
appears while converting, is kept and reported as skipped unless ``--overwrite``; an
output path that is one of the inputs is always refused. Exit status: 0 when nothing failed (skipped files are not
failures), 1 when any input failed, 2 when nothing could start (bad checkpoint,
vocoder or options), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from voiceconv.audio.preparation import OUTPUT_LEVELS
from voiceconv.conversion.converter import (
    BACKENDS,
    DIRECTIONS,
    PRECISIONS,
    FileResult,
    VoiceConverter,
)
from voiceconv.data.corpora import AUDIO_EXTENSIONS
from voiceconv.errors import VoiceconvError

_GLOB_CHARS = set("*?[")


def build_parser() -> argparse.ArgumentParser:
    """The ``voiceconv-convert`` argument parser."""
    p = argparse.ArgumentParser(
        prog="voiceconv-convert",
        description="Convert speech between the two speakers of a trained checkpoint.",
        epilog="Exit status: 0 all converted or skipped, 1 some input failed, 2 could not start.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or glob patterns")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="training checkpoint (.ckpt)")
    p.add_argument("--direction", required=True, choices=sorted(DIRECTIONS),
                   help="a2b: speaker A to B; b2a: B to A")
    p.add_argument("--out-dir", required=True, type=Path, metavar="DIR",
                   help="folder for the converted <stem>.wav files (created if needed)")
    p.add_argument("--vocoder", default=None, metavar="griffinlim[:N[:M]]|PATH",
                   help="Griffin-Lim (N iterations, default 32; M NNLS iterations, default 100) "
                        "or a neural vocoder checkpoint (default griffinlim; torch backend only)")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="torch: PyTorch generator and vocoder (default); onnx: the --onnx graph "
                        "(voiceconv-export) with onnxruntime")
    p.add_argument("--onnx", type=Path, default=None, metavar="GRAPH.onnx",
                   help="graph written by voiceconv-export for this checkpoint (with --backend onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="generator precision: bf16 (autocast), fp32, or auto (default: bf16 where "
                        "the CPU/GPU computes it natively, else fp32)")
    p.add_argument("--output-level", default="input", choices=OUTPUT_LEVELS,
                   help="input: the output keeps the input's loudness (default); model: the level "
                        "the vocoder made (before 2026-12)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of torch and of onnxruntime (default: theirs, one per core)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="short inputs of similar length converted together (default 8; 1 = one by one)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list converted files")
    return p


def expand_inputs(specs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """(input files, problems): folders searched recursively, globs expanded.

    A path that exists as a file is kept whatever its extension (the converter says
    whether it is audio); a missing plain path is kept too (it fails with "file not
    found"); a pattern or folder that yields nothing is a problem line. Duplicates
    (same resolved path) are dropped, first occurrence kept.
    """
    files: list[Path] = []
    problems: list[str] = []

    def add_dir(folder: Path, spec: str) -> None:
        found = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        if not found:
            problems.append(f"{spec}: folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        files.extend(found)

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            add_dir(path, spec)
        elif path.exists() or not (_GLOB_CHARS & set(spec)):
            files.append(path)
        else:
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                problems.append(f"{spec}: no file matches this pattern")
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    add_dir(mp, m)
                else:
                    files.append(mp)
    unique: dict[Path, Path] = {}
    for f in files:
        try:
            key = f.resolve()
        except OSError:
            key = f.absolute()
        unique.setdefault(key, f)
    return list(unique.values()), problems


def _backend_problem(args: argparse.Namespace) -> str | None:
    """Why the backend options do not fit together, or None."""
    if args.backend == "onnx":
        if args.onnx is None:
            return "--backend onnx needs --onnx GRAPH.onnx (written by voiceconv-export)"
        if args.vocoder is not None:
            return "--vocoder does not apply to --backend onnx (the graph holds its vocoder)"
        if args.precision == "bf16":
            return "--precision bf16 does not apply to --backend onnx (the graph runs in float32)"
    elif args.onnx is not None:
        return "--onnx needs --backend onnx"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-convert``; returns the exit status."""
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if args.batch_size < 1:
        print(f"voiceconv-convert: --batch-size must be >= 1, got {args.batch_size}", file=err)
        return 2
    if args.out_dir.exists() and not args.out_dir.is_dir():
        print(f"{args.out_dir}: --out-dir exists and is not a folder", file=err)
        return 2
    problem = _backend_problem(args)
    if problem:
        print(f"voiceconv-convert: {problem}", file=err)
        return 2
    files, problems = expand_inputs(args.inputs)
    for line in problems:
        print(line, file=err)
    if args.threads is not None:
        if args.threads < 1:
            print(f"voiceconv-convert: --threads must be >= 1, got {args.threads}", file=err)
            return 2
        torch.set_num_threads(args.threads)
    try:
        onnx = {"onnx_path": args.onnx, "onnx_threads": args.threads} if args.backend == "onnx" else {}
        vc = VoiceConverter.from_checkpoint(
            args.checkpoint, device=args.device, vocoder=args.vocoder or "griffinlim", precision=args.precision,
            output_level=args.output_level, backend=args.backend, **onnx,
        )
    except VoiceconvError as exc:
        print(f"voiceconv-convert: {exc}", file=err)
        return 2
    counts = {"converted": 0, "skipped": 0, "failed": 0}

    def show(res: FileResult) -> None:
        counts[res.status] += 1
        if res.status == "converted":
            if not args.quiet:
                print(f"{res.source} -> {res.output}", flush=True)
        elif res.status == "skipped":
            print(f"skipped {res.message}", file=err, flush=True)
        else:
            print(res.message, file=err, flush=True)

    if files:
        if not args.quiet:
            via = f" with {vc.describe_backend()}" if args.backend != "torch" else ""
            print(f"converting {len(files)} file(s), {vc.describe_direction(args.direction)}, "
                  f"into {args.out_dir}{via}", file=err)
        try:
            vc.convert_files(files, args.out_dir, direction=args.direction, overwrite=args.overwrite,
                             batch_size=args.batch_size, on_result=show)
        except KeyboardInterrupt:
            print("voiceconv-convert: interrupted (no partial output file was left)", file=err)
            return 130
        except VoiceconvError as exc:  # e.g. the output folder cannot be created
            print(f"voiceconv-convert: {exc}", file=err)
            return 2
    failed = counts["failed"] + len(problems)
    print(f"{counts['converted']} converted, {counts['skipped']} skipped, {failed} failed", file=err)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
