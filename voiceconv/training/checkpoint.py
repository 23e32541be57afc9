"""Training checkpoints: atomic writes, rotation, and safe (``weights_only``) loading.

A run folder keeps its checkpoints in ``<run_dir>/checkpoints/``::

    step_0001000.ckpt   step_0002000.ckpt   ...   last.ckpt

Every file is complete or absent: it is written to a temporary sibling and renamed
(:func:`voiceconv.utils.atomic.atomic_path`), so a crash or a kill mid-write leaves
the previous ``last.ckpt`` intact. Only the newest ``keep_last`` step files are kept;
``last.ckpt`` is a separate copy of the newest one.

A training checkpoint (written by :class:`voiceconv.training.vc_trainer.VCTrainer`) is a
dict of tensors and plain values only, so it loads with ``weights_only=True``:

==================  =============================================================
key                 value
==================  =============================================================
``format``          :data:`CHECKPOINT_FORMAT`
``step``            optimizer steps completed
``model``           :func:`voiceconv.models.base.model_payload` (class, hparams, state_dict)
``optimizers``      ``{"generator": state_dict, "discriminator": state_dict}``
``schedulers``      ``{"generator": state_dict, "discriminator": state_dict}``
``scaler``          ``GradScaler.state_dict()`` or ``None``
``rng``             one :func:`~voiceconv.training.seeding.capture_rng_state` per rank
``sampler``         the crop sampler's ``state_dict()``
``world_size``      number of processes that trained it
``config``          the resolved run configuration (plain dict)
``mel_config``      :meth:`voiceconv.audio.mel.MelConfig.to_dict`
``stats``           ``{"A": SpeakerStats.to_dict(), "B": ...}``
``speakers``        ``{"A": name, "B": name}``
==================  =============================================================

Conversion code needs only :func:`load_checkpoint` and the ``model``, ``mel_config``,
``stats`` and ``speakers`` entries.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from voiceconv.errors import CheckpointError
from voiceconv.utils.atomic import atomic_path

CHECKPOINT_FORMAT = "voiceconv.vc_train.v1"
REQUIRED_KEYS = ("format", "step", "model", "mel_config", "stats", "speakers")
_STEP_FILE = re.compile(r"^step_(\d+)\.ckpt$")


def _fsync(path: Path) -> None:
    """Flush ``path`` to disk, so the rename that follows never publishes an empty file."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        _fsync(tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    format_tag: str = CHECKPOINT_FORMAT,
    required: Sequence[str] = REQUIRED_KEYS,
    what: str = "training checkpoint",
) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its layout.

    Raises :class:`~voiceconv.errors.CheckpointError` naming ``path`` when the file is
    missing, unreadable/corrupt/truncated, or lacks the ``format_tag`` / ``required``
    keys of a voiceconv ``what`` (defaults: the VC training checkpoint; the vocoder
    trainer passes its own). Rebuild a VC model with
    ``build_from_description(ckpt["model"])`` then ``load_state_dict(ckpt["model"]["state_dict"])``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a torch file, unsafe content
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            path, f"cannot read checkpoint ({type(exc).__name__}: {first_line})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != format_tag:
        raise CheckpointError(path, f"not a voiceconv {what} (wrong or missing format tag)")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(path, f"incomplete {what}, missing {missing}")
    return state


class CheckpointManager:
    """Writes ``step_XXXXXXX.ckpt`` + ``last.ckpt`` under ``run_dir/checkpoints``.

    Args:
        run_dir: the run folder (created if needed).
        keep_last: how many step files to keep (the newest); ``last.ckpt`` is extra.
    """

    def __init__(self, run_dir: str | os.PathLike[str], keep_last: int = 3) -> None:
        if keep_last < 1:
            raise CheckpointError(Path(run_dir), f"keep_last must be >= 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = int(keep_last)

    @property
    def directory(self) -> Path:
        """``run_dir/checkpoints``."""
        return self.run_dir / "checkpoints"

    @property
    def last_path(self) -> Path:
        """``run_dir/checkpoints/last.ckpt`` (may not exist yet)."""
        return self.directory / "last.ckpt"

    def step_path(self, step: int) -> Path:
        """Path of the checkpoint after ``step`` optimizer steps."""
        return self.directory / f"step_{step:07d}.ckpt"

    def step_files(self) -> list[Path]:
        """Existing step files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _STEP_FILE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write the step file and ``last.ckpt`` atomically, then drop old step files."""
        step_file = save_checkpoint(state, self.step_path(step))
        with atomic_path(self.last_path) as tmp:
            shutil.copyfile(step_file, tmp)
            _fsync(tmp)
        self._prune()
        return step_file

    def load_last(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The state in ``last.ckpt``, or ``None`` when the run has no checkpoint yet."""
        if not self.last_path.exists():
            return None
        return load_checkpoint(self.last_path, map_location=map_location)

    def _prune(self) -> None:
        files = self.step_files()
        for old in files[: max(0, len(files) - self.keep_last)]:
            old.unlink(missing_ok=True)
