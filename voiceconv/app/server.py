"""Start the web app: environment (no analytics, uploads in the work folder), the
service, the page, and Gradio's server bound to 127.0.0.1 by default."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 200


def configure_environment(work_dir: Path) -> None:
    """Set what Gradio reads at import time: no analytics (no network at run time) and
    uploads under ``work_dir/uploads`` (so the app writes only where it was told)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir / "uploads")
    (work_dir / "uploads").mkdir(parents=True, exist_ok=True)


def default_work_dir(runs_dir: Path) -> Path:
    """``<runs>/.voiceconv-app`` (hidden, so it is never listed as a run)."""
    return runs_dir / ".voiceconv-app"


def create_app(
    runs_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str] | None = None,
    data_dirs: Sequence[str | os.PathLike[str]] = (),
    device: str = "cpu",
    precision: str = "fp32",
    train_defaults: Sequence[str] = (),
) -> tuple[Any, Any]:
    """(service, Blocks) for ``runs_dir``; call before anything imports gradio."""
    runs = Path(runs_dir).resolve()
    work = Path(work_dir).resolve() if work_dir else default_work_dir(runs)
    configure_environment(work)
    from voiceconv.app.service import AppService
    from voiceconv.app.ui import build_blocks

    service = AppService(runs, work, data_dirs, device=device, precision=precision,
                         train_defaults=train_defaults)
    return service, build_blocks(service)


def launch(
    runs_dir: str | os.PathLike[str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    work_dir: str | os.PathLike[str] | None = None,
    data_dirs: Sequence[str | os.PathLike[str]] = (),
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    device: str = "cpu",
    precision: str = "fp32",
    train_defaults: Sequence[str] = (),
    block: bool = True,
) -> tuple[Any, Any]:
    """Serve the app (queue on; uploads above ``max_upload_mb`` refused); returns
    (service, Blocks). Gradio may serve files only from the runs and work folders."""
    service, demo = create_app(runs_dir, work_dir, data_dirs, device, precision, train_defaults)
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name=host,
        server_port=port,
        allowed_paths=[str(service.runs_dir), str(service.work_dir)],
        max_file_size=int(max_upload_mb * 1024 * 1024),
        prevent_thread_lock=not block,
        show_error=True,
        quiet=False,
        inbrowser=False,
        share=False,
    )
    return service, demo
