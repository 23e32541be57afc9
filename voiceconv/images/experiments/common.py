"""Pieces every image experiment uses: the config's data and loop settings, figures,
timing, sampling in chunks, saving the trained models beside the metrics, and training
in worker processes."""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from voiceconv.errors import ConfigError  # noqa: E402
from voiceconv.images.data import ShapesSpec  # noqa: E402
from voiceconv.images.data.sources import ImageSets, image_sets  # noqa: E402
from voiceconv.images.loops import History, LoopConfig, get_batch  # noqa: E402
from voiceconv.models.base import SavableModule, model_from_payload, model_payload, save_model  # noqa: E402
from voiceconv.models.latent_tools import image_grid  # noqa: E402
from voiceconv.utils.atomic import atomic_path  # noqa: E402


def spec_of(cfg: DictConfig) -> ShapesSpec:
    """The experiment's :class:`ShapesSpec` (image size and channels for every source)."""
    return ShapesSpec.from_dict(OmegaConf.to_container(cfg.shapes, resolve=True))  # type: ignore[arg-type]


def data_of(cfg: DictConfig, spec: ShapesSpec | None = None) -> ImageSets:
    """Train / test sets of ``cfg.data`` (shapes, folder or mnist) at the configured size."""
    d = cfg.data
    return image_sets(str(d.name), spec=spec or spec_of(cfg), n_train=int(cfg.size.n_train),
                      n_test=int(cfg.size.n_eval), seed=int(cfg.seed),
                      root=None if d.get("root") is None else str(d.root),
                      channels=None if d.get("channels") is None else int(d.channels),
                      test_fraction=float(d.get("test_fraction", 0.1)))


def loop_of(cfg: DictConfig, kind: str, seed_offset: int = 0) -> LoopConfig:
    """Loop settings of model family ``kind``: steps and batch from ``size``, Adam from
    ``optim`` (``d_lr``/``d_betas``, ``schedule``/``warmup``, ``precision`` and
    ``channels_last`` when the family sets them)."""
    opt = cfg.optim[kind]
    d_lr, d_betas = opt.get("d_lr"), opt.get("d_betas")
    return LoopConfig(
        steps=int(cfg.size.steps[kind]),
        batch_size=int(cfg.size.batch_size[kind]),
        lr=float(opt.lr),
        betas=tuple(float(b) for b in opt.betas),  # type: ignore[arg-type]
        d_lr=None if d_lr is None else float(d_lr),
        d_betas=None if d_betas is None else tuple(float(b) for b in d_betas),  # type: ignore[arg-type]
        device=str(cfg.device),
        seed=int(cfg.seed) + seed_offset,
        log_every=max(1, int(cfg.size.steps[kind]) // 100),
        progress=bool(cfg.progress),
        desc=kind,
        schedule=str(opt.get("schedule", "constant")),
        warmup=int(opt.get("warmup", 0)),
        precision=str(opt.get("precision", "fp32")),
        channels_last=bool(opt.get("channels_last", False)),
    )


def take(data: Dataset, n: int | None = None) -> tuple[torch.Tensor, ...]:
    """The first ``n`` items of a dataset (all by default), batched."""
    n = len(data) if n is None else min(n, len(data))  # type: ignore[arg-type]
    return get_batch(data, np.arange(n))


def hidden_of(cfg: DictConfig) -> tuple[int, ...]:
    """Conv encoder widths: four stages (w, w, 2w, 2w), fewer for tiny images."""
    w = int(cfg.size.width)
    stages = min(4, int(math.log2(int(cfg.size.image_size))) - 1)
    return (w, w, 2 * w, 2 * w)[:stages]


def save_grid(path: Path, images: torch.Tensor, title: str | None = None, nrow: int | None = None) -> None:
    """Save ``(N, C, H, W)`` or ``(R, K, C, H, W)`` images in [0, 1] as one PNG."""
    grid = image_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, pad_value=0.5)
    arr = grid.permute(1, 2, 0).numpy()
    width_in = max(3.0, arr.shape[1] / 40)
    lines = textwrap.wrap(title, width=int(width_in * 14)) if title else []
    fig, ax = plt.subplots(figsize=(width_in, max(2.0, arr.shape[0] / 40) + 0.15 * len(lines)))
    ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if lines:
        ax.set_title("\n".join(lines), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def save_figure(fig: Any, path: Path, dpi: int = 80) -> None:
    """Write a matplotlib figure atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def save_curves(path: Path, histories: dict[str, History]) -> None:
    """One panel per model with every recorded loss against the record index."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items(), strict=True):
        for key, vals in hist.items():
            if key not in ("resolution", "alpha", "max_weight_ratio"):
                ax.plot(vals, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("record")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def save_histograms(path: Path, groups: dict[str, np.ndarray], xlabel: str) -> None:
    """Overlaid histograms of score groups on shared bins."""
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = np.histogram_bin_edges(np.concatenate(list(groups.values())), bins=40)
    for name, vals in groups.items():
        ax.hist(vals, bins=bins, alpha=0.5, label=name)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def final(hist: History) -> dict[str, float]:
    """The last recorded value of every loss."""
    return {k: v[-1] for k, v in hist.items() if v}


def timed(fn: Callable[[], History]) -> tuple[History, float]:
    """``(fn(), seconds it took)``."""
    t0 = time.perf_counter()
    hist = fn()
    return hist, time.perf_counter() - t0


def save_models(out: Path, **models: SavableModule) -> dict[str, str]:
    """Save each model to ``out/models/<name>.pt`` (loadable with ``load_model``);
    returns name -> path relative to ``out`` for ``metrics.json``."""
    paths = {}
    for name, model in models.items():
        save_model(model, out / "models" / f"{name}.pt")
        paths[name] = f"models/{name}.pt"
    return paths


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``fn`` over ``labels`` in chunks, outputs concatenated on the CPU."""
    return torch.cat([fn(part).cpu() for part in labels.split(chunk)])


def pixel_std(images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Diversity of a set of images: the per-pixel standard deviation across the set,
    averaged over pixels (within each class and then over classes when ``labels`` are
    given; classes with fewer than two images are skipped). A collapsed generator
    scores far below the real data."""
    if labels is None:
        return float(images.std(0).mean())
    per_class = [images[labels == k].std(0).mean() for k in labels.unique() if int((labels == k).sum()) > 1]
    return float(torch.stack(per_class).mean()) if per_class else float("nan")


def worker_count(cfg: DictConfig, section: str, n_jobs: int) -> int:
    """The ``workers`` setting of experiment section ``section``: a number (at most
    ``n_jobs``), or ``auto`` = ``n_jobs`` processes on a CPU when ``threads > 1``, else 1
    (in this process)."""
    w = cfg[section].get("workers", 1)
    if str(w) == "auto":
        return n_jobs if str(cfg.device) == "cpu" and int(cfg.threads) > 1 else 1
    try:
        n = int(w)
    except ValueError:
        raise ConfigError(f"{section}.workers must be a number or 'auto', got {w!r}") from None
    if n < 1:
        raise ConfigError(f"{section}.workers must be >= 1, got {n}")
    return min(n, n_jobs)


def in_worker(threads: int, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a worker process with ``threads`` intra-op threads; the models in
    its result's ``models`` come back as save payloads (class, hparams, state) for the
    parent to rebuild (:func:`rebuild`)."""
    torch.set_num_threads(threads)
    result = fn(*args)
    return {**result, "models": {n: model_payload(m) for n, m in result["models"].items()}}


def rebuild(result: dict[str, Any]) -> dict[str, Any]:
    """A worker's result with its models rebuilt from their payloads (see :func:`in_worker`)."""
    return {**result, "models": {n: model_from_payload(p).eval() for n, p in result["models"].items()}}
