"""Run one image experiment from a composed Hydra config (``conf/images``): write
``config.yaml``, the figures, ``models/<name>.pt`` and ``metrics.json`` into
``cfg.out_dir``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from voiceconv.errors import ConfigError
from voiceconv.images.experiments.debias import exp_debias
from voiceconv.images.experiments.diffusion import exp_diffusion
from voiceconv.images.experiments.gans import exp_gans
from voiceconv.images.experiments.outliers import exp_outliers
from voiceconv.images.experiments.translation import exp_translation
from voiceconv.images.experiments.vae_vs_betavae import exp_vae_vs_betavae
from voiceconv.utils.atomic import atomic_write_json, atomic_write_text

EXPERIMENTS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {
    "vae_vs_betavae": exp_vae_vs_betavae,
    "gans": exp_gans,
    "translation": exp_translation,
    "debias": exp_debias,
    "outliers": exp_outliers,
    "diffusion": exp_diffusion,
}


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.name`` and write its outputs into ``cfg.out_dir``; return the metrics."""
    name = str(cfg.name)
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r} (expected one of {sorted(EXPERIMENTS)})")
    out = Path(str(cfg.out_dir))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.threads))
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    t0 = time.perf_counter()
    metrics = EXPERIMENTS[name](cfg, out)
    metrics = {
        "experiment": name,
        "data": str(cfg.data.name),
        "size": str(cfg.size.name),
        "device": str(cfg.device),
        "torch_threads": torch.get_num_threads(),
        "seed": int(cfg.seed),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        **metrics,
    }
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
