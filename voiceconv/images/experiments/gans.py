"""``gans``: DCGAN, progressive GAN and class-conditional GAN, judged by a classifier
trained on the real images (Frechet distance; class accuracy and within-class pixel
diversity of the conditional GAN, next to the real images' own). With ``gans.workers``
2 the conditional GAN trains in a worker process beside the rest."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from voiceconv.images.experiments.common import (
    data_of,
    final,
    in_chunks,
    in_worker,
    loop_of,
    rebuild,
    save_curves,
    save_grid,
    save_models,
    timed,
    worker_count,
)
from voiceconv.images.experiments.judge import Judge, train_judge
from voiceconv.images.loops import History, fit_cgan, fit_gan, fit_progressive, to_unit
from voiceconv.models.cgan import ConditionalGAN
from voiceconv.models.gan import GAN
from voiceconv.models.progressive import ProgressiveGAN
from voiceconv.utils.machine import torch_threads


def build_dcgan(cfg: DictConfig, channels: int) -> GAN:
    """The DCGAN of the ``gans`` and ``diffusion`` experiments."""
    return GAN(latent_dim=int(cfg.gans.latent_dim), channels=channels, image_size=int(cfg.size.image_size),
               base_channels=int(cfg.size.width), gan_mode=str(cfg.gans.dcgan_mode))


def train_dcgan(cfg: DictConfig, train: Any, channels: int, judge: Judge, out: Path) -> tuple[GAN, dict[str, Any], History]:
    """Train the DCGAN, judge ``n_eval`` samples, save a sample grid."""
    seed, n = int(cfg.seed), int(cfg.size.n_eval)
    torch.manual_seed(seed)
    dcgan = build_dcgan(cfg, channels)
    hist, secs = timed(lambda: fit_gan(dcgan, train, loop_of(cfg, "gan")))
    dcgan.eval()
    torch.manual_seed(seed + 1)
    fakes = in_chunks(lambda k: to_unit(dcgan.sample(len(k))), torch.zeros(n))
    _grid(cfg, out, "dcgan", fakes)
    return dcgan, {**judge.score(fakes), "final_train": final(hist), "train_seconds": round(secs, 1)}, hist


def _grid(cfg: DictConfig, out: Path, name: str, fakes: torch.Tensor) -> None:
    k = int(cfg.size.n_show)
    save_grid(out / f"{name}_samples.png", fakes[: k * k], f"{name} samples", nrow=k)


def class_rows(fakes: torch.Tensor, labels: torch.Tensor, classes: list[str], k: int) -> torch.Tensor:
    """``(n_classes, k, C, H, W)``: the first ``k`` samples of each class, one row each
    (fewer when some class has fewer than ``k``)."""
    k = min([k] + [int((labels == c).sum()) for c in range(len(classes))])
    return torch.stack([fakes[labels == c][:k] for c in range(len(classes))])


def train_progressive(cfg: DictConfig, train: Any, channels: int) -> dict[str, Any]:
    """The progressive GAN, seeded: channels(res) = min(8 w, 32 w * 4 / res), so 8 w at
    4x4 and w at 32x32. Returns ``models``, ``history`` and ``train_seconds``."""
    w = int(cfg.size.width)
    torch.manual_seed(int(cfg.seed))
    pgan = ProgressiveGAN(latent_dim=int(cfg.gans.latent_dim), channels=channels,
                          max_resolution=int(cfg.size.image_size), max_channels=8 * w, channel_base=32 * w,
                          loss=str(cfg.gans.progressive_loss))
    hist, secs = timed(lambda: fit_progressive(pgan, train, loop_of(cfg, "progressive")))
    return {"models": {"progressive": pgan}, "history": hist, "train_seconds": round(secs, 1)}


def build_cgan(cfg: DictConfig, num_classes: int, channels: int) -> ConditionalGAN:
    """The conditional GAN of ``cfg.gans`` (widths are multiples of ``size.width``)."""
    ec, w = cfg.gans, int(cfg.size.width)
    return ConditionalGAN(num_classes=num_classes, latent_dim=int(ec.latent_dim), channels=channels,
                          image_size=int(cfg.size.image_size),
                          base_channels=int(ec.get("cgan_g_width_mult", 1)) * w,
                          gan_mode=str(ec.cgan_mode),
                          g_norm=str(ec.cgan_g_norm), d_norm=str(ec.cgan_d_norm),
                          spectral_norm=bool(ec.cgan_spectral_norm),
                          d_base_channels=int(ec.get("cgan_d_width_mult", 1)) * w,
                          mismatch_weight=float(ec.cgan_mismatch_weight),
                          aux_weight=float(ec.get("cgan_aux_weight", 0.0)),
                          g_aux_weight=None if ec.get("cgan_g_aux_weight") is None else float(ec.cgan_g_aux_weight),
                          g_out_conv=bool(ec.get("cgan_g_out_conv", False)),
                          g_arch=str(ec.get("cgan_g_arch", "dcgan")),
                          placement_zoom=float(ec.get("cgan_placement_zoom", 2.5)),
                          placement_canvas=None if ec.get("cgan_placement_canvas") is None
                          else int(ec.cgan_placement_canvas))


def train_cgan(cfg: DictConfig, train: Any, num_classes: int, channels: int) -> dict[str, Any]:
    """The conditional GAN, seeded, on labelled ``train``. Returns ``models``, ``history``
    and ``train_seconds``."""
    torch.manual_seed(int(cfg.seed))
    cgan = build_cgan(cfg, num_classes, channels)
    hist, secs = timed(lambda: fit_cgan(cgan, train, loop_of(cfg, "cgan"), label_index=-1,
                                        d_steps=int(cfg.gans.cgan_d_steps)))
    return {"models": {"cgan": cgan}, "history": hist, "train_seconds": round(secs, 1)}


def judge_cgan(cfg: DictConfig, cgan: ConditionalGAN, judge: Judge, classes: list[str], out: Path) -> dict[str, Any]:
    """The judge's scores of ``n_eval`` samples, the classes in turn (seed + 1); saves the
    sample grid and one row per class."""
    labels = torch.arange(int(cfg.size.n_eval)) % len(classes)
    torch.manual_seed(int(cfg.seed) + 1)
    fakes = in_chunks(lambda lab: to_unit(cgan.sample(lab.to(cfg.device))), labels)
    _grid(cfg, out, "cgan", fakes)
    save_grid(out / "cgan_by_class.png", class_rows(fakes, labels, classes, int(cfg.size.n_show)),
              "conditional GAN, one row per class: " + ", ".join(classes))
    return judge.score(fakes, labels)


def _unconditional(cfg: DictConfig, sets: Any, out: Path) -> dict[str, Any]:
    """Judge, DCGAN and progressive GAN: ``judge``, ``metrics``, ``models``, ``histories``."""
    seed, n_eval, ch = int(cfg.seed), int(cfg.size.n_eval), sets.image_shape[0]
    judge = train_judge(cfg, sets, out)
    metrics: dict[str, Any] = {"classes": sets.classes, "real": judge.report}
    histories: dict[str, History] = {"classifier": judge.history} if judge.history else {}
    dcgan, metrics["dcgan"], histories["dcgan"] = train_dcgan(cfg, sets.train, ch, judge, out)
    pg = train_progressive(cfg, sets.train, ch)
    pgan = pg["models"]["progressive"].eval()
    histories["progressive"] = pg["history"]
    torch.manual_seed(seed + 1)
    fakes = in_chunks(lambda k: to_unit(pgan.sample(len(k))), torch.zeros(n_eval))
    _grid(cfg, out, "progressive", fakes)
    metrics["progressive"] = {**judge.score(fakes), "final_train": final(pg["history"]),
                              "train_seconds": pg["train_seconds"]}
    return {"judge": judge, "metrics": metrics, "histories": histories,
            "models": {"dcgan": dcgan, "progressive": pgan}}


def exp_gans(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """DCGAN, progressive GAN and conditional GAN, judged by a real-data classifier.

    ``gans.workers`` 2 (``auto`` on a CPU with ``threads > 1``) trains the conditional
    GAN in a spawned worker process while this one trains the judge, the DCGAN and the
    progressive GAN, ``threads / 2`` threads each. Every model is seeded on its own, so
    the figures do not depend on ``workers`` (up to the floating-point order of a
    different thread count)."""
    sets = data_of(cfg)
    ch = sets.image_shape[0]
    conditional = sets.num_classes > 1
    workers = worker_count(cfg, "gans", 2) if conditional else 1
    cg: dict[str, Any] | None = None
    if workers > 1:
        threads = max(1, int(cfg.threads) // 2)
        with ProcessPoolExecutor(max_workers=1, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(in_worker, threads, train_cgan, cfg, sets.train, sets.num_classes, ch)
            with torch_threads(threads):  # this process is the second worker now
                un = _unconditional(cfg, sets, out)
            cg = rebuild(job.result())
    else:
        un = _unconditional(cfg, sets, out)
        if conditional:
            cg = train_cgan(cfg, sets.train, sets.num_classes, ch)
    judge, metrics, histories, models = un["judge"], un["metrics"], un["histories"], un["models"]
    metrics["workers"] = workers

    if cg is not None:
        cgan = cg["models"]["cgan"].to(cfg.device).eval()
        histories["cgan"] = cg["history"]
        metrics["cgan"] = {**judge_cgan(cfg, cgan, judge, sets.classes, out), "final_train": final(cg["history"]),
                           "train_seconds": cg["train_seconds"]}
        models["cgan"] = cgan
    metrics["models"] = save_models(out, judge=judge.clf, **models)
    save_curves(out / "training_curves.png", histories)
    return metrics
