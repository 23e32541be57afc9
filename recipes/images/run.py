"""Image experiments of the shared generative-model core, on procedural shapes.

    python recipes/images/run.py experiment=vae_vs_betavae [size=small|full|debug] [out_dir=DIR]

Experiments (``conf/images/experiment/``): ``vae_vs_betavae``, ``gans``,
``translation``, ``debias``, ``outliers``. Each writes PNG figures, ``config.yaml``
and ``metrics.json`` into ``out_dir`` (default ``runs/images/<experiment>``). See
``recipes/images/README.md`` for what each measures and the figures we got.

:func:`run_experiment` does the work for a composed config, so tests can call it
through Hydra's compose API without the command-line entry point.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from voiceconv.data.images import (  # noqa: E402
    FACTOR_NAMES,
    SHAPES,
    BiasedShapes,
    DomainPair,
    NoiseImages,
    PairedShapes,
    ShapesDataset,
    ShapesSpec,
    UnpairedShapes,
    outlier_split,
)
from voiceconv.errors import ConfigError  # noqa: E402
from voiceconv.evaluation.image_metrics import (  # noqa: E402
    accuracy,
    auroc,
    frechet_distance,
    group_accuracy,
    mig,
)
from voiceconv.models.blocks import PatchDiscriminator  # noqa: E402
from voiceconv.models.cgan import ConditionalGAN  # noqa: E402
from voiceconv.models.cyclegan import CycleGAN, ResnetGenerator  # noqa: E402
from voiceconv.models.dbvae import DBVAE  # noqa: E402
from voiceconv.models.encoders import ConvEncoder  # noqa: E402
from voiceconv.models.gan import GAN  # noqa: E402
from voiceconv.models.latent_tools import image_grid, kl_divergence  # noqa: E402
from voiceconv.models.pix2pix import Pix2Pix  # noqa: E402
from voiceconv.models.progressive import ProgressiveGAN  # noqa: E402
from voiceconv.models.vae import VAE, BetaVAE  # noqa: E402
from voiceconv.training.image_loops import (  # noqa: E402
    History,
    LoopConfig,
    SmallClassifier,
    batched,
    fit_cgan,
    fit_classifier,
    fit_cyclegan,
    fit_dbvae,
    fit_gan,
    fit_pix2pix,
    fit_progressive,
    fit_vae,
    get_batch,
    to_signed,
    to_unit,
)
from voiceconv.utils.atomic import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf" / "images")

# ------------------------------------------------------------------ shared helpers


def _spec(cfg: DictConfig) -> ShapesSpec:
    return ShapesSpec.from_dict(OmegaConf.to_container(cfg.shapes, resolve=True))  # type: ignore[arg-type]


def _loop(cfg: DictConfig, kind: str, seed_offset: int = 0) -> LoopConfig:
    opt = cfg.optim[kind]
    return LoopConfig(
        steps=int(cfg.size.steps[kind]),
        batch_size=int(cfg.size.batch_size[kind]),
        lr=float(opt.lr),
        betas=tuple(float(b) for b in opt.betas),  # type: ignore[arg-type]
        device=str(cfg.device),
        seed=int(cfg.seed) + seed_offset,
        log_every=max(1, int(cfg.size.steps[kind]) // 100),
        progress=bool(cfg.progress),
        desc=kind,
    )


def _images(data: Any, n: int | None = None) -> tuple[torch.Tensor, ...]:
    """The first ``n`` items of a dataset, batched."""
    n = len(data) if n is None else min(n, len(data))
    return get_batch(data, np.arange(n))


def _hidden(cfg: DictConfig) -> tuple[int, ...]:
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _final(hist: History) -> dict[str, float]:
    return {k: v[-1] for k, v in hist.items() if v}


def _timed(fn: Callable[[], History]) -> tuple[History, float]:
    t0 = time.perf_counter()
    hist = fn()
    return hist, time.perf_counter() - t0


# ------------------------------------------------------------------ experiments


def exp_vae_vs_betavae(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Train a VAE (beta = 1) and a beta-VAE on the same data; MIG of posterior means."""
    ec = cfg.vae_vs_betavae
    spec = _spec(cfg)
    train = ShapesDataset(spec, int(cfg.size.n_train), seed=int(cfg.seed))
    test = ShapesDataset(spec, int(cfg.size.n_eval), seed=int(cfg.seed) + 1000)
    x_test = _images(test)[0]
    latent = int(cfg.size.latent_dim)
    metrics: dict[str, Any] = {"factor_sizes": dict(zip(FACTOR_NAMES, spec.factor_sizes, strict=True))}
    histories: dict[str, History] = {}
    n_show = int(cfg.size.n_show)
    for name, beta in (("vae", 1.0), ("beta_vae", float(ec.beta))):
        torch.manual_seed(int(cfg.seed))
        common = dict(in_channels=spec.channels, image_size=spec.image_size, latent_dim=latent,
                      hidden=_hidden(cfg), likelihood=str(ec.likelihood))
        model = VAE(**common) if beta == 1.0 else BetaVAE(**common, beta=beta)
        hist, secs = _timed(lambda m=model: fit_vae(m, train, _loop(cfg, "vae")))
        histories[name] = hist
        model.eval()
        mu_logvar = batched(lambda x, m=model: torch.cat(m.encode(x), 1), x_test, device=cfg.device)
        mu, logvar = mu_logvar[:, :latent], mu_logvar[:, latent:]
        kl_dim = kl_divergence(mu[:, :, None], logvar[:, :, None]).mean(0)  # (latent,)
        res = mig(mu, test.factors, n_bins=int(ec.mig_bins))
        elbo = batched(lambda x, m=model: m.elbo(x), x_test, device=cfg.device)
        metrics[name] = {
            "beta": beta,
            **res.to_dict(FACTOR_NAMES),
            "test_elbo": float(elbo.mean()),
            "kl_per_dim": [round(float(k), 4) for k in kl_dim],
            "active_dims": int((kl_dim > 0.1).sum()),
            "final_train": _final(hist),
            "train_seconds": round(secs, 1),
        }
        # figures: inputs over reconstructions, prior samples, traversals of every dim
        recon = batched(lambda x, m=model: m.reconstruct(x), x_test[:n_show], device=cfg.device)
        save_grid(out / f"{name}_reconstructions.png", torch.stack([x_test[:n_show], recon]),
                  f"{name}: test inputs (top) and reconstructions")
        torch.manual_seed(int(cfg.seed))
        samples = model.sample(n_show * n_show, device=cfg.device).cpu()
        save_grid(out / f"{name}_samples.png", samples, f"{name}: samples from the prior", nrow=n_show)
        order = torch.argsort(kl_dim, descending=True)
        values = torch.linspace(-float(ec.traversal_range), float(ec.traversal_range), n_show + 1)
        base = mu[:1].to(cfg.device)
        rows = [model.latent_traversal(z=base, dim=int(d), values=values)[0].cpu() for d in order]
        save_grid(out / f"{name}_traversals.png", torch.stack(rows),
                  f"{name}: one row per latent dim, by KL: "
                  + ", ".join(f"z{int(d)}={float(kl_dim[d]):.2f}" for d in order))
    metrics["beta_vae_higher_mig"] = metrics["beta_vae"]["mig"] > metrics["vae"]["mig"]
    save_curves(out / "training_curves.png", histories)
    return metrics


def _features(clf: SmallClassifier, x: torch.Tensor, device: str) -> torch.Tensor:
    return batched(clf.features, x, device=device)


def _pixel_std(images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Diversity of a set of images: the per-pixel standard deviation across the set,
    averaged over pixels (within each class and then over classes when ``labels`` are
    given). A collapsed generator scores far below the real data."""
    if labels is None:
        return float(images.std(0).mean())
    return float(torch.stack([images[labels == k].std(0).mean() for k in labels.unique()]).mean())


def exp_gans(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """DCGAN, progressive GAN and conditional GAN, judged by a real-data classifier."""
    ec = cfg.gans
    spec = _spec(cfg)
    seed, dev, size = int(cfg.seed), str(cfg.device), int(cfg.size.image_size)
    w, n_eval, n_show = int(cfg.size.width), int(cfg.size.n_eval), int(cfg.size.n_show)
    n_classes = len(SHAPES)
    train = ShapesDataset(spec, int(cfg.size.n_train), seed=seed)
    real_a = _images(ShapesDataset(spec, n_eval, seed=seed + 1000))
    real_b = _images(ShapesDataset(spec, n_eval, seed=seed + 2000))
    metrics: dict[str, Any] = {}
    histories: dict[str, History] = {}

    torch.manual_seed(seed)
    clf = SmallClassifier(spec.channels, n_classes, width=w)
    hist, secs = _timed(lambda: fit_classifier(clf, train, _loop(cfg, "classifier"), label_index=-1))
    histories["classifier"] = hist
    clf.eval()
    logits = batched(clf, real_a[0], device=dev)
    feats_real = _features(clf, real_a[0], dev)
    metrics["real"] = {"pixel_std": _pixel_std(real_a[0]),
                       "within_class_pixel_std": _pixel_std(real_a[0], real_a[2])}
    metrics["classifier"] = {
        "real_test_accuracy": accuracy(logits, real_a[2]),
        "fd_real_vs_real": frechet_distance(feats_real, _features(clf, real_b[0], dev)),
        "train_seconds": round(secs, 1),
    }
    save_grid(out / "real_samples.png", real_a[0][: n_show * n_show], "real images", nrow=n_show)
    latent = int(ec.latent_dim)

    def judge(name: str, fakes: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        res: dict[str, Any] = {"fd": frechet_distance(feats_real, _features(clf, fakes, dev)),
                               "pixel_std": _pixel_std(fakes)}
        pred = batched(clf, fakes, device=dev).argmax(1)
        res["predicted_class_histogram"] = np.bincount(pred.numpy(), minlength=n_classes).tolist()
        if labels is not None:
            res["conditional_accuracy"] = accuracy(pred, labels)
            res["within_class_pixel_std"] = _pixel_std(fakes, labels)
        save_grid(out / f"{name}_samples.png", fakes[: n_show * n_show], f"{name} samples", nrow=n_show)
        return res

    def sample_in_chunks(fn: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
        chunks, left = [], n
        while left > 0:
            k = min(256, left)
            chunks.append(to_unit(fn(k)).cpu())
            left -= k
        return torch.cat(chunks)

    # DCGAN
    torch.manual_seed(seed)
    dcgan = GAN(latent_dim=latent, channels=spec.channels, image_size=size, base_channels=w,
                gan_mode=str(ec.dcgan_mode))
    hist, secs = _timed(lambda: fit_gan(dcgan, train, _loop(cfg, "gan")))
    histories["dcgan"] = hist
    dcgan.eval()
    torch.manual_seed(seed + 1)
    metrics["dcgan"] = {**judge("dcgan", sample_in_chunks(dcgan.sample, n_eval)),
                        "final_train": _final(hist), "train_seconds": round(secs, 1)}

    # Progressive GAN: channels(res) = min(8 w, 32 w * 4 / res) -> 8w at 4x4, w at 32x32
    torch.manual_seed(seed)
    pgan = ProgressiveGAN(latent_dim=latent, channels=spec.channels, max_resolution=size,
                          max_channels=8 * w, channel_base=32 * w, loss=str(ec.progressive_loss))
    hist, secs = _timed(lambda: fit_progressive(pgan, train, _loop(cfg, "progressive")))
    histories["progressive"] = hist
    pgan.eval()
    torch.manual_seed(seed + 1)
    metrics["progressive"] = {**judge("progressive", sample_in_chunks(pgan.sample, n_eval)),
                              "final_train": _final(hist), "train_seconds": round(secs, 1)}

    # Conditional GAN: one class per row in the figure
    torch.manual_seed(seed)
    cgan = ConditionalGAN(num_classes=n_classes, latent_dim=latent, channels=spec.channels,
                          image_size=size, base_channels=w, gan_mode=str(ec.cgan_mode))
    hist, secs = _timed(lambda: fit_cgan(cgan, train, _loop(cfg, "gan"), label_index=-1))
    histories["cgan"] = hist
    cgan.eval()
    labels = torch.arange(n_eval) % n_classes
    torch.manual_seed(seed + 1)
    fakes = torch.cat([to_unit(cgan.sample(lab.to(dev))).cpu() for lab in labels.split(256)])
    metrics["cgan"] = {**judge("cgan", fakes, labels), "final_train": _final(hist),
                       "train_seconds": round(secs, 1)}
    rows = torch.stack([fakes[labels == k][:n_show] for k in range(n_classes)])
    save_grid(out / "cgan_by_class.png", rows, "conditional GAN, one row per class: " + ", ".join(SHAPES))
    save_curves(out / "training_curves.png", histories)
    return metrics


def _translation_errors(pred: torch.Tensor, truth: torch.Tensor, source: torch.Tensor) -> dict[str, float]:
    """L1 / MSE of ``pred`` against the true translation, next to two baselines that
    need no training: the input itself (identity) and an all-black image (blank;
    strong on these sparse images, so a translator must beat it to be useful)."""
    return {
        "l1": float((pred - truth).abs().mean()),
        "mse": float(((pred - truth) ** 2).mean()),
        "identity_l1": float((source - truth).abs().mean()),
        "identity_mse": float(((source - truth) ** 2).mean()),
        "blank_l1": float(truth.abs().mean()),
        "blank_mse": float((truth**2).mean()),
    }


def exp_translation(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """pix2pix on pairs and CycleGAN on unpaired sets; errors vs the known translation."""
    ec = cfg.translation
    spec = _spec(cfg)
    seed, dev, size = int(cfg.seed), str(cfg.device), int(cfg.size.image_size)
    w, n_show = int(cfg.size.width), int(cfg.size.n_show)
    domains = DomainPair("filled", str(ec.b_style), int(ec.b_colour_shift))
    paired = PairedShapes(spec, int(cfg.size.n_train), seed=seed, domains=domains)
    unpaired = UnpairedShapes(spec, int(cfg.size.n_train), seed=seed, domains=domains)
    test_a, test_b = _images(PairedShapes(spec, int(cfg.size.n_eval), seed=seed + 1000, domains=domains))
    metrics: dict[str, Any] = {}
    histories: dict[str, History] = {}
    c = spec.channels

    def translate(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return to_unit(batched(fn, to_signed(x), device=dev))

    torch.manual_seed(seed)
    p2p = Pix2Pix(c, c, num_downs=int(math.log2(size)), base_channels=w, d_base_channels=w,
                  d_layers=2 if size <= 32 else 3, lambda_l1=float(ec.lambda_l1))
    hist, secs = _timed(lambda: fit_pix2pix(p2p, paired, _loop(cfg, "pix2pix")))
    histories["pix2pix"] = hist
    p2p.eval()
    pred = translate(p2p.translate, test_a)
    metrics["pix2pix"] = {"a2b": _translation_errors(pred, test_b, test_a), "final_train": _final(hist),
                          "train_seconds": round(secs, 1)}
    save_grid(out / "pix2pix_examples.png", torch.stack([test_a[:n_show], pred[:n_show], test_b[:n_show]]),
              "pix2pix: input, translation, ground truth")

    torch.manual_seed(seed)
    n_blocks = int(cfg.size.resnet_blocks)
    n_down = 2 if size >= 16 else 1

    def gen() -> ResnetGenerator:
        return ResnetGenerator(c, c, base_channels=w, n_blocks=n_blocks, n_downsampling=n_down)

    def disc() -> PatchDiscriminator:
        return PatchDiscriminator(c, base_channels=w, n_layers=2 if size <= 32 else 3)

    cyc = CycleGAN(gen(), gen(), disc(), disc(), lambda_cycle=float(ec.lambda_cycle),
                   lambda_identity=float(ec.lambda_identity), pool_size=int(ec.pool_size))
    hist, secs = _timed(lambda: fit_cyclegan(cyc, unpaired, _loop(cfg, "cyclegan")))
    histories["cyclegan"] = hist
    cyc.eval()
    a2b = translate(lambda x: cyc.convert(x, "a2b"), test_a)
    b2a = translate(lambda x: cyc.convert(x, "b2a"), test_b)
    metrics["cyclegan"] = {
        "a2b": _translation_errors(a2b, test_b, test_a),
        "b2a": _translation_errors(b2a, test_a, test_b),
        "final_train": _final(hist),
        "train_seconds": round(secs, 1),
    }
    save_grid(out / "cyclegan_examples.png",
              torch.stack([test_a[:n_show], a2b[:n_show], test_b[:n_show], b2a[:n_show]]),
              "CycleGAN rows: A, A->B, B (truth of A->B), B->A")
    save_curves(out / "training_curves.png", histories)
    return metrics


def _group_report(logits: torch.Tensor, labels: torch.Tensor, minority: torch.Tensor) -> dict[str, Any]:
    g = group_accuracy(logits.reshape(-1), labels, minority)
    rep: dict[str, Any] = {"overall": g["overall"], "minority": g.get("True"), "majority": g.get("False")}
    pred = (logits.reshape(-1) > 0).long()
    for cls in (0, 1):
        sel = (labels == cls) & minority
        rep[f"minority_class{cls}"] = float((pred[sel] == cls).float().mean()) if bool(sel.any()) else None
    return rep


def exp_debias(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Plain classifier vs DB-VAE (same encoder) on a colour-biased binary shape task."""
    ec = cfg.debias
    spec = _spec(cfg)
    seed, dev = int(cfg.seed), str(cfg.device)
    classes = [SHAPES.index(str(s)) if not str(s).isdigit() else int(s) for s in ec.classes]
    if len(classes) != 2:
        raise ConfigError(f"debias: the DB-VAE is binary; give two classes, got {list(ec.classes)}")
    kw = dict(bias=float(ec.bias), nuisance=str(ec.nuisance), classes=classes)
    train = BiasedShapes(spec, int(cfg.size.n_train), seed=seed, split="train", **kw)
    test = BiasedShapes(spec, int(cfg.size.n_eval), seed=seed + 1000, split="test", **kw)
    x_test, y_test, m_test = _images(test)
    metrics: dict[str, Any] = {
        "classes": [SHAPES[k] for k in classes],
        "train_minority_fraction": train.minority_fraction,
        "test_minority_fraction": test.minority_fraction,
    }
    histories: dict[str, History] = {}
    hidden = _hidden(cfg)

    torch.manual_seed(seed)
    plain = ConvEncoder(spec.channels, spec.image_size, hidden, out_features=1)
    hist, secs = _timed(lambda: fit_classifier(plain, train, _loop(cfg, "dbvae"), label_index=1))
    histories["plain"] = hist
    plain.eval()
    metrics["plain"] = {**_group_report(batched(plain, x_test, device=dev), y_test, m_test),
                        "train_seconds": round(secs, 1)}

    torch.manual_seed(seed)
    dbvae = DBVAE(spec.channels, spec.image_size, int(cfg.size.latent_dim), hidden,
                  kl_weight=float(ec.kl_weight))
    loop = _loop(cfg, "dbvae")
    hist, secs = _timed(lambda: fit_dbvae(dbvae, train, loop, label_index=1,
                                          resample_every=int(cfg.size.resample_every),
                                          debias=str(ec.debias), bins=int(ec.bins),
                                          smoothing=float(ec.smoothing),
                                          combine=str(ec.combine)))
    histories["dbvae"] = hist
    dbvae.eval()
    logits = batched(lambda x: dbvae.encode_with_logit(x)[0], x_test, device=dev)
    metrics["dbvae"] = {**_group_report(logits, y_test, m_test), "final_train": _final(hist),
                        "train_seconds": round(secs, 1)}
    metrics["dbvae_minority_gain"] = metrics["dbvae"]["minority"] - metrics["plain"]["minority"]
    # figures: training examples (mostly bias-aligned), test minority examples
    n_show = int(cfg.size.n_show)
    save_grid(out / "train_examples.png", _images(train, n_show * n_show)[0],
              "training set (colour follows the class 95% of the time)", nrow=n_show)
    minority_idx = torch.nonzero(m_test).flatten()[: n_show * n_show]
    save_grid(out / "test_minority_examples.png", x_test[minority_idx],
              "test items of the minority (colour-conflicting) group", nrow=n_show)
    save_curves(out / "training_curves.png", histories)
    return metrics


def exp_outliers(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """VAE outlier score (negative ELBO) AUROC: held-out shape and noise vs inliers."""
    ec = cfg.outliers
    spec = _spec(cfg)
    seed, dev = int(cfg.seed), str(cfg.device)
    held = SHAPES.index(str(ec.held_out_shape))
    split = outlier_split(spec, int(cfg.size.n_train), int(cfg.size.n_eval), seed=seed,
                          held_out_shape=held, kind="shape")
    noise = NoiseImages(spec.image_shape, int(cfg.size.n_eval), seed=seed + 7)
    torch.manual_seed(seed)
    vae = VAE(spec.channels, spec.image_size, int(cfg.size.latent_dim), _hidden(cfg),
              likelihood=str(ec.likelihood))
    hist, secs = _timed(lambda: fit_vae(vae, split.train, _loop(cfg, "vae")))
    vae.eval()
    x_in, x_shape, x_noise = (_images(d)[0] for d in (split.test_in, split.test_out, noise))
    torch.manual_seed(seed + 1)
    k = int(ec.elbo_samples)
    s_in, s_shape, s_noise = (
        batched(lambda x: vae.outlier_score(x, n_samples=k), d, device=dev).numpy()
        for d in (x_in, x_shape, x_noise)
    )
    metrics: dict[str, Any] = {
        "held_out_shape": SHAPES[held],
        "auroc_held_out_shape": auroc(s_in, s_shape),
        "auroc_noise": auroc(s_in, s_noise),
        "mean_score": {"in": float(s_in.mean()), "held_out_shape": float(s_shape.mean()),
                       "noise": float(s_noise.mean())},
        "final_train": _final(hist),
        "train_seconds": round(secs, 1),
    }
    n_show = int(cfg.size.n_show)
    rec_in = batched(vae.reconstruct, x_in[:n_show], device=dev)
    rec_out = batched(vae.reconstruct, x_shape[:n_show], device=dev)
    save_grid(out / "reconstructions.png", torch.stack([x_in[:n_show], rec_in, x_shape[:n_show], rec_out]),
              f"rows: inliers, their reconstructions, held-out {SHAPES[held]}s, theirs")
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = np.histogram_bin_edges(np.concatenate([s_in, s_shape]), bins=40)
    ax.hist(s_in, bins=bins, alpha=0.6, label="in-distribution")
    ax.hist(s_shape, bins=bins, alpha=0.6, label=f"held-out {SHAPES[held]}")
    ax.set_xlabel("negative ELBO (nats)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "score_histogram.png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    save_curves(out / "training_curves.png", {"vae": hist})
    return metrics


EXPERIMENTS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {
    "vae_vs_betavae": exp_vae_vs_betavae,
    "gans": exp_gans,
    "translation": exp_translation,
    "debias": exp_debias,
    "outliers": exp_outliers,
}


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.name`` and write ``config.yaml``, the figures and ``metrics.json``
    into ``cfg.out_dir``; return the metrics."""
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
        "size": str(cfg.size.name),
        "device": str(cfg.device),
        "torch_threads": torch.get_num_threads(),
        "seed": int(cfg.seed),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        **metrics,
    }
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


@hydra.main(config_path="../../conf/images", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Command-line entry point (see the module docstring)."""
    metrics = run_experiment(cfg)
    print(f"{metrics['experiment']}: wrote {Path(str(cfg.out_dir)) / 'metrics.json'} "
          f"({metrics['wall_seconds']} s)")


if __name__ == "__main__":
    main()
