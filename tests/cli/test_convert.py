"""voiceconv-convert: inputs as files, folders and globs; one line per bad input; exit
status; outputs kept, never written over inputs, never left half-written."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conversion"))
from conversion_tiny import TINY_MEL, speech_like, write_checkpoint, write_wav  # noqa: E402

from voiceconv.cli.convert import expand_inputs, main  # noqa: E402

torch.set_num_threads(1)
SR = TINY_MEL.sample_rate


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def run(ckpt: Path, *args: str) -> int:
    return main(["--checkpoint", str(ckpt), "--direction", "a2b", *args])


def make_bad(folder: Path) -> dict[str, str]:
    """One input per kind of problem -> words its error line must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("not audio\n")
    sf.write(folder / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(folder / "short.wav", speech_like(0.01), SR)
    nan = speech_like(0.5)
    nan[3] = np.nan
    sf.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    return {"empty.wav": "empty", "text.wav": "not an audio file", "silent.wav": "silent",
            "short.wav": "too short", "nan.wav": "NaN"}


def test_one_line_per_bad_input_and_the_rest_convert(ckpt: Path, tmp_path: Path, capsys) -> None:
    ins = tmp_path / "in"
    problems = make_bad(ins)
    for i in range(2):
        write_wav(ins / "sub" / f"good{i}.wav", speech_like(1.0, seed=i))
    out = tmp_path / "out"
    missing = tmp_path / "missing.wav"
    rc = run(ckpt, str(ins), str(missing), str(tmp_path / "nomatch*.flac"), "--out-dir", str(out),
             "--batch-size", "2")
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    for name, words in problems.items():
        lines = [ln for ln in err if ln.startswith(str(ins / name) + ":")]
        assert len(lines) == 1 and words in lines[0], (name, err)
    assert sum(ln.startswith(f"{missing}:") and "not found" in ln for ln in err) == 1
    assert any("nomatch*.flac: no file matches" in ln for ln in err)
    assert sorted(p.name for p in out.iterdir()) == ["good0.wav", "good1.wav"]  # no temp files
    assert sf.info(out / "good0.wav").samplerate == SR


def test_exit_zero_and_existing_outputs_skipped(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = write_wav(tmp_path / "in" / "a.wav", speech_like(1.0))
    out = tmp_path / "out"
    assert run(ckpt, str(src), "--out-dir", str(out)) == 0
    first = (out / "a.wav").read_bytes()
    (out / "a.wav").write_bytes(b"edited by hand")
    capsys.readouterr()
    assert run(ckpt, str(src), "--out-dir", str(out)) == 0  # skipped is not a failure
    assert "skipped" in capsys.readouterr().err
    assert (out / "a.wav").read_bytes() == b"edited by hand"
    assert run(ckpt, str(src), "--out-dir", str(out), "--overwrite") == 0
    assert (out / "a.wav").read_bytes() == first  # same checkpoint, same input: same output


def test_input_never_overwritten(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = write_wav(tmp_path / "a.wav", speech_like(1.0))
    before = src.read_bytes()
    assert run(ckpt, str(src), "--out-dir", str(tmp_path), "--overwrite") == 1
    assert "would overwrite input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_globs_and_folders(tmp_path: Path) -> None:
    for rel in ("a/x.wav", "a/b/y.flac", "a/.hidden/z.wav", "a/notes.txt", "c/w.wav"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    files, problems = expand_inputs([str(tmp_path / "a"), str(tmp_path / "c" / "*.wav"),
                                     str(tmp_path / "a" / "x.wav"), str(tmp_path / "none" / "*.wav")])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/b/y.flac", "a/x.wav", "c/w.wav"]
    assert len(problems) == 1 and "no file matches" in problems[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    files, problems = expand_inputs([str(empty)])
    assert not files and "no audio files" in problems[0]


def test_interrupt_leaves_no_partial_output(ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    src = write_wav(tmp_path / "in" / "a.wav", speech_like(1.0))
    out = tmp_path / "out"
    real_write = sf.SoundFile.write

    def half_then_ctrl_c(self, data):
        real_write(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(sf.SoundFile, "write", half_then_ctrl_c)
    assert run(ckpt, str(src), "--out-dir", str(out)) == 130
    assert list(out.iterdir()) == []
    assert "interrupted" in capsys.readouterr().err


def test_cannot_start(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = write_wav(tmp_path / "a.wav", speech_like(1.0))
    assert main(["--checkpoint", str(tmp_path / "nope.ckpt"), "--direction", "a2b", str(src),
                 "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.ckpt" in err and len(err.strip().splitlines()) == 1
    assert run(ckpt, str(src), "--out-dir", str(tmp_path / "o"), "--vocoder", "griffinlim:x") == 2
    not_dir = tmp_path / "file"
    not_dir.write_text("")
    assert run(ckpt, str(src), "--out-dir", str(not_dir)) == 2
    with pytest.raises(SystemExit):
        run(ckpt, str(src), "--out-dir", str(tmp_path / "o"), "--precision", "fp8")
