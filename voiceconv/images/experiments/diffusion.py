"""``diffusion``: a DDPM (Ho et al. 2020) against the DCGAN of the ``gans`` experiment,
both judged by the same real-data classifier (Frechet distance of its features).

With labelled data the DDPM is class-conditional with classifier-free guidance, so
one model gives both unconditional samples (the null label; compared with the DCGAN
on Frechet distance) and class-conditional ones (class accuracy and within-class
diversity, next to the judge's accuracy on real images).
"""

from __future__ import annotations

import time
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
from voiceconv.images.experiments.gans import class_rows, train_dcgan
from voiceconv.images.experiments.judge import train_judge
from voiceconv.images.loops import History, fit_diffusion, to_unit
from voiceconv.models.diffusion import DDPM


def exp_diffusion(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Train the judge, the DCGAN and the DDPM; compare their samples."""
    ec = cfg.diffusion
    sets = data_of(cfg)
    seed, ch = int(cfg.seed), sets.image_shape[0]
    n_eval, n_show = int(cfg.size.n_eval), int(cfg.size.n_show)
    n_classes = sets.num_classes if sets.num_classes > 1 and bool(ec.conditional) else 0
    judge = train_judge(cfg, sets, out)
    metrics: dict[str, Any] = {"classes": sets.classes, "real": judge.report}
    histories: dict[str, History] = {"classifier": judge.history} if judge.history else {}
    dcgan, metrics["dcgan"], histories["dcgan"] = train_dcgan(cfg, sets.train, ch, judge, out)

    torch.manual_seed(seed)
    ddpm = DDPM(ch, sets.image_shape[1], width=int(ec.width), channel_mults=list(ec.channel_mults),
                num_res_blocks=int(ec.num_res_blocks), timesteps=int(ec.timesteps), schedule=str(ec.schedule),
                num_classes=n_classes, p_uncond=float(ec.p_uncond), prediction=str(ec.get("prediction", "eps")))
    hist, secs = timed(lambda: fit_diffusion(ddpm, sets.train, loop_of(cfg, "diffusion"),
                                             label_index=-1 if n_classes else None))
    histories["ddpm"] = hist
    ddpm.eval()
    kw = dict(method=str(ec.sampler), steps=int(ec.sample_steps), eta=float(ec.eta))
    torch.manual_seed(seed + 1)
    t0 = time.perf_counter()
    fakes = in_chunks(lambda k: to_unit(ddpm.sample(len(k), **kw)), torch.zeros(n_eval))
    sample_secs = time.perf_counter() - t0
    save_grid(out / "ddpm_samples.png", fakes[: n_show * n_show], "DDPM samples (unconditional)", nrow=n_show)
    metrics["ddpm"] = {**judge.score(fakes), "final_train": final(hist), "train_seconds": round(secs, 1),
                       "sample_seconds": round(sample_secs, 1), "parameters": ddpm.num_parameters(),
                       "sampler": dict(kw)}
    if n_classes:
        labels = torch.arange(int(ec.get("n_conditional", n_eval))) % n_classes
        torch.manual_seed(seed + 2)
        t0 = time.perf_counter()
        cond = in_chunks(lambda lab: to_unit(ddpm.sample(lab, guidance=float(ec.guidance), **kw)), labels)
        metrics["ddpm_conditional"] = {**judge.score(cond, labels), "guidance": float(ec.guidance),
                                       "n_samples": len(labels), "sample_seconds": round(time.perf_counter() - t0, 1)}
        save_grid(out / "ddpm_by_class.png", class_rows(cond, labels, sets.classes, n_show),
                  f"DDPM, guidance {float(ec.guidance)}, one row per class: " + ", ".join(sets.classes))
    metrics["ddpm_fd_below_dcgan"] = metrics["ddpm"]["fd"] < metrics["dcgan"]["fd"]
    metrics["models"] = save_models(out, judge=judge.clf, dcgan=dcgan, ddpm=ddpm)
    save_curves(out / "training_curves.png", histories)
    return metrics
