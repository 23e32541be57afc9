"""Seeding and random-number-generator state capture for exactly resumable training.

An interrupted run continues the same trajectory only if every random stream it
draws from is put back where it was: Python's ``random``, NumPy's legacy global
generator, torch's CPU generator and, where present, every CUDA generator. The
checkpoint is read with ``torch.load(..., weights_only=True)``, which accepts
tensors and plain Python values only, so :func:`capture_rng_state` stores NumPy's
and Python's Mersenne-Twister states as int64 tensors rather than pickled objects.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) for process ``rank``.

    Each distributed rank gets its own stream (``seed + rank``) so that random
    choices inside the model (e.g. MaskCycleGAN-VC's temporal masks) differ between
    ranks instead of repeating the same masks ``world_size`` times. Returns the seed used.
    """
    effective = int(seed) + int(rank)
    random.seed(effective)
    np.random.seed(effective % 2**32)
    torch.manual_seed(effective)  # also seeds every CUDA device
    return effective


def capture_rng_state() -> dict[str, Any]:
    """The state of every global generator, as tensors and plain values only."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`.

    CUDA states are restored only when this machine has as many CUDA devices as the
    one that saved them; otherwise they are skipped (a CPU-saved run resumed on a GPU
    keeps its CPU, NumPy and Python streams, which is all CPU training draws from).
    """
    py = state["python"]
    internal = tuple(int(v) for v in py["internal"].tolist())
    random.setstate((int(py["version"]), internal, py["gauss"]))
    nps = state["numpy"]
    keys = nps["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (nps["name"], keys, int(nps["pos"]), int(nps["has_gauss"]), float(nps["gauss"]))
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
