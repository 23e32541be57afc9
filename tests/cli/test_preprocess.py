"""``voiceconv-preprocess`` end to end on tiny generated corpora."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceconv.cli.preprocess import main
from voiceconv.data.cache import FeatureCache

SR = 16000
SMALL = [
    "--sample-rate",
    "16000",
    "--n-fft",
    "512",
    "--win-length",
    "512",
    "--hop-length",
    "128",
    "--n-mels",
    "32",
    "--no-progress",
    "--workers",
    "1",
]


def tone(path: Path, f0: float, seconds: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, 0.4 * np.sin(2 * np.pi * f0 * t) * np.hanning(t.size), SR)


@pytest.fixture()
def folders(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for spk, f0 in (("a", 150.0), ("b", 300.0)):
        for i in range(2):
            tone(root / spk / f"s{i}.wav", f0 + 20 * i)
    return root


def test_preprocess_folders_and_resume(folders: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cache"
    assert main(["--corpus", "folders", "--root", str(folders), "--out", str(out), *SMALL]) == 0
    assert "done 4, already cached 0, failed 0" in capsys.readouterr().out
    cache = FeatureCache(out)
    assert cache.speakers == ["a", "b"]
    assert cache.mel_config.n_mels == 32 and cache.mel_config.sample_rate == SR
    assert cache.load_mel("b", "s1").shape[0] == 32

    assert main(["--corpus", "folders", "--root", str(folders), "--out", str(out), *SMALL]) == 0
    assert "done 0, already cached 4" in capsys.readouterr().out


def test_speaker_choice_and_none_values(folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    argv = [
        "--corpus",
        "folders",
        "--root",
        str(folders),
        "--out",
        str(out),
        "--speakers",
        "b",
        "--fmax",
        "none",
        "--trim-top-db",
        "none",
        "--normalize",
        "none",
        *SMALL,
    ]
    assert main(argv) == 0
    assert FeatureCache(out).speakers == ["b"]
    assert json.loads((out / "mel_config.json").read_text())["fmax"] is None
    opts = json.loads((out / "preprocess.json").read_text())
    assert opts == {"trim_top_db": None, "normalize": None}


def test_bad_files_listed_and_status(folders: Path, tmp_path: Path, capsys) -> None:
    bad = folders / "a" / "zz.wav"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a sound")
    assert (
        main(["--corpus", "folders", "--root", str(folders), "--out", str(tmp_path / "c1"), *SMALL])
        == 0
    )
    captured = capsys.readouterr()
    assert "failed 1" in captured.out
    bad_lines = [ln for ln in captured.err.splitlines() if str(bad.resolve()) in ln]
    assert len(bad_lines) == 1

    only_bad = tmp_path / "only_bad"
    (only_bad / "x").mkdir(parents=True)
    (only_bad / "x" / "1.wav").write_bytes(b"junk")
    (only_bad / "x" / "2.wav").write_bytes(b"")
    assert (
        main(
            ["--corpus", "folders", "--root", str(only_bad), "--out", str(tmp_path / "c2"), *SMALL]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "1.wav" in err and "2.wav" in err


def test_errors_exit_non_zero_with_one_line(folders: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    assert (
        main(["--corpus", "vctk", "--root", str(missing), "--out", str(tmp_path / "c"), *SMALL])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err

    out = tmp_path / "cache"
    assert main(["--corpus", "folders", "--root", str(folders), "--out", str(out), *SMALL]) == 0
    argv = [
        "--corpus",
        "folders",
        "--root",
        str(folders),
        "--out",
        str(out),
        *SMALL,
        "--n-mels",
        "40",
    ]
    assert main(argv) == 1
    assert "n_mels" in capsys.readouterr().err


def test_vcc2018_split_option(tmp_path: Path) -> None:
    root = tmp_path / "vcc"
    tone(root / "vcc2018_training" / "VCC2SF1" / "10001.wav", 200.0)
    tone(root / "vcc2018_evaluation" / "VCC2SF1" / "30001.wav", 210.0)
    tone(root / "vcc2018_evaluation" / "VCC2SF1" / "30002.wav", 220.0)
    out = tmp_path / "cache"
    assert (
        main(
            [
                "--corpus",
                "vcc2018",
                "--root",
                str(root),
                "--split",
                "eval",
                "--out",
                str(out),
                *SMALL,
            ]
        )
        == 0
    )
    assert [e.utt_id for e in FeatureCache(out).utterances("VCC2SF1")] == ["30001", "30002"]
