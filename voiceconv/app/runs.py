"""What the web app may see: trained runs and vocoders under ``--runs``, and the
folder check that keeps every server path inside the folders it was given.

A *run* is any folder under the runs folder holding ``checkpoints/last.ckpt``
(``voiceconv-train``'s layout); its name is its path relative to the runs folder
(``demo/train_run``). Checkpoints are opened with ``mmap`` and ``weights_only``, so
listing costs a few milliseconds per run, and listings are cached by file time.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import CheckpointError, ConfigError
from voiceconv.training.checkpoint import CHECKPOINT_FORMAT

#: folders never searched for runs (caches, logs, the app's own work folder)
SKIP_DIRS = {"cache", "tb", "checkpoints", "stats", "data", "eval", "converted", "plots"}
MAX_DEPTH = 4


class OutsideAllowedFolders(ConfigError):
    """A server path outside the folders the app was given."""


def resolve_inside(path: str | os.PathLike[str], roots: Iterable[Path], what: str = "path") -> Path:
    """``path`` resolved (links followed); raises unless it lies inside one of ``roots``."""
    text = str(path).strip()
    if not text:
        raise ConfigError(f"{what}: empty")
    resolved = Path(text).expanduser().resolve()
    roots = [Path(r).resolve() for r in roots]
    if any(resolved == r or resolved.is_relative_to(r) for r in roots):
        return resolved
    allowed = ", ".join(str(r) for r in roots)
    raise OutsideAllowedFolders(f"{text}: {what} is outside the folders this app may use ({allowed})")


@dataclass(frozen=True)
class RunEntry:
    """One trained VC run, as the app lists it."""

    name: str  # path relative to the runs folder
    path: Path  # the run folder
    checkpoint: Path  # checkpoints/last.ckpt
    step: int
    max_steps: int | None  # the configured trainer.max_steps (None if unknown)
    speakers: dict[str, str]
    model: str
    mel_config: MelConfig
    modified: float  # last.ckpt's mtime
    scores: dict[str, float] = field(default_factory=dict)  # held-out report means, if any
    report: Path | None = None

    def label(self, direction: str) -> str:
        """``"rms -> slt"`` for ``"a2b"``."""
        a, b = self.speakers.get("A", "A"), self.speakers.get("B", "B")
        return f"{a} -> {b}" if direction == "a2b" else f"{b} -> {a}"

    def row(self) -> list[Any]:
        """The runs table's row: run, speakers, model, steps, date, held-out scores."""
        when = datetime.datetime.fromtimestamp(self.modified).strftime("%Y-%m-%d %H:%M")
        steps = f"{self.step}" + (f" / {self.max_steps}" if self.max_steps and self.max_steps != self.step else "")
        score = ", ".join(f"{k} {v:.3g}" for k, v in self.scores.items()) or "-"
        return [self.name, f"A {self.speakers.get('A')} / B {self.speakers.get('B')}", self.model, steps, when, score]


@dataclass(frozen=True)
class VocoderEntry:
    """One trained neural vocoder under the runs folder."""

    name: str
    checkpoint: Path
    step: int
    mel_config: MelConfig | None


ROW_HEADERS = ["run", "speakers", "model", "steps", "date", "held-out scores"]


def _walk(root: Path) -> Iterator[Path]:
    """Folders under ``root`` (depth <= MAX_DEPTH) that hold ``checkpoints/last.ckpt``."""
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if (folder / "checkpoints" / "last.ckpt").is_file():
            yield folder
        if depth >= MAX_DEPTH:
            continue
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            continue
        for child in reversed(children):
            if child.name.startswith(".") or child.name in SKIP_DIRS:
                continue
            stack.append((child, depth + 1))


def _peek(path: Path) -> dict[str, Any]:
    """The checkpoint's small entries, read lazily (``mmap``) and safely."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated, foreign, being written
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(path, f"cannot read checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, "not a voiceconv checkpoint")
    model = state.get("model") if isinstance(state.get("model"), dict) else {}
    return {
        "format": state.get("format"),
        "step": int(state.get("step", 0)),
        "speakers": {str(k): str(v) for k, v in dict(state.get("speakers") or {}).items()},
        "mel_config": state.get("mel_config"),
        "config": state.get("config") or {},
        "class": model.get("class", "?"),
    }


def _report_scores(run: Path) -> tuple[dict[str, float], Path | None]:
    """Means of the newest held-out report of ``run`` (``eval/*/``, ``report/`` or the
    parent's ``report/``, as ``scripts/demo.sh`` lays it out)."""
    candidates = list(run.glob("eval/*/report.json")) + [run / "report" / "report.json",
                                                          run.parent / "report" / "report.json"]
    found = [p for p in candidates if p.is_file()]
    if not found:
        return {}, None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    try:
        means = json.loads(newest.read_text()).get("means", {})
    except (OSError, ValueError):
        return {}, None
    keep = {"mcd": "MCD", "f0_rmse_cents": "F0 RMSE", "speaker_accuracy": "speaker acc."}
    return {label: float(means[k]) for k, label in keep.items() if k in means}, newest


class RunIndex:
    """Lists runs and vocoders under ``root``; cached per checkpoint file time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._cache: dict[Path, tuple[float, Any]] = {}

    def _entry(self, folder: Path) -> RunEntry | VocoderEntry | None:
        ckpt = folder / "checkpoints" / "last.ckpt"
        mtime = ckpt.stat().st_mtime
        report_mtime = max((p.stat().st_mtime for p in folder.glob("eval/*/report.json")), default=0.0)
        key = max(mtime, report_mtime)
        hit = self._cache.get(ckpt)
        if hit is not None and hit[0] == key:
            return hit[1]
        info = _peek(ckpt)
        name = folder.relative_to(self.root).as_posix() if folder != self.root else "."
        mel = MelConfig.from_dict(dict(info["mel_config"])) if info["mel_config"] else None
        entry: RunEntry | VocoderEntry | None
        if info["format"] == CHECKPOINT_FORMAT and mel is not None:
            config = info["config"]
            model = str((config.get("model") or {}).get("name") or info["class"])
            max_steps = (config.get("trainer") or {}).get("max_steps")
            scores, report = _report_scores(folder)
            entry = RunEntry(name, folder, ckpt, info["step"], int(max_steps) if max_steps else None,
                             info["speakers"], model, mel, mtime, scores, report)
        elif "vocoder" in str(info["format"]):
            entry = VocoderEntry(name, ckpt, info["step"], mel)
        else:
            entry = None
        self._cache[ckpt] = (key, entry)
        return entry

    def scan(self) -> tuple[list[RunEntry], list[VocoderEntry]]:
        """(VC runs, vocoders), each sorted by name; unreadable checkpoints are left out."""
        runs: list[RunEntry] = []
        vocoders: list[VocoderEntry] = []
        if not self.root.is_dir():
            return runs, vocoders
        for folder in _walk(self.root):
            try:
                entry = self._entry(folder)
            except (CheckpointError, ConfigError, OSError, KeyError, TypeError, ValueError):
                continue
            if isinstance(entry, RunEntry):
                runs.append(entry)
            elif isinstance(entry, VocoderEntry):
                vocoders.append(entry)
        return sorted(runs, key=lambda r: r.name), sorted(vocoders, key=lambda v: v.name)

    def runs(self) -> list[RunEntry]:
        """The VC runs."""
        return self.scan()[0]

    def get(self, name: str) -> RunEntry:
        """The run called ``name``; a ConfigError listing the known ones otherwise."""
        runs = self.runs()
        for run in runs:
            if run.name == name:
                return run
        known = ", ".join(r.name for r in runs) or "none yet"
        raise ConfigError(f"{name}: no such run under {self.root} (runs: {known})")

    def vocoders_for(self, run: RunEntry) -> list[VocoderEntry]:
        """Trained vocoders whose MelConfig equals ``run``'s (the only ones that fit)."""
        return [v for v in self.scan()[1] if v.mel_config == run.mel_config]

    def vocoder(self, name: str) -> VocoderEntry:
        """The vocoder called ``name`` (any MelConfig: conversion checks it)."""
        for voc in self.scan()[1]:
            if voc.name == name:
                return voc
        raise ConfigError(f"{name}: no such vocoder under {self.root}")
