"""``voiceconv-app``: the web app (Gradio) over the trained runs in ``--runs``.

    voiceconv-app --runs runs/ [--host 127.0.0.1] [--port 7860] [--data DIR ...]

Binds to 127.0.0.1 unless ``--host`` says otherwise. Reads server folders only inside
``--runs``, the work folder and ``--data`` folders; writes only into ``--runs`` (new
runs, evaluation reports) and the work folder (default ``RUNS/.voiceconv-app``).
Needs the ``app`` extra (``pip install -e .[app]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voiceconv.app.server import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT


def build_parser() -> argparse.ArgumentParser:
    """The ``voiceconv-app`` argument parser."""
    p = argparse.ArgumentParser(prog="voiceconv-app", description="voiceconv web app (Gradio).")
    p.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR",
                   help="folder of trained runs; new runs are written here (default runs/)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--work-dir", type=Path, metavar="DIR",
                   help="the app's own folder: uploads, outputs (default RUNS/.voiceconv-app)")
    p.add_argument("--data", type=Path, action="append", default=[], metavar="DIR",
                   help="a folder whose recordings the Train/Evaluate tabs may read (repeatable)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest upload accepted (default {DEFAULT_MAX_UPLOAD_MB} MB)")
    p.add_argument("--device", default="cpu", help="conversion device: cpu or cuda (default cpu)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="conversion precision")
    p.add_argument("--train-override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override applied to every training started from the page (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``voiceconv-app``; returns the exit status."""
    args = build_parser().parse_args(argv)
    import importlib.util

    # found, not imported: gradio reads GRADIO_TEMP_DIR at import time, set by launch()
    if importlib.util.find_spec("gradio") is None:
        print("voiceconv-app: gradio is not installed; install the extra: pip install -e '.[app]'",
              file=sys.stderr)
        return 2
    from voiceconv.app.server import launch
    from voiceconv.errors import VoiceconvError

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"voiceconv-app: WARNING: serving on {args.host}: anyone who can reach it can convert, "
              "train and read the runs folder (no login)", file=sys.stderr)

    try:
        launch(args.runs, host=args.host, port=args.port, work_dir=args.work_dir, data_dirs=args.data,
               max_upload_mb=args.max_upload_mb, device=args.device, precision=args.precision,
               train_defaults=args.train_override)
    except VoiceconvError as err:
        print(f"voiceconv-app: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
