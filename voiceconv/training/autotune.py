"""``precision: auto`` and ``threads: auto`` for CPU training: measure, pick the fastest, cache it.

Which setting is fastest depends on the CPU (bf16 autocast is native on AVX-512 BF16 /
AMX and emulated, several times slower, on AVX2) and on how busy it is (two OpenMP
threads on two contended cores can be slower than one). So the candidates are timed
on the run's own model and crop size: a few optimiser-free generator + discriminator
steps on a copy of the model (bf16 is a candidate only where the CPU has native bf16),
the fastest wins, and the result is cached per machine and workload in
``$VOICECONV_CACHE_DIR`` (default ``~/.cache/voiceconv``) ``/autotune.json``, so later
runs start at once; the key includes how busy the machine is (load per core, rounded), so
an idle and a loaded machine each get their own answer. ``VOICECONV_AUTOTUNE=refresh``
measures again. Random number
streams are left exactly as they were, so a run's trajectory does not depend on
whether the choice came from the cache.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from voiceconv.errors import ConfigError
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.training.seeding import capture_rng_state, restore_rng_state
from voiceconv.utils.atomic import atomic_write_json
from voiceconv.utils.machine import (
    available_cores,
    describe_cpu,
    has_native_bf16,
    machine_signature,
    resolve_precision,
    torch_threads,
)

CACHE_ENV = "VOICECONV_CACHE_DIR"
REFRESH_ENV = "VOICECONV_AUTOTUNE"
Setting = tuple[str, int]  # (precision, threads)


def cache_file() -> Path:
    """``$VOICECONV_CACHE_DIR/autotune.json`` (default under ``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voiceconv")
    return Path(root) / "autotune.json"


def load_band() -> int:
    """The machine's load average per usable core, rounded (0 idle, 1 busy, 2 oversubscribed, ...):
    part of the cache key, since the fastest thread count on a busy machine is not an idle one's."""
    try:
        return round(os.getloadavg()[0] / available_cores())
    except OSError:
        return 0


def candidate_settings(precision: str, threads: Any, cores: int, native_bf16: bool) -> list[Setting]:
    """Every ``(precision, threads)`` pair worth timing for the requested values.

    ``precision="auto"``: fp32, plus bf16 where the CPU has it natively. ``threads="auto"``:
    1, half the cores and all of them. A fixed value is the only candidate for its part.
    """
    if precision == "auto":
        precs = ["fp32", "bf16"] if native_bf16 else ["fp32"]
    else:
        precs = [precision]
    if threads == "auto":
        counts = sorted({1, max(1, cores // 2), cores})
    else:
        counts = [int(threads)]
    return [(p, t) for p in precs for t in counts]


def fastest(timings: Mapping[Setting, float]) -> Setting:
    """The setting with the smallest time (ties: fewer threads, then fp32 first)."""
    if not timings:
        raise ConfigError("autotune: nothing was measured")
    return min(timings, key=lambda s: (timings[s], s[1], s[0] != "fp32"))


def time_train_step(
    model: CycleGAN, precision: str, threads: int, *, n_mels: int, frames: int, batch: int = 1,
    steps: int = 2, warmup: int = 1, device: torch.device | str = "cpu",
) -> float:
    """Median seconds of a generator + discriminator step (forward, backward) of a copy of
    ``model`` on random ``(batch, n_mels, frames)`` crops, with ``threads`` torch threads
    and ``precision`` autocast; the identity passes are off (most of a run)."""
    net = copy.deepcopy(model).to(device).train()
    a = torch.randn(batch, n_mels, frames, device=device)
    b = torch.randn(batch, n_mels, frames, device=device)
    cast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16"
            else contextlib.nullcontext())
    times = []
    with torch_threads(threads):
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            with net.discriminators_frozen(), cast:
                out = net.generator_step(a, b, step=10**9)
            out.loss.backward()
            with cast:
                d_loss, _ = net.discriminator_loss(a, b, out)
            d_loss.backward()
            net.zero_grad(set_to_none=True)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def choose(
    candidates: Sequence[Setting], measure: Callable[[Setting], float], key: Mapping[str, Any],
    path: Path | None = None,
) -> tuple[Setting, dict[Setting, float], bool]:
    """``(fastest setting, timings, from_cache)``: a cached answer for ``key`` when one
    exists for the same candidates, else each candidate measured and the answer saved."""
    path = path or cache_file()
    entry_key = json.dumps(key, sort_keys=True)
    wanted = sorted(f"{p}/{t}" for p, t in candidates)
    cache = _read_cache(path)
    hit = cache.get(entry_key)
    refresh = os.environ.get(REFRESH_ENV, "") == "refresh"
    if hit and not refresh and sorted(hit.get("timings", {})) == wanted:
        timings = {(k.split("/")[0], int(k.split("/")[1])): float(v) for k, v in hit["timings"].items()}
        return fastest(timings), timings, True
    timings = {s: measure(s) for s in candidates}
    cache[entry_key] = {
        "timings": {f"{p}/{t}": round(v, 5) for (p, t), v in timings.items()},
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with contextlib.suppress(OSError):  # a read-only home must not stop training
        atomic_write_json(path, cache)
    return fastest(timings), timings, False


def apply_machine_settings(
    model: CycleGAN, trainer_cfg: Mapping[str, Any], device: torch.device, *, n_mels: int,
    crop_frames: int, verbose: bool = True, measure: bool = True,
) -> dict[str, Any]:
    """Resolve ``trainer.precision``/``trainer.threads`` for this machine and set torch's
    thread count; returns ``{"precision": ..., "threads": ...}`` to put in the settings.

    ``threads: null`` keeps torch's default; a number is used as it is. On CUDA,
    ``precision: auto`` is bf16 where supported and nothing is timed; with
    ``measure=False`` (several processes, which must agree) the CPU flags decide the
    precision and ``auto`` threads leave torch's default.
    """
    precision = str(trainer_cfg.get("precision", "auto"))
    threads = trainer_cfg.get("threads")
    if threads is not None and threads != "auto" and (not str(threads).isdigit() or int(threads) < 1):
        raise ConfigError(f"trainer.threads must be auto, null or a positive number, got {threads!r}")
    if device.type != "cpu" or not measure:
        n = None if threads in (None, "auto") else int(threads)
        if n is not None:
            torch.set_num_threads(n)
        return {"precision": resolve_precision(precision, device), "threads": n}
    fixed_threads = torch.get_num_threads() if threads is None else threads
    candidates = candidate_settings(precision, fixed_threads, available_cores(), has_native_bf16())
    if len(candidates) == 1:
        (prec, n), timings, cached = candidates[0], {}, False
    else:
        desc = model.describe()
        key = {"machine": machine_signature(), "busy": load_band(), "model": desc["class"],
               "hparams": desc["hparams"], "batch": int(trainer_cfg.get("batch_size", 1)),
               "n_mels": n_mels, "frames": crop_frames}
        rng = capture_rng_state()
        try:
            (prec, n), timings, cached = choose(candidates, lambda s: time_train_step(
                model, s[0], s[1], n_mels=n_mels, frames=crop_frames,
                batch=int(trainer_cfg.get("batch_size", 1))), key)
        finally:
            restore_rng_state(rng)
    torch.set_num_threads(n)
    if verbose:
        told = f"precision {precision} -> {prec}, threads {threads} -> {n}"
        if timings:
            table = ", ".join(f"{p} x{t}: {v:.2f}" for (p, t), v in sorted(timings.items()))
            where = "cached" if cached else "measured"
            told += f" ({where} s/step on {describe_cpu()}: {table}; {cache_file()})"
        print(f"trainer: {told}", flush=True)
    return {"precision": prec, "threads": n}


__all__ = [
    "apply_machine_settings", "cache_file", "candidate_settings", "choose", "fastest",
    "time_train_step",
]
