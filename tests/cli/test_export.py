"""voiceconv-export writes the graph and prints the parity figure, refuses what it cannot
export (one line, exit 2, nothing written), writes nothing when parity fails (exit 1);
voiceconv-convert --backend onnx runs the graph."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conversion"))
from conversion_tiny import speech_like, write_checkpoint, write_vocos, write_wav  # noqa: E402

from voiceconv.cli import convert as convert_cli  # noqa: E402
from voiceconv.cli.export import main  # noqa: E402
from voiceconv.conversion import export as ex  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_export")
    return {"dir": d, "ckpt": write_checkpoint(d / "tiny.ckpt"), "vocos": write_vocos(d / "vocos.pt"),
            "speech": write_wav(d / "speech.wav", speech_like(1.2, seed=4))}


@pytest.fixture(scope="module")
def exported(files) -> tuple[int, str, Path]:
    """(exit status, stdout, graph) of one CLI export with --check-audio, shared by the tests."""
    out = files["dir"] / "out" / "tiny.onnx"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = run(files, "--vocoder", str(files["vocos"]), "--out", str(out), "--check-audio",
                 str(files["speech"]), "--threads", "1")
    return rc, buffer.getvalue(), out


def run(files, *args: str) -> int:
    return main(["--checkpoint", str(files["ckpt"]), "--direction", "a2b", *args])


@pytest.mark.slow
def test_cli_writes_the_graph_and_prints_the_parity_figure(files, exported):
    rc, stdout, out = exported
    assert rc == 0 and out.is_file()
    match = re.search(r"max \|onnxruntime - pytorch\| = (\S+)", stdout)
    assert match and float(match.group(1)) <= ex.PARITY_TOLERANCE
    assert str(files["speech"]) in stdout and str(out) in stdout
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert float(meta["voiceconv.parity_max_abs_diff"]) == pytest.approx(float(match.group(1)), rel=1e-2)


@pytest.mark.slow
def test_convert_backend_onnx_runs_the_graph(files, exported):
    out = exported[2]
    conv = files["dir"] / "converted"
    base = ["--checkpoint", str(files["ckpt"]), "--direction", "a2b", str(files["speech"]), "-q"]
    assert convert_cli.main([*base, "--out-dir", str(conv / "onnx"), "--backend", "onnx", "--onnx", str(out),
                             "--threads", "1"]) == 0
    assert convert_cli.main([*base, "--out-dir", str(conv / "torch"), "--vocoder", str(files["vocos"]),
                             "--precision", "fp32"]) == 0
    a = sf.read(conv / "onnx" / "speech.wav", dtype="float32")[0]
    b = sf.read(conv / "torch" / "speech.wav", dtype="float32")[0]
    assert a.shape == b.shape and np.abs(a).max() > 0.05
    assert np.abs(a - b).max() <= ex.PARITY_TOLERANCE + 2 / 32768


def test_cli_griffinlim_refused_in_one_line(files, capsys):
    out = files["dir"] / "gl.onnx"
    assert run(files, "--vocoder", "griffinlim", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Griffin-Lim cannot be exported" in err[0]
    assert not out.exists()


def test_cli_existing_output_kept(files, capsys):
    out = files["dir"] / "kept.onnx"
    out.write_bytes(b"old")
    assert run(files, "--vocoder", str(files["vocos"]), "--out", str(out)) == 2
    assert "exists already" in capsys.readouterr().err and out.read_bytes() == b"old"


@pytest.mark.slow
def test_cli_nothing_written_when_parity_fails(files, exported, capsys, monkeypatch, tmp_path):
    """Simulated: the shared export's graph, and a PyTorch reference made 1e-2 off."""
    cached = onnx.load(str(exported[2]))
    monkeypatch.setattr(ex, "export_program", lambda module, example, opset=ex.DEFAULT_OPSET: cached)
    real = ex.torch_mel_to_wave
    monkeypatch.setattr(ex, "torch_mel_to_wave", lambda vc, mel, d: real(vc, mel, d) + np.float32(1e-2))
    out = tmp_path / "bad.onnx"
    assert run(files, "--vocoder", str(files["vocos"]), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "differ by 0.01" in err and "nothing written" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_convert_backend_options(files, capsys):
    base = ["--checkpoint", str(files["ckpt"]), "--direction", "a2b", str(files["speech"]),
            "--out-dir", str(files["dir"] / "never")]
    assert convert_cli.main([*base, "--backend", "onnx"]) == 2
    assert "--backend onnx needs --onnx" in capsys.readouterr().err
    assert convert_cli.main([*base, "--onnx", "x.onnx"]) == 2
    assert "--onnx needs --backend onnx" in capsys.readouterr().err
    assert convert_cli.main([*base, "--backend", "onnx", "--onnx", "x.onnx", "--vocoder", "griffinlim"]) == 2
    assert "--vocoder does not apply" in capsys.readouterr().err
    assert convert_cli.main([*base, "--backend", "onnx", "--onnx", str(files["dir"] / "none.onnx")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    assert not (files["dir"] / "never").exists()


def test_convert_without_onnxruntime_names_the_extra(files, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    base = ["--checkpoint", str(files["ckpt"]), "--direction", "a2b", str(files["speech"]),
            "--out-dir", str(files["dir"] / "never")]
    assert convert_cli.main([*base, "--backend", "onnx", "--onnx", "x.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install voiceconv[onnx]" in err[0]
