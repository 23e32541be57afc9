"""Data-parallel training under ``torchrun``: process context, DDP wrapping, helpers.

``torchrun --nproc_per_node N ...`` starts N processes and tells each its place in
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`init_distributed` reads them, joins the process group (gloo
on CPU, NCCL on CUDA) and returns a :class:`DistContext`; without those variables it
returns a single-process context and touches nothing. There is no module-level
state: everything lives in the returned context and in ``torch.distributed`` itself.

**Why the discriminators are wrapped with their parameters still requiring grad.**
The generator step back-propagates the adversarial loss THROUGH the discriminators
(``D_b(G_ab(a))``). Outside DDP the trainer freezes them for that step
(``set_discriminators_trainable(False)``) so no D weight gradients are computed. Under
DDP this is unsafe: a DDP reducer is built for a fixed set of parameters requiring
grad and, after each backward, waits for a gradient of every one of them; toggling
``requires_grad`` after wrapping makes it hang or fail ("expected to have finished
reduction"). So under DDP the scheme is:

1. the generator step runs with every discriminator inside :meth:`DistributedDataParallel.no_sync`
   (see :func:`no_sync`), so the D weight gradients it leaves behind are local and no
   all-reduce is spent on them;
2. the trainer zeroes the discriminators' gradients (``set_to_none``) right before the
   discriminator step, discarding those leftovers;
3. the discriminator step's backward then all-reduces exactly the D gradients of the
   discriminator loss. Generators are not run in that step (it reuses detached fakes),
   so their reducers are untouched.

The gradients of the generator are all-reduced by the generator step's backward as
usual; every generator parameter takes part in every step, so
``find_unused_parameters`` stays off (cheaper) unless a model needs it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from voiceconv.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that logs, writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1


def resolve_device(device: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """``"auto"``/``None`` -> ``cuda:<local_rank>`` when CUDA is present, else CPU.

    An explicit ``"cuda"`` becomes ``cuda:<local_rank>`` so each rank of a node uses its own GPU.
    """
    if device is None or str(device) == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(
    backend: str | None = None,
    device: str | torch.device | None = None,
    timeout_s: float = 1800.0,
) -> DistContext:
    """Join the torchrun process group if this process was started by torchrun.

    Args:
        backend: ``None`` picks NCCL for CUDA devices and gloo otherwise.
        device: ``"auto"``/``None``, ``"cpu"``, ``"cuda"`` (-> ``cuda:LOCAL_RANK``) or a device.
        timeout_s: collective timeout (preprocessing on rank 0 runs behind a barrier).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(rank=0, world_size=1, local_rank=0, device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        chosen = backend or ("nccl" if dev.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout_s)}
        if chosen == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=chosen, rank=rank, world_size=world_size, **kwargs)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def wrap_ddp(module: nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> nn.Module:
    """Wrap ``module`` in DistributedDataParallel when training with several processes.

    Returns ``module`` unchanged in a single process. Parameters must already be on
    ``ctx.device``. See the module docstring for how discriminators are handled.
    """
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=ids, output_device=ids[0] if ids else None,
        find_unused_parameters=find_unused_parameters,
    )


def unwrap(module: nn.Module) -> nn.Module:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(module, DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


@contextlib.contextmanager
def no_sync(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Enter ``no_sync()`` of every DDP-wrapped module in ``modules`` (others are skipped)."""
    with contextlib.ExitStack() as stack:
        for m in modules:
            inner = m._orig_mod if hasattr(m, "_orig_mod") else m
            if isinstance(inner, DistributedDataParallel):
                stack.enter_context(inner.no_sync())
        yield


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_true(ctx: DistContext, flag: bool) -> bool:
    """True only if ``flag`` is true on every rank (a logical AND over ranks)."""
    if not ctx.distributed:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
