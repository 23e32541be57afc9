"""``voiceconv-app``'s command line: safe defaults, a clear message without the extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from voiceconv.cli.app import build_parser, main


def test_defaults_bind_localhost_and_limit_uploads():
    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.runs == Path("runs")
    assert args.max_upload_mb == 200 and args.data == [] and args.work_dir is None
    args = build_parser().parse_args(["--runs", "r", "--data", "a", "--data", "b", "--host", "0.0.0.0"])
    assert args.data == [Path("a"), Path("b")] and args.host == "0.0.0.0"


def test_without_the_app_extra_it_says_how_to_install_it(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["--runs", "nowhere"]) == 2
    assert "pip install -e '.[app]'" in capsys.readouterr().err
