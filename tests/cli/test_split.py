"""voiceconv-split: disjoint training halves, parallel held-out set, resumable."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from voiceconv.cli.split import main


def _corpus(root, n=10):
    t = np.arange(8000) / 16000
    for spk, f0 in (("a", 120.0), ("b", 210.0)):
        (root / spk).mkdir(parents=True)
        for i in range(n):
            sf.write(root / spk / f"u{i:02d}.wav", 0.3 * np.sin(2 * np.pi * (f0 + i) * t), 16000)


def test_split_writes_disjoint_training_halves_and_parallel_eval(tmp_path, capsys):
    _corpus(tmp_path / "c")
    out = tmp_path / "split"
    assert main(["--root", str(tmp_path / "c"), "--a", "a", "--b", "b", "--n-eval", "2", "--out", str(out)]) == 0
    train_a = {p.stem for p in (out / "train" / "a").iterdir()}
    train_b = {p.stem for p in (out / "train" / "b").iterdir()}
    eval_a = {p.stem for p in (out / "eval" / "a").iterdir()}
    eval_b = {p.stem for p in (out / "eval" / "b").iterdir()}
    assert not train_a & train_b, "training halves must not share a sentence"
    assert eval_a == eval_b and len(eval_a) == 2
    assert not (train_a | train_b) & eval_a
    assert len(train_a) + len(train_b) + len(eval_a) == 10
    # the files are the speakers' own audio
    y, _ = sf.read(next((out / "eval" / "b").iterdir()))
    assert np.abs(y).max() > 0.2
    # a second run is a no-op and gives the same split
    assert main(["--root", str(tmp_path / "c"), "--a", "a", "--b", "b", "--n-eval", "2", "--out", str(out)]) == 0
    assert {p.stem for p in (out / "train" / "a").iterdir()} == train_a


def test_split_unknown_speaker_is_one_line(tmp_path, capsys):
    _corpus(tmp_path / "c", n=4)
    rc = main(["--root", str(tmp_path / "c"), "--a", "a", "--b", "zz", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "zz" in err and len(err.splitlines()) == 1
