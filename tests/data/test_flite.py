"""Prompt lists and the flite corpus renderer (render tests skip without flite)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceconv.cli.render_corpus import main as render_main
from voiceconv.data.corpora import read_speaker_folders
from voiceconv.data.flite import find_flite, list_voices, render_corpus
from voiceconv.data.prompts import load_prompts
from voiceconv.errors import CorpusError, VoiceconvError

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")


def median_f0(y: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median pitch of the loud frames, from the autocorrelation peak (plain numpy)."""
    n = 2048
    frames = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), n)[:: n // 2]
    energy = (frames**2).sum(axis=1)
    loud = frames[energy > 0.1 * energy.max()] * np.hanning(n)
    spec = np.fft.rfft(loud, 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    lo, hi = int(sr / fmax), int(sr / fmin)
    lags = lo + np.argmax(ac[:, lo:hi], axis=1)
    return float(np.median(sr / lags))


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


# --------------------------------------------------------------------------- prompts


def test_shipped_prompt_list(arctic_prompts_path: Path) -> None:
    prompts = load_prompts()
    assert len(prompts) >= 170
    assert [uid for uid, _ in prompts] == [f"vc_{i:04d}" for i in range(1, len(prompts) + 1)]
    texts = [t for _, t in prompts]
    assert len({" ".join(words(t)) for t in texts}) == len(texts)  # no repeated sentence
    assert all(5 <= len(t.split()) <= 15 for t in texts)
    # none of them is an ARCTIC prompt
    arctic = {
        " ".join(words(line.split('"')[1]))
        for line in arctic_prompts_path.read_text().splitlines()
        if line.startswith("(")
    }
    assert not {" ".join(words(t)) for t in texts} & arctic


def test_festival_prompt_file(arctic_prompts_path: Path) -> None:
    prompts = load_prompts(arctic_prompts_path)
    lines = [ln for ln in arctic_prompts_path.read_text().splitlines() if ln.strip()]
    assert len(prompts) == len(lines)
    for (uid, text), line in zip(prompts, lines, strict=True):
        assert line.split()[1] == uid
        assert line.split('"')[1].strip() == text


def test_plain_list_ids_skip_comments_and_blanks(tmp_path: Path) -> None:
    p = tmp_path / "mine.txt"
    p.write_text("# my prompts\n\nFirst   sentence here.\n\n# more\nSecond one.\n")
    assert load_prompts(p) == [("vc_0001", "First sentence here."), ("vc_0002", "Second one.")]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ('( a "one" )\nnot festival\n', "line 2"),
        ('( a "one" )\n( a "two" )\n', "'a'"),
        ('( a "" )\n', "line 1"),
    ],
)
def test_bad_prompt_files(tmp_path: Path, content: str, problem: str) -> None:
    p = tmp_path / "bad.data"
    p.write_text(content)
    with pytest.raises(CorpusError) as err:
        load_prompts(p)
    assert str(p) in str(err.value) and problem in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError) as err:
        load_prompts(tmp_path / "none.txt")
    assert str(tmp_path / "none.txt") in str(err.value)


# --------------------------------------------------------------------------- flite


def test_missing_flite_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VoiceconvError, match="flite not found: apt-get install flite"):
        find_flite()
    with pytest.raises(VoiceconvError, match="apt-get install flite"):
        render_corpus([("a", "Hello there.")], ["slt"], out_dir=tmp_path / "out", progress=False)


PROMPTS = [
    ("p1", "The red kite circled over the quiet farm."),
    ("p2", "Seven bright lamps lit the narrow street."),
    ("p3", "Would anyone like another cup of tea?"),
]


@needs_flite
def test_render_two_voices(tmp_path: Path) -> None:
    out = tmp_path / "flite"
    sr = 22050
    result = render_corpus(PROMPTS, ("rms", "slt"), out_dir=out, sample_rate=sr, progress=False)
    assert list(result) == ["rms", "slt"]
    pitch = {}
    for voice, paths in result.items():
        assert paths == [out / voice / f"{uid}.wav" for uid, _ in PROMPTS]
        waves = []
        for p in paths:
            info = sf.info(p)
            assert (info.samplerate, info.channels) == (sr, 1)
            y, _ = sf.read(p, dtype="float32")
            assert 0.5 < y.size / sr < 10.0 and np.abs(y).max() > 0.05
            waves.append(y)
        assert len({w.size for w in waves}) == len(waves)  # different sentences, different audio
        pitch[voice] = median_f0(np.concatenate(waves), sr)
    # rms is a male voice, slt a female one: clearly different pitch
    assert pitch["slt"] > 1.3 * pitch["rms"]

    corpus = read_speaker_folders(out)
    assert [u.text for u in corpus["slt"]] == [t for _, t in PROMPTS]
    assert [u.utt_id for u in corpus["rms"]] == [uid for uid, _ in PROMPTS]


@needs_flite
def test_render_resumes_and_rerenders_changed_text(tmp_path: Path) -> None:
    out = tmp_path / "flite"
    render_corpus(PROMPTS, ["slt"], out_dir=out, sample_rate=16000, workers=1, progress=False)
    files = sorted((out / "slt").glob("*.wav"))
    before = {p.name: p.stat().st_mtime_ns for p in files}

    render_corpus(PROMPTS, ["slt"], out_dir=out, sample_rate=16000, workers=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in files} == before

    (out / "slt" / "p2.wav").unlink()
    (out / "slt" / "p3.wav").write_bytes(b"garbage")
    changed = [PROMPTS[0], PROMPTS[1], ("p3", "A different sentence entirely, spoken now.")]
    render_corpus(changed, ["slt"], out_dir=out, sample_rate=16000, workers=1, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in files}
    assert after["p1.wav"] == before["p1.wav"]
    assert after["p2.wav"] != before["p2.wav"] and after["p3.wav"] != before["p3.wav"]
    assert sf.info(out / "slt" / "p3.wav").samplerate == 16000
    text = (out / "transcripts.tsv").read_text()
    assert "A different sentence entirely" in text and PROMPTS[2][1] not in text

    # a new text for an existing, good file: rendered again
    mtime = (out / "slt" / "p1.wav").stat().st_mtime_ns
    render_corpus(
        [("p1", "Now it says something else.")],
        ["slt"],
        out_dir=out,
        sample_rate=16000,
        progress=False,
    )
    assert (out / "slt" / "p1.wav").stat().st_mtime_ns != mtime


@needs_flite
def test_unknown_voice_and_limit(tmp_path: Path) -> None:
    assert {"rms", "slt"} <= set(list_voices())
    with pytest.raises(VoiceconvError) as err:
        render_corpus(PROMPTS, ["rms", "nobody"], out_dir=tmp_path / "x", progress=False)
    assert "nobody" in str(err.value) and "slt" in str(err.value)
    assert not (tmp_path / "x").exists()

    assert (
        render_main(
            ["--voices", "kal16", "--out", str(tmp_path / "y"), "--limit", "1", "--no-progress"]
        )
        == 0
    )
    assert [p.name for p in (tmp_path / "y" / "kal16").iterdir()] == ["vc_0001.wav"]
    assert render_main(["--voices", "nobody", "--out", str(tmp_path / "z")]) == 1
