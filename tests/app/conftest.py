"""Web-app test set-up: ``app_tiny`` importable, a runs folder with an untrained tiny
run and a small-model run, recordings, and one ``voiceconv-app`` server for the session.

The server and browser tests need the ``app`` extra (gradio, gradio_client,
playwright); without it they are skipped with the reason printed. The bootstrap
installs it, and Debian's chromium, so in CI they run.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from app_tiny import AppProcess, speech_like, write_run, write_speakers, write_wav  # noqa: E402

from voiceconv.audio.mel import MelConfig  # noqa: E402

MAX_UPLOAD_MB = 2
MISSING_EXTRA = [m for m in ("gradio", "gradio_client", "playwright") if importlib.util.find_spec(m) is None]


def require_app_extra() -> None:
    """Skip (saying why) when the ``app`` extra is not installed."""
    if MISSING_EXTRA:
        reason = f"the app extra is not installed ({', '.join(MISSING_EXTRA)} missing): pip install -e '.[app]'"
        print(f"SKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


@dataclass
class Served:
    """A running app and the files around it."""

    app: AppProcess
    runs: Path
    data: Path
    inputs: Path

    @property
    def url(self) -> str:
        return self.app.url


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory):
    """``voiceconv-app`` on a free local port over runs ``tiny`` (8 kHz, tiny widths) and
    ``small`` (the small MaskCycleGAN-VC at the default 22.05 kHz mels, untrained)."""
    require_app_extra()
    root = tmp_path_factory.mktemp("app")
    runs, data, inputs = root / "runs", root / "data", root / "inputs"
    write_run(runs / "tiny")
    write_run(runs / "small", mel=MelConfig(), widths={}, speakers=("rms", "slt"))
    write_speakers(data)
    write_wav(data / "held_out" / "low" / "h0.wav", speech_like(0.8, 8000, seed=7, f0=105.0), 8000)
    write_wav(data / "held_out" / "high" / "h0.wav", speech_like(0.8, 8000, seed=7, f0=215.0), 8000)
    inputs.mkdir()
    app = AppProcess(runs, data, root / "app.log", "--max-upload-mb", str(MAX_UPLOAD_MB))
    try:
        app.wait_ready()
        yield Served(app, runs, data, inputs)
    finally:
        app.stop()
        print(f"\nvoiceconv-app log (tail):\n{app.log()[-1500:]}")
