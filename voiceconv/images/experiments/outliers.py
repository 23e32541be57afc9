"""``outliers``: a VAE trained without one class; is that class flagged as outlying?

Three scores side by side, for each held-out class and for uniform noise:

* the plain negative ELBO (``VAE.outlier_score``), which mostly tracks how many
  pixels are lit, so a held-out shape of similar size is not flagged;
* the likelihood ratio ``-ELBO_vae(x) - NLL_background(x)`` (Ren et al. 2019,
  Schirrmeister et al. 2020): the background model is a :class:`LocalPixelCNN`
  trained on the same images, whose few-pixel receptive field captures the local
  statistics (edges, texture, how much is lit) that inflate the ELBO of every
  complex image, so what remains is what the VAE's global model of the classes fails
  to explain;
* with ``size.steps.pixelcnn > 0``, the same ratio with a full-context
  :class:`GatedPixelCNN` (or, ``arch: plain``, a :class:`PixelCNN`) in place of the
  VAE (``pixelcnn_ratio``): an autoregressive
  model's likelihood is sharp at the pixel level where the VAE's is blurred, so a
  notch or a corner the inliers never have costs what it should. This is the
  experiment's headline score (``metrics["score"]``) when it is trained, the plain
  negative ELBO its baseline. Its loop settings (cosine learning rate, bf16 where the
  CPU has it, channels-last) are ``optim.pixelcnn``'s; they are what fits three such
  models into ``size=small``'s ten minutes on two cores (see the recipe README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from voiceconv.errors import ConfigError
from voiceconv.images.data import NoiseImages
from voiceconv.images.data.sources import TensorImages
from voiceconv.images.experiments.common import (
    data_of,
    final,
    hidden_of,
    loop_of,
    save_curves,
    save_grid,
    save_histograms,
    save_models,
    take,
    timed,
)
from voiceconv.images.loops import History, LoopConfig, batched, fit_vae, loop_autocast
from voiceconv.images.metrics import auroc
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN, PixelCNN
from voiceconv.models.vae import VAE


def _as_tensors(data: Any) -> TensorImages:
    batch = take(data)
    return TensorImages(batch[0], batch[-1])


def _class_index(name: Any, classes: list[str]) -> int:
    s = str(name)
    if s in classes:
        return classes.index(s)
    raise ConfigError(f"outliers: unknown held-out class {s!r} (classes: {classes})")


def likelihood_ratio(neg_elbo: np.ndarray, background_nll: np.ndarray) -> np.ndarray:
    """The likelihood-ratio score: the VAE's negative ELBO minus the background model's
    negative log-likelihood (both in nats); higher = more outlying."""
    return np.asarray(neg_elbo) - np.asarray(background_nll)


def build_pixelcnn(channels: int, pcc: DictConfig) -> GatedPixelCNN | PixelCNN:
    """The full-context model of ``pixelcnn_ratio``: ``arch`` gated (no blind spot, the
    default) or plain (stacked masked convolutions; configs written before ``arch``)."""
    arch = str(pcc.get("arch", "plain"))
    if arch == "gated":
        return GatedPixelCNN(channels, int(pcc.width), int(pcc.layers), int(pcc.get("kernel", 5)))
    if arch == "plain":
        return PixelCNN(channels, int(pcc.width), int(pcc.layers), bool(pcc.get("dilated", True)))
    raise ConfigError(f"outliers.pixelcnn.arch must be 'gated' or 'plain', got {arch!r}")


def _nll_as_trained(model: GatedPixelCNN | PixelCNN, x: torch.Tensor, loop: LoopConfig, device: str) -> torch.Tensor:
    """The model's per-image NLL of ``x``, in chunks, under its training loop's precision
    and memory format (bf16 channels-last scoring is about four times faster on a CPU
    with native bf16); the model is left contiguous, as it is saved."""
    fmt = loop.memory_format
    model.to(memory_format=fmt)
    try:
        with loop_autocast(loop):
            return batched(lambda b: model.nll(b.contiguous(memory_format=fmt)), x, device=device)
    finally:
        model.to(memory_format=torch.contiguous_format)


def exp_outliers(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """For each held-out class: train a VAE, a background model and (``size.steps.pixelcnn
    > 0``) a full-context PixelCNN on the rest; AUROC of every score for the held-out
    class and for noise against held-in test images."""
    ec = cfg.outliers
    sets = data_of(cfg)
    seed, dev, n_show = int(cfg.seed), str(cfg.device), int(cfg.size.n_show)
    train, test = _as_tensors(sets.train), _as_tensors(sets.test)
    noise = take(NoiseImages(sets.image_shape, int(cfg.size.n_eval), seed=seed + 7))[0]
    k = int(ec.elbo_samples)
    pc_steps = int(cfg.size.steps.get("pixelcnn", 0))
    names = ["neg_elbo", "likelihood_ratio"] + (["pixelcnn_ratio"] if pc_steps > 0 else [])
    metrics: dict[str, Any] = {"score": names[-1], "baseline_score": "neg_elbo", "scores": names,
                               "held_out": {}}
    histories: dict[str, History] = {}
    models = {}
    for name in ec.held_out:
        held = _class_index(name, sets.classes)
        tr, t_in, t_out = train.select(train.labels != held), test.select(test.labels != held), test.select(test.labels == held)
        if len(t_out) == 0 or len(tr) == 0:
            raise ConfigError(f"outliers: class {name!r} has no test items or is the only class")
        torch.manual_seed(seed)
        vae = VAE(sets.image_shape[0], sets.image_shape[1], int(cfg.size.latent_dim), hidden_of(cfg),
                  likelihood=str(ec.likelihood))
        hist, secs = timed(lambda m=vae, d=tr: fit_vae(m, d, loop_of(cfg, "outlier_vae")))
        torch.manual_seed(seed)
        bg = LocalPixelCNN(sets.image_shape[0], int(ec.background_kernel), int(ec.background_hidden))
        bg_hist, bg_secs = timed(lambda m=bg, d=tr: fit_vae(m, d, loop_of(cfg, "background")))
        histories[f"vae_without_{name}"], histories[f"background_without_{name}"] = hist, bg_hist
        pc = None
        if pc_steps > 0:
            torch.manual_seed(seed)
            pcc = ec.pixelcnn
            pc = build_pixelcnn(sets.image_shape[0], pcc)
            pc_loop = loop_of(cfg, "pixelcnn")
            pc_hist, pc_secs = timed(lambda m=pc, d=tr, lc=pc_loop: fit_vae(m, d, lc))
            histories[f"pixelcnn_without_{name}"] = pc_hist
            pc.eval()
        vae.eval()
        bg.eval()
        torch.manual_seed(seed + 1)
        scores: dict[str, dict[str, np.ndarray]] = {}
        for group, x in (("in", t_in.images), ("held_out", t_out.images), ("noise", noise)):
            ne = batched(lambda b, m=vae: m.outlier_score(b, n_samples=k), x, device=dev).numpy()
            bn = batched(bg.nll, x, device=dev).numpy()
            scores[group] = {"neg_elbo": ne, "likelihood_ratio": likelihood_ratio(ne, bn)}
            if pc is not None:
                pc_nll = _nll_as_trained(pc, x, pc_loop, dev)
                scores[group]["pixelcnn_ratio"] = likelihood_ratio(pc_nll.numpy(), bn)
        res: dict[str, Any] = {"n_in": len(t_in), "n_held_out": len(t_out)}
        for s in names:
            res[s] = {"auroc_held_out": auroc(scores["in"][s], scores["held_out"][s]),
                      "auroc_noise": auroc(scores["in"][s], scores["noise"][s]),
                      "mean": {g: float(v[s].mean()) for g, v in scores.items()}}
        res.update(final_train=final(hist), train_seconds=round(secs, 1),
                   background_train_seconds=round(bg_secs, 1))
        if pc is not None:
            res["pixelcnn_train_seconds"] = round(pc_secs, 1)
            models[f"pixelcnn_without_{name}"] = pc
        metrics["held_out"][str(name)] = res
        models[f"vae_without_{name}"], models[f"background_without_{name}"] = vae, bg
        k_show = min(n_show, len(t_in), len(t_out))
        rec_in = batched(vae.reconstruct, t_in.images[:k_show], device=dev)
        rec_out = batched(vae.reconstruct, t_out.images[:k_show], device=dev)
        save_grid(out / f"reconstructions_without_{name}.png",
                  torch.stack([t_in.images[:k_show], rec_in, t_out.images[:k_show], rec_out]),
                  f"rows: inliers, their reconstructions, held-out {name}, theirs")
        labels = {"neg_elbo": "negative ELBO (nats)", "likelihood_ratio": "-ELBO - background NLL (nats)",
                  "pixelcnn_ratio": "PixelCNN NLL - background NLL (nats)"}
        for s in names:
            label = labels[s]
            save_histograms(out / f"scores_{s}_without_{name}.png",
                            {"in-distribution": scores["in"][s], f"held-out {name}": scores["held_out"][s]}, label)
    metrics["min_auroc_held_out"] = {s: min(r[s]["auroc_held_out"] for r in metrics["held_out"].values())
                                     for s in names}
    metrics["models"] = save_models(out, **models)
    save_curves(out / "training_curves.png", histories)
    return metrics
