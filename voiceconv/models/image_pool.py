"""History buffer of generated samples (Shrivastava et al. 2017), as used by CycleGAN.

The discriminator is shown a mix of the newest fakes and older ones, which damps
oscillation between generator and discriminator. Works for any per-example shape
(images ``(C, H, W)``, mels ``(n_mels, T)``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """Keep up to ``pool_size`` past generated examples.

    ``query(batch)``: with ``pool_size == 0`` the batch is returned as is. Otherwise,
    for each example: while the pool is not full it is stored and returned; once
    full, with probability 1/2 a random stored example is returned and replaced by
    the new one, else the new one is returned (Zhu et al.'s implementation).

    Deviation: if the per-example shape changes (e.g. another crop length) the pool
    is emptied first, since old and new examples cannot be stacked together.
    The pool is transient training state and is not saved in checkpoints.
    """

    def __init__(self, pool_size: int, generator: torch.Generator | None = None) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = int(pool_size)
        self.generator = generator
        self._items: list[Tensor] = []

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every stored example."""
        self._items.clear()

    def query(self, batch: Tensor) -> Tensor:
        """Return a batch of the same shape mixing ``batch`` (detached) with stored examples."""
        batch = batch.detach()
        if self.pool_size == 0:
            return batch
        if self._items and self._items[0].shape != batch.shape[1:]:
            self.clear()
        out = []
        for item in batch:
            item = item.clone()
            if len(self._items) < self.pool_size:
                self._items.append(item)
                out.append(item)
                continue
            if torch.rand((), generator=self.generator).item() > 0.5:
                idx = int(torch.randint(len(self._items), (), generator=self.generator).item())
                out.append(self._items[idx])
                self._items[idx] = item
            else:
                out.append(item)
        return torch.stack(out)


__all__ = ["ImagePool"]
