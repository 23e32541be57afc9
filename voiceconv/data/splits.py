"""Write a :class:`~voiceconv.data.corpora.ParallelSplit` out as speaker folders.

Recipes and the demo hand the trainer two plain folders (one per speaker) and the
evaluator two parallel held-out folders; this module lays them out::

    OUT/train/<a>/*.wav   OUT/train/<b>/*.wav   (disjoint sentences)
    OUT/eval/<a>/*.wav    OUT/eval/<b>/*.wav    (the same sentences, same stems)

Files are hard links where the file system allows (no copies of a large corpus),
otherwise copies. Existing files are left alone, so the step is resumable; the
file name is ``<utt_id><suffix>`` so stems pair up across speakers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from voiceconv.data.corpora import ParallelSplit


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


def write_split(split: ParallelSplit, out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Path]]:
    """Lay ``split`` out under ``out_dir``; returns ``{"train"|"eval": {speaker: folder}}``."""
    out = Path(out_dir)
    folders: dict[str, dict[str, Path]] = {}
    for part, sets in (("train", split.train), ("eval", split.eval)):
        folders[part] = {}
        for speaker, utts in sets.items():
            folder = out / part / speaker
            folder.mkdir(parents=True, exist_ok=True)
            for u in utts:
                _link_or_copy(u.path, folder / f"{u.utt_id}{u.path.suffix.lower()}")
            folders[part][speaker] = folder
    return folders
