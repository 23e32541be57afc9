"""Corpus readers on tiny generated corpora laid out like the real ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceconv.data.corpora import (
    Utterance,
    read_cmu_arctic,
    read_corpus,
    read_speaker_folder,
    read_speaker_folders,
    read_vcc2018,
    read_vctk,
    split_parallel,
)
from voiceconv.errors import ConfigError, CorpusError

SR = 16000


def write_audio(path: Path, f0: float = 220.0, seconds: float = 0.1) -> Path:
    """A short sine tone (readers only look at names, but the files are real audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * f0 * t), SR)
    return path


def ids(utts: list[Utterance]) -> list[str]:
    return [u.utt_id for u in utts]


def assert_one_line_naming(err: pytest.ExceptionInfo[BaseException], *parts: object) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for p in parts:
        assert str(p) in msg


# --------------------------------------------------------------------------- folders


def test_speaker_folders_recursive_sorted_with_text(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_audio(root / "bob" / "x.wav")
    write_audio(root / "alice" / "b.wav")
    write_audio(root / "alice" / "a.flac")
    write_audio(root / "alice" / "sub" / "c.wav")
    write_audio(root / "alice" / ".hidden.wav")  # e.g. an unfinished temp file
    (root / "alice" / "notes.md").write_text("not audio")
    (root / "alice" / "a.txt").write_text("  Hello   there. \n")
    (root / "transcripts.tsv").write_text("utt_id\ttext\nx\tFrom the table.\n")

    corpus = read_speaker_folders(root)

    assert list(corpus) == ["alice", "bob"]
    assert ids(corpus["alice"]) == ["a", "b", "sub_c"]
    assert [u.path for u in corpus["alice"]] == [
        root / "alice" / "a.flac",
        root / "alice" / "b.wav",
        root / "alice" / "sub" / "c.wav",
    ]
    assert all(u.speaker == "alice" for u in corpus["alice"])
    assert corpus["alice"][0].text == "Hello there."
    assert corpus["alice"][1].text is None
    assert corpus["bob"][0].text == "From the table."


def test_speaker_folders_selection_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_audio(root / "alice" / "1.wav")
    write_audio(root / "bob" / "1.wav")
    assert list(read_speaker_folders(root, speakers=["bob"])) == ["bob"]

    with pytest.raises(CorpusError) as err:
        read_speaker_folders(root, speakers=["carol"])
    assert_one_line_naming(err, root, "carol", "alice")

    with pytest.raises(CorpusError) as err:
        read_speaker_folders(tmp_path / "missing")
    assert_one_line_naming(err, tmp_path / "missing", "not found")

    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    with pytest.raises(CorpusError) as err:
        read_speaker_folders(empty_root)
    assert_one_line_naming(err, empty_root, "no speakers")

    (root / "dave").mkdir()
    (root / "dave" / "readme.txt").write_text("no audio here")
    with pytest.raises(CorpusError) as err:
        read_speaker_folders(root)
    assert_one_line_naming(err, root / "dave", "no audio")


def test_repeated_utterance_id_is_refused(tmp_path: Path) -> None:
    write_audio(tmp_path / "spk" / "u1.wav")
    write_audio(tmp_path / "spk" / "u1.flac")
    with pytest.raises(CorpusError) as err:
        read_speaker_folder(tmp_path / "spk")
    assert_one_line_naming(err, "u1")


def test_single_speaker_folder(tmp_path: Path) -> None:
    write_audio(tmp_path / "me" / "take2.ogg")
    write_audio(tmp_path / "me" / "take1.wav")
    assert ids(read_speaker_folder(tmp_path / "me")["me"]) == ["take1", "take2"]
    assert list(read_speaker_folder(tmp_path / "me", speaker="target")) == ["target"]
    (tmp_path / "void").mkdir()
    with pytest.raises(CorpusError):
        read_speaker_folder(tmp_path / "void")


# --------------------------------------------------------------------------- VCC2018


@pytest.fixture()
def vcc_root(tmp_path: Path) -> Path:
    root = tmp_path / "vcc"
    for spk in ("VCC2SF1", "VCC2TM1"):
        for n in (10002, 10001):
            write_audio(root / "vcc2018_training" / spk / f"{n}.wav")
    write_audio(root / "vcc2018_evaluation" / "VCC2SF1" / "30001.wav")
    return root


def test_vcc2018_from_parent_and_split_folder(vcc_root: Path) -> None:
    train = read_vcc2018(vcc_root)
    assert list(train) == ["VCC2SF1", "VCC2TM1"]
    assert ids(train["VCC2TM1"]) == ["10001", "10002"]
    assert train["VCC2SF1"][0].path == vcc_root / "vcc2018_training" / "VCC2SF1" / "10001.wav"
    assert read_vcc2018(vcc_root / "vcc2018_training") == train

    ev = read_vcc2018(vcc_root, split="eval")
    assert list(ev) == ["VCC2SF1"] and ids(ev["VCC2SF1"]) == ["30001"]
    assert read_vcc2018(vcc_root / "vcc2018_evaluation", split="eval") == ev

    assert list(read_corpus("vcc2018", vcc_root, speakers=["VCC2TM1"])) == ["VCC2TM1"]


def test_vcc2018_errors(vcc_root: Path) -> None:
    with pytest.raises(CorpusError) as err:
        read_vcc2018(vcc_root / "vcc2018_training", split="eval")
    assert_one_line_naming(err, vcc_root / "vcc2018_training", "vcc2018_evaluation")
    with pytest.raises(ConfigError):
        read_vcc2018(vcc_root, split="test")
    with pytest.raises(CorpusError) as err:
        read_vcc2018(vcc_root, speakers=["VCC2SM9"])
    assert_one_line_naming(err, "VCC2SM9")


# --------------------------------------------------------------------------- CMU ARCTIC


@pytest.fixture()
def arctic_root(tmp_path: Path) -> Path:
    root = tmp_path / "arctic"
    texts = {"arctic_a0001": 'Say "yes" to the boat.', "arctic_a0002": "A second line here."}
    for spk in ("slt", "bdl"):
        base = root / f"cmu_us_{spk}_arctic"
        for uid in texts:
            write_audio(base / "wav" / f"{uid}.wav")
        (base / "etc").mkdir(parents=True)
        lines = [f'( {uid} "{t.replace(chr(34), chr(92) + chr(34))}" )' for uid, t in texts.items()]
        (base / "etc" / "txt.done.data").write_text("\n".join(lines) + "\n")
    return root


def test_cmu_arctic(arctic_root: Path) -> None:
    corpus = read_cmu_arctic(arctic_root)
    assert list(corpus) == ["bdl", "slt"]
    slt = corpus["slt"]
    assert ids(slt) == ["arctic_a0001", "arctic_a0002"]
    assert slt[0].text == 'Say "yes" to the boat.'
    assert slt[1].path == arctic_root / "cmu_us_slt_arctic" / "wav" / "arctic_a0002.wav"

    one = read_cmu_arctic(arctic_root / "cmu_us_bdl_arctic")
    assert list(one) == ["bdl"] and one["bdl"] == corpus["bdl"]
    assert read_corpus("cmu_arctic", arctic_root, speakers=["slt"]) == {"slt": slt}
    with pytest.raises(CorpusError) as err:
        read_cmu_arctic(arctic_root, speakers=["rms"])
    assert_one_line_naming(err, "rms", "bdl", "slt")


def test_cmu_arctic_without_transcripts_and_bad_prompt_line(arctic_root: Path) -> None:
    (arctic_root / "cmu_us_bdl_arctic" / "etc" / "txt.done.data").unlink()
    assert all(u.text is None for u in read_cmu_arctic(arctic_root)["bdl"])
    bad = arctic_root / "cmu_us_slt_arctic" / "etc" / "txt.done.data"
    bad.write_text('( arctic_a0001 "fine" )\nthis is not festival\n')
    with pytest.raises(CorpusError) as err:
        read_cmu_arctic(arctic_root)
    assert_one_line_naming(err, bad, "line 2")


# --------------------------------------------------------------------------- VCTK


def test_vctk_080_layout(tmp_path: Path) -> None:
    base = tmp_path / "VCTK-Corpus"
    for spk in ("p225", "p315"):
        for n in ("002", "001"):
            write_audio(base / "wav48" / spk / f"{spk}_{n}.wav")
    (base / "txt" / "p225").mkdir(parents=True)
    (base / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")

    corpus = read_vctk(tmp_path)  # the parent of VCTK-Corpus
    assert list(corpus) == ["p225", "p315"]
    assert ids(corpus["p225"]) == ["p225_001", "p225_002"]
    assert corpus["p225"][0].text == "Please call Stella."
    assert corpus["p225"][1].text is None
    assert all(u.text is None for u in corpus["p315"])  # VCTK has no p315 transcripts
    assert read_vctk(base) == corpus


def test_vctk_092_layout_picks_one_mic(tmp_path: Path) -> None:
    base = tmp_path / "VCTK-Corpus-0.92"
    for mic in ("mic1", "mic2"):
        for n in ("001", "003"):
            write_audio(base / "wav48_silence_trimmed" / "p226" / f"p226_{n}_{mic}.flac")
    (base / "txt" / "p226").mkdir(parents=True)
    (base / "txt" / "p226" / "p226_003.txt").write_text("Six spoons.")

    mic1 = read_corpus("vctk", tmp_path)["p226"]
    assert ids(mic1) == ["p226_001", "p226_003"]
    assert [u.path.name for u in mic1] == ["p226_001_mic1.flac", "p226_003_mic1.flac"]
    assert mic1[1].text == "Six spoons."
    mic2 = read_vctk(base, mic="mic2")["p226"]
    assert [u.path.name for u in mic2] == ["p226_001_mic2.flac", "p226_003_mic2.flac"]

    with pytest.raises(CorpusError) as err:
        read_vctk(tmp_path / "VCTK-Corpus-0.92" / "txt")
    assert_one_line_naming(err, "wav48")


def test_read_corpus_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        read_corpus("timit", tmp_path)
    assert_one_line_naming(err, "timit", "folders", "vctk")


# --------------------------------------------------------------------------- split_parallel


def parallel_corpus(n: int, extra_a: int = 0) -> dict[str, list[Utterance]]:
    shared = [f"u{i:03d}" for i in range(n)]
    only_a = [f"x{i:03d}" for i in range(extra_a)]
    return {
        "A": [Utterance("A", u, Path(f"A/{u}.wav")) for u in shared + only_a],
        "B": [Utterance("B", u, Path(f"B/{u}.wav")) for u in shared],
    }


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 60),
    n_eval=st.integers(0, 10),
    extra=st.integers(0, 3),
    seed=st.integers(0, 99),
)
def test_split_parallel_properties(n: int, n_eval: int, extra: int, seed: int) -> None:
    if n - n_eval < 2:
        n_eval = 0
    corpus = parallel_corpus(n, extra)
    split = split_parallel(corpus, "A", "B", n_eval=n_eval, seed=seed)
    ta, tb = ids(split.train["A"]), ids(split.train["B"])
    ea, eb = ids(split.eval["A"]), ids(split.eval["B"])
    shared = {u.utt_id for u in corpus["B"]}
    assert ea == eb and len(ea) == n_eval  # parallel held-out set
    assert not set(ta) & set(tb)  # non-parallel training halves
    assert not (set(ta) | set(tb)) & set(ea)
    assert set(ta) | set(tb) | set(ea) == shared  # ids of one speaker only are left out
    assert abs(len(ta) - len(tb)) <= 1 and len(ta) >= len(tb)
    assert ta == sorted(ta) and tb == sorted(tb)
    assert all(u.speaker == "A" for u in split.train["A"] + split.eval["A"])
    assert all(u.speaker == "B" for u in split.train["B"] + split.eval["B"])
    assert split_parallel(corpus, "A", "B", n_eval=n_eval, seed=seed) == split


def test_split_parallel_defaults_seed_and_errors() -> None:
    corpus = parallel_corpus(40)
    split = split_parallel(corpus, "A", "B")  # eval_fraction 0.1
    assert len(split.eval["A"]) == 4
    other = split_parallel(corpus, "A", "B", seed=1)
    assert ids(other.train["A"]) != ids(split.train["A"])
    with pytest.raises(ConfigError):
        split_parallel(corpus, "A", "A")
    with pytest.raises(ConfigError):
        split_parallel(corpus, "A", "C")
    with pytest.raises(ConfigError):
        split_parallel(parallel_corpus(3), "A", "B", n_eval=2)
