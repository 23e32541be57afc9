"""``vae_vs_betavae``: a VAE (beta = 1) and a beta-VAE on the same images; MIG of the
posterior means against the known factors (procedural shapes only), test ELBO and
active dimensions on any data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from voiceconv.images.data import FACTOR_NAMES, ShapesDataset
from voiceconv.images.experiments.common import (
    data_of,
    final,
    hidden_of,
    loop_of,
    save_curves,
    save_grid,
    save_models,
    take,
    timed,
)
from voiceconv.images.loops import History, batched, fit_vae
from voiceconv.images.metrics import mig
from voiceconv.models.latent_tools import kl_divergence
from voiceconv.models.vae import VAE, BetaVAE


def exp_vae_vs_betavae(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Train a VAE and a beta-VAE; MIG (shapes), test ELBO, active dims, figures."""
    ec = cfg.vae_vs_betavae
    sets = data_of(cfg)
    x_test = take(sets.test)[0]
    factors = sets.test.factors if isinstance(sets.test, ShapesDataset) else None
    ch, size = sets.image_shape[0], sets.image_shape[1]
    latent, n_show, dev = int(cfg.size.latent_dim), int(cfg.size.n_show), str(cfg.device)
    metrics: dict[str, Any] = {}
    if isinstance(sets.test, ShapesDataset):
        metrics["factor_sizes"] = dict(zip(FACTOR_NAMES, sets.test.spec.factor_sizes, strict=True))
    histories: dict[str, History] = {}
    models = {}
    for name, beta in (("vae", 1.0), ("beta_vae", float(ec.beta))):
        torch.manual_seed(int(cfg.seed))
        common = dict(in_channels=ch, image_size=size, latent_dim=latent, hidden=hidden_of(cfg),
                      likelihood=str(ec.likelihood))
        model = VAE(**common) if beta == 1.0 else BetaVAE(**common, beta=beta)
        hist, secs = timed(lambda m=model: fit_vae(m, sets.train, loop_of(cfg, "vae")))
        histories[name], models[name] = hist, model
        model.eval()
        mu_logvar = batched(lambda x, m=model: torch.cat(m.encode(x), 1), x_test, device=dev)
        mu, logvar = mu_logvar[:, :latent], mu_logvar[:, latent:]
        kl_dim = kl_divergence(mu[:, :, None], logvar[:, :, None]).mean(0)  # (latent,)
        elbo = batched(lambda x, m=model: m.elbo(x), x_test, device=dev)
        metrics[name] = {
            "beta": beta,
            **(mig(mu, factors, n_bins=int(ec.mig_bins)).to_dict(FACTOR_NAMES) if factors is not None else {}),
            "test_elbo": float(elbo.mean()),
            "kl_per_dim": [round(float(k), 4) for k in kl_dim],
            "active_dims": int((kl_dim > 0.1).sum()),
            "final_train": final(hist),
            "train_seconds": round(secs, 1),
        }
        recon = batched(lambda x, m=model: m.reconstruct(x), x_test[:n_show], device=dev)
        save_grid(out / f"{name}_reconstructions.png", torch.stack([x_test[:n_show], recon]),
                  f"{name}: test inputs (top) and reconstructions")
        torch.manual_seed(int(cfg.seed))
        samples = model.sample(n_show * n_show, device=dev).cpu()
        save_grid(out / f"{name}_samples.png", samples, f"{name}: samples from the prior", nrow=n_show)
        order = torch.argsort(kl_dim, descending=True)
        values = torch.linspace(-float(ec.traversal_range), float(ec.traversal_range), n_show + 1)
        base = mu[:1].to(dev)
        rows = [model.latent_traversal(z=base, dim=int(d), values=values)[0].cpu() for d in order]
        save_grid(out / f"{name}_traversals.png", torch.stack(rows),
                  f"{name}: one row per latent dim, by KL: "
                  + ", ".join(f"z{int(d)}={float(kl_dim[d]):.2f}" for d in order))
    if factors is not None:
        metrics["beta_vae_higher_mig"] = metrics["beta_vae"]["mig"] > metrics["vae"]["mig"]
    metrics["models"] = save_models(out, **models)
    save_curves(out / "training_curves.png", histories)
    return metrics
