"""Corpus readers: turn a folder of recordings into ``{speaker: [Utterance, ...]}``.

Every reader returns a dict mapping each speaker name to that speaker's
utterances sorted by ``utt_id``, with speakers in sorted order. Readers only look
at file names and transcripts; they never open the audio (bad audio is found and
reported later, by :func:`voiceconv.data.cache.preprocess`).

Layouts understood:

* ``folders``: ``root/<speaker>/**/<name>.{wav,flac,ogg,mp3}``, one sub-folder per
  speaker; an optional ``<name>.txt`` beside a file, or a ``root/transcripts.tsv``
  (``utt_id<TAB>text``, as written by :func:`voiceconv.data.flite.render_corpus`),
  supplies the text;
* ``vcc2018``: ``vcc2018_training/VCC2SF1/10001.wav`` and
  ``vcc2018_evaluation/VCC2SF1/30001.wav`` (Voice Conversion Challenge 2018);
* ``cmu_arctic``: ``cmu_us_slt_arctic/wav/arctic_a0001.wav`` with the Festival
  prompt file ``cmu_us_slt_arctic/etc/txt.done.data``;
* ``vctk``: ``VCTK-Corpus/wav48/p225/p225_001.wav`` or
  ``VCTK-Corpus-0.92/wav48_silence_trimmed/p225/p225_001_mic1.flac`` with
  ``txt/p225/p225_001.txt``.

:func:`split_parallel` turns a parallel corpus into the non-parallel training
split the CycleGAN-VC papers use.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceconv.data.prompts import parse_festival_line
from voiceconv.errors import ConfigError, CorpusError

#: File extensions (lower case) treated as audio by the readers.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")

#: Name of the optional transcript table at the root of a ``folders`` corpus.
TRANSCRIPTS_TSV = "transcripts.tsv"


@dataclass(frozen=True)
class Utterance:
    """One recording of one speaker.

    ``utt_id`` is unique within the speaker and safe as a file name (it names the
    cached feature file); for a parallel corpus the same sentence has the same
    ``utt_id`` for every speaker.
    """

    speaker: str
    utt_id: str
    path: Path
    text: str | None = None


# --------------------------------------------------------------------------- helpers


def check_name(name: str, what: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` can be used as one file-name part.

    Speaker names and utterance ids become folder and file names in the feature
    cache, so they may not be empty, contain a path separator, or start with a dot.
    """
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"{what} {name!r} cannot be used as a file name")


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursive), skipping hidden files and folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if _is_audio(p) and p.is_file():
                found.append(p)
    return sorted(found)


def _require_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise CorpusError(path, f"{what} not found")
    if not path.is_dir():
        raise CorpusError(path, f"{what} is not a folder")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _select(found: dict[str, Any], speakers: Sequence[str] | None, where: Path) -> list[str]:
    """The speakers to read: all found (sorted) or the requested ones, all present."""
    if not found:
        raise CorpusError(where, "no speakers found")
    if speakers is None:
        return sorted(found)
    wanted = list(dict.fromkeys(speakers))
    if not wanted:
        raise CorpusError(where, "empty speaker list requested")
    missing = [s for s in wanted if s not in found]
    if missing:
        raise CorpusError(
            where,
            f"speaker(s) {', '.join(missing)} not found; available: {', '.join(sorted(found))}",
        )
    return sorted(wanted)


def _finish(
    speaker: str,
    items: Iterable[tuple[str, Path, str | None]],
    folder: Path,
) -> list[Utterance]:
    """Build sorted :class:`Utterance` objects, refusing empty speakers and repeated ids."""
    check_name(speaker, "speaker name")
    by_id: dict[str, Utterance] = {}
    for utt_id, path, text in items:
        check_name(utt_id, "utterance id")
        if utt_id in by_id:
            raise CorpusError(
                folder,
                f"utterance id {utt_id!r} given by both {by_id[utt_id].path.name} and {path.name}",
            )
        by_id[utt_id] = Utterance(speaker=speaker, utt_id=utt_id, path=path, text=text)
    if not by_id:
        raise CorpusError(
            folder, f"speaker {speaker!r} has no audio ({' '.join(AUDIO_EXTENSIONS)})"
        )
    return [by_id[k] for k in sorted(by_id)]


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    except OSError as err:
        raise CorpusError(path, f"cannot read transcript ({err})") from None
    return text or None


def read_transcripts(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``transcripts.tsv`` (``utt_id<TAB>text`` lines, optional header line
    ``utt_id<TAB>text``) into ``{utt_id: text}``; a missing file gives ``{}``."""
    path = Path(path)
    table: dict[str, str] = {}
    if not path.is_file():
        return table
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(path, f"cannot read transcripts ({err.__class__.__name__})") from None
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise CorpusError(path, f"line {n}: expected 'utt_id<TAB>text'")
        if n == 1 and parts == ["utt_id", "text"]:
            continue
        table[parts[0].strip()] = " ".join(parts[1].split())
    return table


# --------------------------------------------------------------------------- folders


def _folder_items(folder: Path, table: dict[str, str]) -> list[tuple[str, Path, str | None]]:
    items = []
    for p in _audio_files(folder):
        rel = p.relative_to(folder).with_suffix("")
        utt_id = "_".join(rel.parts)
        text = _read_text(p.with_suffix(".txt"))
        if text is None:
            text = table.get(utt_id)
        items.append((utt_id, p, text))
    return items


def read_speaker_folder(
    path: str | os.PathLike[str], speaker: str | None = None
) -> dict[str, list[Utterance]]:
    """Read one folder of one speaker's audio (recursive) as ``{speaker: [...]}``.

    ``speaker`` defaults to the folder's name. The id of a file is its path below
    the folder without the extension, with sub-folder names joined by ``_``
    (``book1/007.wav`` -> ``book1_007``). Text comes from a ``.txt`` file with the
    same stem beside the audio, or from a ``transcripts.tsv`` in the parent folder.
    """
    folder = Path(path)
    _require_dir(folder, "speaker folder")
    name = speaker if speaker is not None else folder.resolve().name
    table = read_transcripts(folder.parent / TRANSCRIPTS_TSV)
    return {name: _finish(name, _folder_items(folder, table), folder)}


def read_speaker_folders(
    root: str | os.PathLike[str], speakers: Sequence[str] | None = None
) -> dict[str, list[Utterance]]:
    """Read ``root/<speaker>/...``: every (non-hidden) sub-folder is one speaker.

    ``speakers`` restricts the result to those names (all must be present). A
    speaker folder without audio is an error rather than silently dropped, so a
    mistyped layout is noticed before training.
    """
    root = Path(root)
    _require_dir(root, "corpus root")
    found = {p.name: p for p in _subdirs(root)}
    table = read_transcripts(root / TRANSCRIPTS_TSV)
    return {
        s: _finish(s, _folder_items(found[s], table), found[s])
        for s in _select(found, speakers, root)
    }


# --------------------------------------------------------------------------- VCC2018

_VCC_SPLITS = {"train": "vcc2018_training", "eval": "vcc2018_evaluation"}
_VCC_SPEAKER = re.compile(r"^VCC2[A-Z]{2}\d+$")


def read_vcc2018(
    root: str | os.PathLike[str],
    split: str = "train",
    speakers: Sequence[str] | None = None,
) -> dict[str, list[Utterance]]:
    """Read the Voice Conversion Challenge 2018 training or evaluation set.

    ``root`` may be the folder holding ``vcc2018_training`` / ``vcc2018_evaluation``
    or one of those split folders itself (then it is read whatever ``split`` says
    only if its name matches, or if it has no split name at all but holds
    ``VCC2*`` speaker folders). Speakers are the ``VCC2SF1``-style sub-folders;
    transcripts are not part of the release, so ``text`` is ``None``.
    """
    if split not in _VCC_SPLITS:
        raise ConfigError(f"vcc2018 split must be one of {sorted(_VCC_SPLITS)}, not {split!r}")
    root = Path(root)
    _require_dir(root, "VCC2018 root")
    wanted = _VCC_SPLITS[split]
    if (root / wanted).is_dir():
        folder = root / wanted
    elif root.name == wanted or (
        root.name not in _VCC_SPLITS.values()
        and any(_VCC_SPEAKER.match(p.name) for p in _subdirs(root))
    ):
        folder = root
    else:
        raise CorpusError(root, f"no {wanted} folder (VCC2018 {split} split) here")
    found = {p.name: p for p in _subdirs(folder) if _VCC_SPEAKER.match(p.name)}
    return {
        s: _finish(s, [(p.stem, p, None) for p in _audio_files(found[s])], found[s])
        for s in _select(found, speakers, folder)
    }


# --------------------------------------------------------------------------- CMU ARCTIC

_ARCTIC_DIR = re.compile(r"^cmu_us_(?P<spk>[A-Za-z0-9]+)_arctic$")


def _read_festival_file(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    if not path.is_file():
        return table
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parsed = parse_festival_line(line)
        if parsed is None:
            raise CorpusError(path, f'line {n}: not a Festival prompt line ( id "text" )')
        table[parsed[0]] = parsed[1]
    return table


def read_cmu_arctic(
    root: str | os.PathLike[str], speakers: Sequence[str] | None = None
) -> dict[str, list[Utterance]]:
    """Read CMU ARCTIC voices: ``root/cmu_us_<spk>_arctic/wav/*.wav``.

    ``root`` may also be a single ``cmu_us_<spk>_arctic`` folder. Speakers are
    named by the short code (``slt``, ``bdl``, ...). Text comes from
    ``etc/txt.done.data`` (Festival prompt lines); without it ``text`` is ``None``.
    """
    root = Path(root)
    _require_dir(root, "CMU ARCTIC root")
    candidates = [root] if _ARCTIC_DIR.match(root.name) else _subdirs(root)
    found: dict[str, Path] = {}
    for d in candidates:
        m = _ARCTIC_DIR.match(d.name)
        if m is not None:
            found[m.group("spk")] = d
    out: dict[str, list[Utterance]] = {}
    for s in _select(found, speakers, root):
        wav_dir = found[s] / "wav"
        _require_dir(wav_dir, "CMU ARCTIC wav folder")
        table = _read_festival_file(found[s] / "etc" / "txt.done.data")
        items = [(p.stem, p, table.get(p.stem)) for p in _audio_files(wav_dir)]
        out[s] = _finish(s, items, wav_dir)
    return out


# --------------------------------------------------------------------------- VCTK

_VCTK_AUDIO_DIRS = ("wav48_silence_trimmed", "wav48")
_VCTK_MIC = re.compile(r"^(?P<id>.+)_(?P<mic>mic\d)$")


def _vctk_base(root: Path) -> Path:
    if any((root / d).is_dir() for d in _VCTK_AUDIO_DIRS):
        return root
    for name in ("VCTK-Corpus-0.92", "VCTK-Corpus"):
        if any((root / name / d).is_dir() for d in _VCTK_AUDIO_DIRS):
            return root / name
    raise CorpusError(
        root, f"no VCTK audio folder ({' or '.join(_VCTK_AUDIO_DIRS)}) here or in VCTK-Corpus*/"
    )


def read_vctk(
    root: str | os.PathLike[str],
    speakers: Sequence[str] | None = None,
    mic: str = "mic1",
) -> dict[str, list[Utterance]]:
    """Read VCTK (0.80 ``wav48/*.wav`` or 0.92 ``wav48_silence_trimmed/*_micN.flac``).

    ``root`` may be the corpus folder or its parent. For 0.92 only the files of
    ``mic`` are read and the ``_micN`` suffix is dropped from the id, so ids are
    ``p225_001`` in both releases. Text comes from ``txt/<spk>/<id>.txt`` (``None``
    where VCTK has none, e.g. p315).
    """
    root = Path(root)
    _require_dir(root, "VCTK root")
    base = _vctk_base(root)
    audio_root = next(base / d for d in _VCTK_AUDIO_DIRS if (base / d).is_dir())
    found = {p.name: p for p in _subdirs(audio_root)}
    out: dict[str, list[Utterance]] = {}
    for s in _select(found, speakers, audio_root):
        items = []
        for p in _audio_files(found[s]):
            m = _VCTK_MIC.match(p.stem)
            if m is not None:
                if m.group("mic") != mic:
                    continue
                utt_id = m.group("id")
            else:
                utt_id = p.stem
            items.append((utt_id, p, _read_text(base / "txt" / s / f"{utt_id}.txt")))
        out[s] = _finish(s, items, found[s])
    return out


# --------------------------------------------------------------------------- dispatch

CORPUS_READERS: dict[str, Callable[..., dict[str, list[Utterance]]]] = {
    "folders": read_speaker_folders,
    "vcc2018": read_vcc2018,
    "cmu_arctic": read_cmu_arctic,
    "vctk": read_vctk,
}


def read_corpus(kind: str, root: str | os.PathLike[str], **kw: Any) -> dict[str, list[Utterance]]:
    """Read a corpus of layout ``kind`` (one of :data:`CORPUS_READERS`) at ``root``.

    Extra keyword arguments go to the reader (``speakers=``, ``split=``, ``mic=``).
    """
    try:
        reader = CORPUS_READERS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown corpus kind {kind!r}; choose one of {', '.join(CORPUS_READERS)}"
        ) from None
    return reader(root, **kw)


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class ParallelSplit:
    """A non-parallel training split and a parallel held-out set of two speakers.

    ``train`` maps each speaker to its half of the training sentences (no sentence
    is in both halves); ``eval`` maps each speaker to the held-out sentences, in
    the same order for both speakers so that ``eval[a][i]`` and ``eval[b][i]`` say
    the same thing (for MCD / parallel evaluation).
    """

    train: dict[str, list[Utterance]]
    eval: dict[str, list[Utterance]]


def split_parallel(
    corpus: dict[str, list[Utterance]],
    a: str,
    b: str,
    *,
    n_eval: int | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
) -> ParallelSplit:
    """Split the sentences two speakers share into a non-parallel training set and a
    parallel held-out set.

    CycleGAN-VC (Kaneko & Kameoka, 2017) trained on parallel VCC2016 data "in a
    non-parallel setting" by giving each speaker a different, non-overlapping half
    of the training sentences; the evaluation sentences are kept out of training
    and used parallel. Here the shared ``utt_id`` set is shuffled with ``seed``,
    ``n_eval`` ids (default ``round(eval_fraction * shared)``, at least 1 when
    ``eval_fraction > 0``) are held out, and the rest are halved: the first half
    (the larger one when odd) for ``a``, the second for ``b``. Ids that only one
    speaker has are left out (they could not be held out parallel, and the paper's
    halves are halves of a shared set). Deterministic for a given ``seed``.
    """
    if a == b:
        raise ConfigError(f"split_parallel needs two different speakers, got {a!r} twice")
    for s in (a, b):
        if s not in corpus:
            raise ConfigError(
                f"speaker {s!r} not in corpus; available: {', '.join(sorted(corpus))}"
            )
    by_a = {u.utt_id: u for u in corpus[a]}
    by_b = {u.utt_id: u for u in corpus[b]}
    shared = sorted(set(by_a) & set(by_b))
    if n_eval is None:
        if not 0.0 <= eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), not {eval_fraction}")
        n_eval = round(eval_fraction * len(shared))
        if eval_fraction > 0:
            n_eval = max(n_eval, 1)
    if n_eval < 0:
        raise ConfigError(f"n_eval must be >= 0, not {n_eval}")
    if len(shared) - n_eval < 2:
        raise ConfigError(
            f"speakers {a!r} and {b!r} share {len(shared)} utterance ids; "
            f"need at least {n_eval + 2} for {n_eval} held out and one training sentence each"
        )
    order = list(shared)
    random.Random(seed).shuffle(order)
    eval_ids = sorted(order[:n_eval])
    rest = order[n_eval:]
    half = (len(rest) + 1) // 2
    ids_a, ids_b = sorted(rest[:half]), sorted(rest[half:])
    return ParallelSplit(
        train={a: [by_a[i] for i in ids_a], b: [by_b[i] for i in ids_b]},
        eval={a: [by_a[i] for i in eval_ids], b: [by_b[i] for i in eval_ids]},
    )
