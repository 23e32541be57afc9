"""``gans``: DCGAN, progressive GAN and class-conditional GAN, judged by a classifier
trained on the real images (Frechet distance; class accuracy and within-class pixel
diversity of the conditional GAN, next to the real images' own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from voiceconv.images.experiments.common import (
    data_of,
    final,
    in_chunks,
    loop_of,
    save_curves,
    save_grid,
    save_models,
    timed,
)
from voiceconv.images.experiments.judge import Judge, train_judge
from voiceconv.images.loops import History, fit_cgan, fit_gan, fit_progressive, to_unit
from voiceconv.models.cgan import ConditionalGAN
from voiceconv.models.gan import GAN
from voiceconv.models.progressive import ProgressiveGAN


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


def exp_gans(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """DCGAN, progressive GAN and conditional GAN, judged by a real-data classifier."""
    ec = cfg.gans
    sets = data_of(cfg)
    seed, size, w = int(cfg.seed), int(cfg.size.image_size), int(cfg.size.width)
    n_eval, n_show, ch = int(cfg.size.n_eval), int(cfg.size.n_show), sets.image_shape[0]
    judge = train_judge(cfg, sets, out)
    metrics: dict[str, Any] = {"classes": sets.classes, "real": judge.report}
    histories: dict[str, History] = {"classifier": judge.history} if judge.history else {}

    dcgan, metrics["dcgan"], histories["dcgan"] = train_dcgan(cfg, sets.train, ch, judge, out)
    models = {"dcgan": dcgan}

    # Progressive GAN: channels(res) = min(8 w, 32 w * 4 / res) -> 8w at 4x4, w at 32x32
    torch.manual_seed(seed)
    pgan = ProgressiveGAN(latent_dim=int(ec.latent_dim), channels=ch, max_resolution=size,
                          max_channels=8 * w, channel_base=32 * w, loss=str(ec.progressive_loss))
    hist, secs = timed(lambda: fit_progressive(pgan, sets.train, loop_of(cfg, "progressive")))
    histories["progressive"] = hist
    pgan.eval()
    torch.manual_seed(seed + 1)
    fakes = in_chunks(lambda k: to_unit(pgan.sample(len(k))), torch.zeros(n_eval))
    _grid(cfg, out, "progressive", fakes)
    metrics["progressive"] = {**judge.score(fakes), "final_train": final(hist), "train_seconds": round(secs, 1)}
    models["progressive"] = pgan

    if sets.num_classes > 1:
        torch.manual_seed(seed)
        cgan = ConditionalGAN(num_classes=sets.num_classes, latent_dim=int(ec.latent_dim), channels=ch,
                              image_size=size, base_channels=int(ec.get("cgan_g_width_mult", 1)) * w,
                              gan_mode=str(ec.cgan_mode),
                              g_norm=str(ec.cgan_g_norm), d_norm=str(ec.cgan_d_norm),
                              spectral_norm=bool(ec.cgan_spectral_norm),
                              d_base_channels=int(ec.get("cgan_d_width_mult", 1)) * w,
                              mismatch_weight=float(ec.cgan_mismatch_weight),
                              aux_weight=float(ec.get("cgan_aux_weight", 0.0)),
                              g_out_conv=bool(ec.get("cgan_g_out_conv", False)),
                              g_arch=str(ec.get("cgan_g_arch", "dcgan")),
                              placement_zoom=float(ec.get("cgan_placement_zoom", 2.5)))
        hist, secs = timed(lambda: fit_cgan(cgan, sets.train, loop_of(cfg, "cgan"), label_index=-1,
                                            d_steps=int(ec.cgan_d_steps)))
        histories["cgan"] = hist
        cgan.eval()
        labels = torch.arange(n_eval) % sets.num_classes
        torch.manual_seed(seed + 1)
        fakes = in_chunks(lambda lab: to_unit(cgan.sample(lab.to(cfg.device))), labels)
        _grid(cfg, out, "cgan", fakes)
        metrics["cgan"] = {**judge.score(fakes, labels), "final_train": final(hist),
                           "train_seconds": round(secs, 1)}
        save_grid(out / "cgan_by_class.png", class_rows(fakes, labels, sets.classes, n_show),
                  "conditional GAN, one row per class: " + ", ".join(sets.classes))
        models["cgan"] = cgan
    metrics["models"] = save_models(out, judge=judge.clf, **models)
    save_curves(out / "training_curves.png", histories)
    return metrics
