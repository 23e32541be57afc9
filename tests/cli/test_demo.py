"""``voiceconv-demo`` end to end on a tiny corpus: it trains its Vocos, converts with it,
evaluates, and a second run reuses the trained vocoder (needs Debian's flite)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from voiceconv.cli.demo import build_parser, main

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")


def test_the_demo_converts_with_a_vocos_it_trains_by_default():
    args = build_parser().parse_args([])
    assert args.vocoder == "vocos" and args.vocoder_minutes == 15.0


@needs_flite
@pytest.mark.slow
def test_demo_trains_its_vocoder_converts_with_it_and_reuses_it(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--limit", "14", "--n-eval", "3", "--steps", "2", "--threads", "1",
            "--precision", "fp32", "--vocoder-minutes", "0.01", "--workers", "1"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    ckpt = out / "vocoder_run" / "checkpoints" / "last.ckpt"
    marker = json.loads((out / "vocoder_run" / "trained.json").read_text())
    assert marker["model"] == "vocos_small" and marker["step"] >= 1
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert payload["model"]["class"].endswith("VocosGenerator") and payload["step"] == marker["step"]
    assert f"vocoder {ckpt}" in first
    assert len(list((out / "converted").glob("*.wav"))) == 3
    assert (out / "report" / "report.md").is_file()
    # a second run reuses the finished vocoder (same checkpoint, no further step)
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "reusing the vocoder trained by an earlier run" in second
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["step"] == marker["step"]
