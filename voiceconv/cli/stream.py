"""``voiceconv-stream``: real-time (streaming) conversion, from files or live audio.

File mode streams the inputs, in order, as ONE continuous stream through the
streaming converter, block by block as a live stream would, times every block and
writes each input's converted span to ``OUT/<stem>.wav`` (atomically; without
``--out`` it only measures)::

    voiceconv-stream --checkpoint runs/slt2bdl/checkpoints/last.ckpt --direction a2b \\
        --input a.wav b.flac --out converted/ --min-seconds 600 --report-json stream.json

``--backend onnx --onnx step.onnx`` runs the exact mode's generator and Vocos as the ONNX
step graph written by ``voiceconv-export-stream`` (onnxruntime, ``--onnx-threads``); the
output and latency are the PyTorch stream's (to float rounding).

It prints one line per file written and a summary: compute per block (median,
p99), real-time factor, deadline misses (blocks whose compute took longer than the
block lasts), algorithmic latency and resident memory (at 10 % and at the end of
the stream; ``--min-seconds`` repeats the inputs without a reset to show whether
memory stays flat). ``--input`` takes files, folders and quoted globs like
``voiceconv-convert``; ``--input-list`` a text file with one path per line (blank
lines and ``#`` comments skipped; relative paths are relative to the list's folder).

Live mode converts the default (or given) input device to the output device until
``--seconds`` or Ctrl-C, and reports underruns (see :mod:`voiceconv.conversion.live`);
it needs the ``live`` extra. ``--list-devices`` lists the devices.

Exit status: 0 done (a live run stopped by Ctrl-C included), 1 some input failed,
2 nothing could start (bad options, checkpoint or device), 130 Ctrl-C in file mode.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from voiceconv.cli.convert import expand_inputs
from voiceconv.conversion import live, stream_runner
from voiceconv.conversion.converter import DIRECTIONS, FileResult
from voiceconv.errors import FileProblem, VoiceconvError
from voiceconv.utils.atomic import atomic_write_json

PROG = "voiceconv-stream"


def _gain(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``voiceconv-stream`` argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Streaming voice conversion: files streamed block by block (timed), or live audio.",
        epilog="Exit status: 0 done, 1 some input failed, 2 could not start, 130 interrupted.",
    )
    p.add_argument("--checkpoint", metavar="CKPT", help="training checkpoint (.ckpt); required "
                   "except with --list-devices")
    p.add_argument("--direction", choices=sorted(DIRECTIONS),
                   help="a2b: speaker A to B; b2a: B to A (required except with --list-devices)")
    p.add_argument("--vocoder", metavar="V", help="a Vocos checkpoint trained to stream (voiceconv-train-vocoder model=vocos_stream_small); required")
    p.add_argument("--block-ms", type=float, metavar="MS", help="block length in ms (default: the converter's)")
    p.add_argument("--mode", default="auto", choices=("auto", "exact", "window"),
                   help="streaming mode of the converter (default auto)")
    p.add_argument("--gain", type=_gain, metavar="G|auto",
                   help="input gain of the converter; files: 'auto' sets each file to the level the "
                        "model was trained at (default: the converter's, 1)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the converter")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                   help="torch (default) or onnx: the exact mode's step graph from voiceconv-export-stream, "
                        "run by onnxruntime (needs the onnx extra)")
    p.add_argument("--onnx", type=Path, metavar="FILE.onnx", help="the step graph for --backend onnx")
    p.add_argument("--onnx-threads", type=int, metavar="N", help="onnxruntime intra-op threads (--backend onnx)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", metavar="FILE",
                     help="files, folders or quoted globs, streamed one after another")
    src.add_argument("--input-list", type=Path, metavar="LIST", help="text file, one input path per line")
    src.add_argument("--live", action="store_true", help="convert the input device to the output device")
    src.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input-device", metavar="D", help="live: input device (index or part of its name)")
    p.add_argument("--output-device", metavar="D", help="live: output device (index or part of its name)")
    p.add_argument("--seconds", type=float, metavar="S", help="live: stop after S seconds (default: Ctrl-C)")
    p.add_argument("--out", type=Path, metavar="DIR", help="files: folder for <stem>.wav (default: measure only)")
    p.add_argument("--overwrite", action="store_true", help="files: replace existing outputs")
    p.add_argument("--min-seconds", type=float, default=0.0, metavar="S",
                   help="files: stream the inputs again and again, without reset, until S seconds "
                        "went through (only the first pass is written)")
    p.add_argument("--report-json", type=Path, metavar="PATH", help="write the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="files: do not list written files")
    return p


def read_input_list(path: Path) -> list[Path]:
    """Paths listed in ``path``: one per line, blank lines and ``#`` comments skipped,
    relative ones taken relative to the list's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FileProblem(path, f"cannot read the input list ({reason})") from None
    lines = [ln.strip() for ln in text.splitlines()]
    return [path.parent / ln for ln in lines if ln and not ln.startswith("#")]


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with this combination of options, if anything."""
    files = args.input is not None or args.input_list is not None
    for flag, value in (("--checkpoint", args.checkpoint), ("--direction", args.direction)):
        if value is None and not args.list_devices:
            return f"{flag} is required (except with --list-devices)"
    for flag, value in (("--input-device", args.input_device), ("--output-device", args.output_device),
                        ("--seconds", args.seconds)):
        if value is not None and not args.live:
            return f"{flag} goes with --live"
    for flag, given in (("--out", args.out is not None), ("--min-seconds", args.min_seconds != 0.0),
                        ("--overwrite", args.overwrite)):
        if given and not files:
            return f"{flag} goes with --input / --input-list"
    if args.gain == "auto" and not files:
        return "--gain auto needs whole files (--input / --input-list); give a number with --live"
    if isinstance(args.gain, float) and not (math.isfinite(args.gain) and args.gain > 0):
        return f"--gain must be a positive number or auto, got {args.gain}"
    if args.backend == "onnx" and args.onnx is None:
        return "--backend onnx needs --onnx FILE.onnx (voiceconv-export-stream writes one)"
    for flag, value in (("--onnx", args.onnx), ("--onnx-threads", args.onnx_threads)):
        if value is not None and args.backend != "onnx":
            return f"{flag} goes with --backend onnx"
    if args.backend == "onnx" and args.mode == "window":
        return "--backend onnx runs the exact mode (a generator trained to stream); not --mode window"
    if args.onnx_threads is not None and args.onnx_threads < 1:
        return f"--onnx-threads must be >= 1, got {args.onnx_threads}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if args.block_ms is not None and not args.block_ms > 0:
        return f"--block-ms must be > 0, got {args.block_ms}"
    if args.seconds is not None and not args.seconds > 0:
        return f"--seconds must be > 0, got {args.seconds}"
    if not args.min_seconds >= 0:
        return f"--min-seconds must be >= 0, got {args.min_seconds}"
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        return f"{args.out}: --out exists and is not a folder"
    return None


def _converter_options(args: argparse.Namespace) -> dict[str, Any]:
    """``from_checkpoint`` keywords: the ones given (the converter keeps its defaults)."""
    opts: dict[str, Any] = {"direction": args.direction, "mode": args.mode}
    for key in ("vocoder", "block_ms", "gain", "threads", "onnx_threads"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if args.backend != "torch":
        opts["backend"], opts["onnx_path"] = args.backend, args.onnx
    if opts.get("gain") == "auto":
        del opts["gain"]  # per file, by the runner (the converter keeps gain 1)
    return opts


def _save_report(args: argparse.Namespace, mode: str, report: Any) -> None:
    if args.report_json is None:
        return
    data = {"mode": mode, "checkpoint": args.checkpoint, "direction": args.direction, **report.to_dict()}
    try:
        atomic_write_json(args.report_json, data)
    except OSError as exc:
        raise FileProblem(args.report_json, f"cannot write the report ({exc.strerror or exc})") from None


def _list_devices(err: Any) -> int:
    devices = live.list_devices()
    for dev in devices:
        print(dev)
    if not devices:
        print("no audio devices found (sounddevice lists none)", file=err)
    return 0


def _file_mode(args: argparse.Namespace, err: Any) -> int:
    if args.input is not None:
        files, problems = expand_inputs(args.input)
    else:
        files, problems = read_input_list(args.input_list), []
    for line in problems:
        print(line, file=err)
    if not files:
        print(f"{PROG}: no input files", file=err)
        return 2
    conv = stream_runner.load_converter(args.checkpoint, **_converter_options(args))
    where = f"into {args.out}" if args.out is not None else "(measuring only: no --out)"
    print(f"streaming {len(files)} file(s) {where}: {conv.describe()}", file=err, flush=True)

    def show(res: FileResult) -> None:
        if res.status == "converted":
            if not args.quiet:
                print(f"{res.source} -> {res.output}", flush=True)
        elif res.status == "skipped":
            print(f"skipped {res.message}", file=err, flush=True)
        else:
            print(res.message, file=err, flush=True)

    rep = stream_runner.stream_files(conv, files, args.out, min_seconds=args.min_seconds,
                                     gain="auto" if args.gain == "auto" else 1.0,
                                     on_file=show, overwrite=args.overwrite)
    print(rep.summary(), flush=True)
    _save_report(args, "file", rep)
    return 1 if problems or rep.failed else 0


def _live_mode(args: argparse.Namespace, err: Any) -> int:
    sd = live.import_sounddevice()  # fail fast, before the model is loaded
    live.pick_device(sd, args.input_device, "input")
    live.pick_device(sd, args.output_device, "output")
    conv = stream_runner.load_converter(args.checkpoint, **_converter_options(args))
    until = f"for {args.seconds:g} s" if args.seconds is not None else "until Ctrl-C"
    print(f"live {until}: {conv.describe()}", file=err, flush=True)
    rep = live.run_live(conv, args.input_device, args.output_device, args.seconds, sd=sd)
    print(rep.summary(), flush=True)
    _save_report(args, "live", rep)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-stream``; returns the exit status."""
    args = build_parser().parse_args(argv)
    err = sys.stderr
    problem = _usage_problem(args)
    if problem is not None:
        print(f"{PROG}: {problem}", file=err)
        return 2
    try:
        if args.list_devices:
            return _list_devices(err)
        if args.live:
            return _live_mode(args, err)
        return _file_mode(args, err)
    except VoiceconvError as exc:  # checkpoint, devices, input list, report path
        print(f"{PROG}: {exc}", file=err)
        return 2
    except KeyboardInterrupt:  # file mode (live mode ends on Ctrl-C by itself)
        print(f"{PROG}: interrupted (no partial output file was left)", file=err)
        return 130


if __name__ == "__main__":
    sys.exit(main())
