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
  CPU has it, channels-last) are ``optim.pixelcnn``'s.

Three PixelCNNs fit ``size=small``'s ten minutes on two cores through two more things
(recipe README, seventh pass): a shared warm start on the classes no run holds out
(:func:`warm_pixelcnn`), which each run fine-tunes, and worker processes that train
the held-out classes side by side (``outliers.workers``).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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
    in_worker,
    loop_of,
    rebuild,
    save_curves,
    save_grid,
    save_histograms,
    save_models,
    take,
    timed,
    worker_count,
)
from voiceconv.images.loops import History, LoopConfig, batched, fit_vae, loop_autocast
from voiceconv.images.metrics import auroc
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN, PixelCNN
from voiceconv.models.vae import VAE
from voiceconv.utils.machine import torch_threads


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


_SCORE_LABELS = {"neg_elbo": "negative ELBO (nats)", "likelihood_ratio": "-ELBO - background NLL (nats)",
                 "pixelcnn_ratio": "PixelCNN NLL - background NLL (nats)"}


def _score_names(cfg: DictConfig) -> list[str]:
    pc_steps = int(cfg.size.steps.get("pixelcnn", 0))
    return ["neg_elbo", "likelihood_ratio"] + (["pixelcnn_ratio"] if pc_steps > 0 else [])


def warm_pixelcnn(cfg: DictConfig, train: TensorImages, held: list[int]) -> dict[str, torch.Tensor] | None:
    """The PixelCNNs' shared warm start: one model trained ``size.steps.pixelcnn_warm``
    steps on the training images of the classes that no run holds out (none of ``held``),
    so it has seen none of the classes any run must flag. Every held-out run fine-tunes
    a copy of it on its own inliers, and the steps of this phase count once instead of
    once per class. ``None`` (train from scratch) when the phase is off or every class
    is held out somewhere."""
    steps = int(cfg.size.steps.get("pixelcnn_warm", 0))
    keep = ~torch.isin(train.labels, torch.tensor(held, dtype=torch.long))
    if steps <= 0 or int(cfg.size.steps.get("pixelcnn", 0)) <= 0 or not bool(keep.any()):
        return None
    torch.manual_seed(int(cfg.seed))
    model = build_pixelcnn(train.images.shape[1], cfg.outliers.pixelcnn)
    fit_vae(model, train.select(keep), loop_of(cfg, "pixelcnn_warm", seed_offset=100))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class _Split:
    """One held-out class's data: training inliers, test inliers, test outliers, noise."""

    name: str
    train: TensorImages
    inliers: torch.Tensor
    held_out: torch.Tensor
    noise: torch.Tensor

    @property
    def groups(self) -> dict[str, torch.Tensor]:
        return {"in": self.inliers, "held_out": self.held_out, "noise": self.noise}


def _split(name: str, held: int, train: TensorImages, test: TensorImages, noise: torch.Tensor) -> _Split:
    return _Split(name, train.select(train.labels != held), test.images[test.labels != held],
                  test.images[test.labels == held], noise)


def train_vae_scores(cfg: DictConfig, sp: _Split, out: Path) -> dict[str, Any]:
    """Train the VAE and the background model without ``sp.name``; their per-image
    scores of every group (``neg_elbo``, ``likelihood_ratio`` and the background NLL
    ``bg_nll`` the PixelCNN ratio needs), the models, histories and seconds; writes the
    reconstruction grid."""
    ec = cfg.outliers
    seed, dev, k = int(cfg.seed), str(cfg.device), int(ec.elbo_samples)
    shape = tuple(sp.train.images.shape[1:])
    torch.manual_seed(seed)
    vae = VAE(shape[0], shape[1], int(cfg.size.latent_dim), hidden_of(cfg), likelihood=str(ec.likelihood))
    hist, secs = timed(lambda: fit_vae(vae, sp.train, loop_of(cfg, "outlier_vae")))
    torch.manual_seed(seed)
    bg = LocalPixelCNN(shape[0], int(ec.background_kernel), int(ec.background_hidden))
    bg_hist, bg_secs = timed(lambda: fit_vae(bg, sp.train, loop_of(cfg, "background")))
    vae.eval()
    bg.eval()
    torch.manual_seed(seed + 1)
    scores: dict[str, dict[str, np.ndarray]] = {}
    for group, x in sp.groups.items():
        ne = batched(lambda b: vae.outlier_score(b, n_samples=k), x, device=dev).numpy()
        bn = batched(bg.nll, x, device=dev).numpy()
        scores[group] = {"neg_elbo": ne, "likelihood_ratio": likelihood_ratio(ne, bn), "bg_nll": bn}
    k_show = min(int(cfg.size.n_show), len(sp.inliers), len(sp.held_out))
    x_in, x_out = sp.inliers[:k_show], sp.held_out[:k_show]
    save_grid(out / f"reconstructions_without_{sp.name}.png",
              torch.stack([x_in, batched(vae.reconstruct, x_in, device=dev), x_out,
                           batched(vae.reconstruct, x_out, device=dev)]),
              f"rows: inliers, their reconstructions, held-out {sp.name}, theirs")
    return {"scores": scores, "models": {f"vae_without_{sp.name}": vae, f"background_without_{sp.name}": bg},
            "histories": {f"vae_without_{sp.name}": hist, f"background_without_{sp.name}": bg_hist},
            "seconds": {"train_seconds": round(secs, 1), "background_train_seconds": round(bg_secs, 1)},
            "final_train": final(hist)}


def train_pixelcnn_nll(cfg: DictConfig, sp: _Split, warm: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    """Train the full-context PixelCNN without ``sp.name`` (from the ``warm`` state when
    given, see :func:`warm_pixelcnn`); its per-image NLL of every group, the model,
    history and seconds."""
    torch.manual_seed(int(cfg.seed))
    pc = build_pixelcnn(sp.train.images.shape[1], cfg.outliers.pixelcnn)
    if warm is not None:
        pc.load_state_dict(warm)
    loop = loop_of(cfg, "pixelcnn")
    hist, secs = timed(lambda: fit_vae(pc, sp.train, loop))
    pc.eval()
    nll = {g: _nll_as_trained(pc, x, loop, str(cfg.device)).numpy() for g, x in sp.groups.items()}
    return {"nll": nll, "models": {f"pixelcnn_without_{sp.name}": pc},
            "histories": {f"pixelcnn_without_{sp.name}": hist}, "seconds": {"pixelcnn_train_seconds": round(secs, 1)}}


def _summarise(names: list[str], sp: _Split, vs: dict[str, Any], pcs: dict[str, Any] | None,
               out: Path) -> dict[str, Any]:
    """AUROC and mean of every score, held-out class and noise vs inliers; histograms."""
    scores = {g: {s: v for s, v in d.items() if s != "bg_nll"} for g, d in vs["scores"].items()}
    if pcs is not None:
        for g in scores:
            scores[g]["pixelcnn_ratio"] = likelihood_ratio(pcs["nll"][g], vs["scores"][g]["bg_nll"])
    res: dict[str, Any] = {"n_in": len(sp.inliers), "n_held_out": len(sp.held_out)}
    for s in names:
        res[s] = {"auroc_held_out": auroc(scores["in"][s], scores["held_out"][s]),
                  "auroc_noise": auroc(scores["in"][s], scores["noise"][s]),
                  "mean": {g: float(v[s].mean()) for g, v in scores.items()}}
        save_histograms(out / f"scores_{s}_without_{sp.name}.png",
                        {"in-distribution": scores["in"][s], f"held-out {sp.name}": scores["held_out"][s]},
                        _SCORE_LABELS[s])
    res.update(final_train=vs["final_train"], **vs["seconds"], **(pcs["seconds"] if pcs else {}))
    return res


def exp_outliers(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """For each held-out class: train a VAE, a background model and (``size.steps.pixelcnn
    > 0``) a full-context PixelCNN on the rest; AUROC of every score for the held-out
    class and for noise against held-in test images.

    ``outliers.workers > 1`` runs the held-out classes side by side in that many worker
    processes (spawned), sharing ``threads`` between them (at least one each), while this
    process trains the PixelCNNs' shared warm start (:func:`warm_pixelcnn`); then the
    workers fine-tune the PixelCNNs. On a CPU the small PixelCNN's steps are dominated
    by per-operation costs that a second thread barely shortens, so single-thread
    processes on two cores finish sooner than one two-thread process (recipe README).
    Every model is seeded on its own, so the figures do not depend on ``workers`` (up to
    the floating-point order of a different thread count)."""
    ec = cfg.outliers
    sets = data_of(cfg)
    seed = int(cfg.seed)
    train, test = _as_tensors(sets.train), _as_tensors(sets.test)
    noise = take(NoiseImages(sets.image_shape, int(cfg.size.n_eval), seed=seed + 7))[0]
    names = _score_names(cfg)
    splits, held = [], []
    for name in ec.held_out:
        h = _class_index(name, sets.classes)
        if not bool((test.labels == h).any()) or not bool((train.labels != h).any()):
            raise ConfigError(f"outliers: class {name!r} has no test items or is the only class")
        splits.append(_split(str(name), h, train, test, noise))
        held.append(h)
    workers = worker_count(cfg, "outliers", len(splits))
    with_pc = "pixelcnn_ratio" in names
    t0 = time.perf_counter()
    if workers > 1:
        threads = max(1, int(cfg.threads) // workers)
        ctx = torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            vae_jobs = [pool.submit(in_worker, threads, train_vae_scores, cfg, sp, out) for sp in splits]
            with torch_threads(threads):  # this process is one more worker now
                warm = warm_pixelcnn(cfg, train, held)
            warm_secs = time.perf_counter() - t0
            pc_jobs = [pool.submit(in_worker, threads, train_pixelcnn_nll, cfg, sp, warm) for sp in splits] if with_pc else []
            vae_res = [rebuild(j.result()) for j in vae_jobs]
            pc_res: list[dict[str, Any] | None] = [rebuild(j.result()) for j in pc_jobs] or [None] * len(splits)
    else:
        warm = warm_pixelcnn(cfg, train, held)
        warm_secs = time.perf_counter() - t0
        vae_res = [train_vae_scores(cfg, sp, out) for sp in splits]
        pc_res = [train_pixelcnn_nll(cfg, sp, warm) for sp in splits] if with_pc else [None] * len(splits)
    metrics: dict[str, Any] = {"score": names[-1], "baseline_score": "neg_elbo", "scores": names,
                               "held_out": {}, "workers": workers, "pixelcnn_warm_start": warm is not None,
                               "pixelcnn_warm_seconds": round(warm_secs, 1) if warm is not None else 0.0}
    models: dict[str, Any] = {}
    histories: dict[str, History] = {}
    for sp, vs, pcs in zip(splits, vae_res, pc_res, strict=True):
        metrics["held_out"][sp.name] = _summarise(names, sp, vs, pcs, out)
        for r in (vs, pcs):
            if r is not None:
                models.update(r["models"])
                histories.update(r["histories"])
    metrics["min_auroc_held_out"] = {s: min(r[s]["auroc_held_out"] for r in metrics["held_out"].values())
                                     for s in names}
    metrics["models"] = save_models(out, **models)
    save_curves(out / "training_curves.png", histories)
    return metrics
