"""``debias``: a plain CNN vs a DB-VAE (Amini et al. 2019) with the same encoder.

Shapes: a binary shape task whose training colour follows the label 95% of the time;
accuracy on the minority (colour-conflicting) group of a colour-balanced test set.
A folder or MNIST: the two classes named in ``debias.classes``, whose bias is
unknown, so per-class and overall test accuracies are reported (no minority group).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from voiceconv.errors import ConfigError
from voiceconv.images.data import SHAPES, BiasedShapes
from voiceconv.images.data.sources import TensorImages
from voiceconv.images.experiments.common import (
    data_of,
    final,
    hidden_of,
    loop_of,
    save_curves,
    save_grid,
    save_models,
    spec_of,
    take,
    timed,
)
from voiceconv.images.loops import History, batched, fit_classifier, fit_dbvae
from voiceconv.images.metrics import group_accuracy, per_class_accuracy
from voiceconv.models.dbvae import DBVAE
from voiceconv.models.encoders import ConvEncoder


def _group_report(logits: torch.Tensor, labels: torch.Tensor, minority: torch.Tensor | None) -> dict[str, Any]:
    per_class = per_class_accuracy(logits.reshape(-1), labels)
    rep: dict[str, Any] = {f"class{c}": a for c, a in per_class.items()}
    if minority is None:
        rep["overall"] = float(((logits.reshape(-1) > 0).long() == labels).float().mean())
        return rep
    g = group_accuracy(logits.reshape(-1), labels, minority)
    rep.update(overall=g["overall"], minority=g.get("True"), majority=g.get("False"))
    pred = (logits.reshape(-1) > 0).long()
    for cls in (0, 1):
        sel = (labels == cls) & minority
        rep[f"minority_class{cls}"] = float((pred[sel] == cls).float().mean()) if bool(sel.any()) else None
    return rep


def _binary(data: Dataset, classes: list[int]) -> TensorImages:
    """Items of the two ``classes`` with labels 0 / 1 (label last, as the loops expect)."""
    batch = take(data)
    x, y = batch[0], batch[-1]
    keep = (y == classes[0]) | (y == classes[1])
    return TensorImages(x[keep], (y[keep] == classes[1]).long())


def exp_debias(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Plain classifier vs DB-VAE (same encoder) on a binary task."""
    ec = cfg.debias
    seed, dev, shapes = int(cfg.seed), str(cfg.device), str(cfg.data.name) == "shapes"
    spec = spec_of(cfg)
    if shapes:
        names = list(SHAPES)
        classes = [names.index(str(s)) if not str(s).isdigit() else int(s) for s in ec.classes]
    else:
        sets = data_of(cfg, spec)
        names = sets.classes
        classes = [names.index(str(s)) if str(s) in names else -1 for s in ec.classes]
    if len(classes) != 2 or min(classes) < 0:
        raise ConfigError(f"debias: the DB-VAE is binary; give two of the classes {names}, got {list(ec.classes)}")
    metrics: dict[str, Any] = {"classes": [names[k] for k in classes]}
    if shapes:
        kw = dict(bias=float(ec.bias), nuisance=str(ec.nuisance), classes=classes)
        train: Dataset = BiasedShapes(spec, int(cfg.size.n_train), seed=seed, split="train", **kw)
        test = BiasedShapes(spec, int(cfg.size.n_eval), seed=seed + 1000, split="test", **kw)
        x_test, y_test, m_test = take(test)
        metrics.update(train_minority_fraction=train.minority_fraction,
                       test_minority_fraction=test.minority_fraction)
        label_index = 1
    else:
        train, test = _binary(sets.train, classes), _binary(sets.test, classes)
        x_test, y_test, m_test = test.images, test.labels, None
        label_index = -1
    histories: dict[str, History] = {}
    hidden = hidden_of(cfg)
    ch, size = x_test.shape[1], x_test.shape[-1]

    torch.manual_seed(seed)
    plain = ConvEncoder(ch, size, hidden, out_features=1)
    hist, secs = timed(lambda: fit_classifier(plain, train, loop_of(cfg, "dbvae"), label_index=label_index))
    histories["plain"] = hist
    plain.eval()
    metrics["plain"] = {**_group_report(batched(plain, x_test, device=dev), y_test, m_test),
                        "train_seconds": round(secs, 1)}

    torch.manual_seed(seed)
    dbvae = DBVAE(ch, size, int(cfg.size.latent_dim), hidden, kl_weight=float(ec.kl_weight))
    hist, secs = timed(lambda: fit_dbvae(dbvae, train, loop_of(cfg, "dbvae"), label_index=label_index,
                                         resample_every=int(cfg.size.resample_every), debias=str(ec.debias),
                                         bins=int(ec.bins), smoothing=float(ec.smoothing),
                                         combine=str(ec.combine)))
    histories["dbvae"] = hist
    dbvae.eval()
    logits = batched(lambda x: dbvae.encode_with_logit(x)[0], x_test, device=dev)
    metrics["dbvae"] = {**_group_report(logits, y_test, m_test), "final_train": final(hist),
                        "train_seconds": round(secs, 1)}
    if m_test is not None:
        metrics["dbvae_minority_gain"] = metrics["dbvae"]["minority"] - metrics["plain"]["minority"]
    n_show = int(cfg.size.n_show)
    save_grid(out / "train_examples.png", take(train, n_show * n_show)[0],
              "training set" + (" (colour follows the class 95% of the time)" if shapes else ""), nrow=n_show)
    if m_test is not None:
        minority_idx = torch.nonzero(m_test).flatten()[: n_show * n_show]
        save_grid(out / "test_minority_examples.png", x_test[minority_idx],
                  "test items of the minority (colour-conflicting) group", nrow=n_show)
    metrics["models"] = save_models(out, plain=plain, dbvae=dbvae)
    save_curves(out / "training_curves.png", histories)
    return metrics
