"""What the machine can do: CPU name and instruction-set flags, usable cores, native bf16.

Machines of the same kind differ: bf16 autocast is about 1.5x faster than fp32 on a CPU
with AVX-512 BF16 / AMX, and about 7x *slower* on one with only AVX2 (emulated). So
``precision: auto`` asks here instead of assuming a CPU.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

#: CPU flags (Linux ``/proc/cpuinfo``) meaning bf16 matrix arithmetic in hardware
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16", "sve_bf16"})
#: flags worth naming when describing a CPU
_NAMED_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
                ("avx2", "AVX2"), ("asimd", "NEON"), ("sve", "SVE"))


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """``(model name, flags)`` from the text of ``/proc/cpuinfo`` (x86 ``flags`` or Arm ``Features``)."""
    name, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return name, flags


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            name, flags = parse_cpuinfo(fh.read())
    except OSError:
        name, flags = "", frozenset()
    return name or platform.processor() or platform.machine() or "unknown CPU", flags


def cpu_name() -> str:
    """The CPU's model name."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (empty where the OS does not list them)."""
    return _cpuinfo()[1]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 products in hardware (AVX-512 BF16, AMX, Arm BF16)."""
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_FLAGS)


def describe_cpu() -> str:
    """``"Intel Xeon (AMX, AVX-512 BF16, AVX-512, AVX2), 2 cores"`` style summary."""
    flags = cpu_flags()
    named = [label for flag, label in _NAMED_FLAGS if flag in flags]
    isa = f" ({', '.join(named)})" if named else ""
    return f"{cpu_name()}{isa}, {available_cores()} cores"


def machine_signature() -> dict[str, Any]:
    """What a per-machine measurement is valid for (keys of the autotune cache)."""
    import torch

    flags = cpu_flags()
    return {
        "cpu": cpu_name(),
        "isa": sorted(flag for flag, _ in _NAMED_FLAGS if flag in flags),
        "cores": available_cores(),
        "torch": torch.__version__,
    }


def resolve_precision(requested: str, device: Any) -> str:
    """``"auto"`` -> ``"bf16"`` where the device computes bf16 natively, else ``"fp32"``.

    CUDA: bf16 when ``torch.cuda.is_bf16_supported()``. CPU: bf16 only with native bf16
    flags (:func:`has_native_bf16`). Any other value is returned as it is.
    """
    if requested != "auto":
        return requested
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if dev.type == "cpu" and has_native_bf16() else "fp32"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block and restored afterwards
    (timing a setting, or this process working beside worker processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = [
    "NATIVE_BF16_FLAGS", "available_cores", "cpu_flags", "cpu_name", "describe_cpu",
    "has_native_bf16", "machine_signature", "parse_cpuinfo", "resolve_precision", "torch_threads",
]
