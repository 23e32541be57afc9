"""Checkpoint files: atomic writes, rotation, weights_only loading, clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from voiceconv.errors import CheckpointError
from voiceconv.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointManager,
    load_checkpoint,
    save_checkpoint,
)


def _state(step: int) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": {"class": "voiceconv.x.Y", "hparams": {}, "state_dict": {"w": torch.full((3,), float(step))}},
        "mel_config": {"n_mels": 80},
        "stats": {"A": {"mean": [0.0]}, "B": {"mean": [1.0]}},
        "speakers": {"A": "a", "B": "b"},
    }


def test_manager_writes_step_and_last_and_keeps_newest(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        mgr.save(_state(step), step)
    names = sorted(p.name for p in mgr.directory.iterdir())
    assert names == ["last.ckpt", "step_0000020.ckpt", "step_0000030.ckpt"]
    last = mgr.load_last()
    assert last["step"] == 30
    assert torch.equal(last["model"]["state_dict"]["w"], torch.full((3,), 30.0))
    assert load_checkpoint(mgr.step_path(20))["step"] == 20


def test_no_checkpoint_yet_gives_none(tmp_path):
    assert CheckpointManager(tmp_path).load_last() is None


def test_interrupted_write_leaves_no_partial_file_and_keeps_last(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep_last=3)
    mgr.save(_state(1), 1)
    good = mgr.last_path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:  # half a file, then the process "dies"
            fh.write(b"PK\x03\x04 partial checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        mgr.save(_state(2), 2)
    monkeypatch.setattr(torch, "save", real_save)

    names = sorted(p.name for p in mgr.directory.iterdir())
    assert names == ["last.ckpt", "step_0000001.ckpt"]  # no temp file, no step 2
    assert mgr.last_path.read_bytes() == good
    assert load_checkpoint(mgr.last_path)["step"] == 1


def test_missing_file_is_checkpoint_error(tmp_path):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "no such" in str(info.value)


def test_truncated_file_is_checkpoint_error(tmp_path):
    path = save_checkpoint(_state(5), tmp_path / "c.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:") and "cannot read" in msg and "\n" not in msg


def test_not_a_training_checkpoint(tmp_path):
    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a voiceconv training checkpoint"):
        load_checkpoint(path)
    state = _state(1)
    del state["stats"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing.*stats"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    """weights_only loading: a checkpoint cannot make the loader run code."""
    path = tmp_path / "evil.ckpt"
    state = _state(1)
    state["payload"] = _Evil()
    torch.save(state, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)
