"""The judge of generated images: a small classifier trained on the real training
images. Its pooled features give Frechet distances (as FID uses Inception's), its
predictions the class accuracy of class-conditional samples. Shared by the ``gans``
and ``diffusion`` experiments so both are scored by the same yardstick."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from voiceconv.images.data.sources import ImageSets
from voiceconv.images.experiments.common import loop_of, pixel_std, save_grid, take, timed
from voiceconv.images.loops import History, SmallClassifier, batched, fit_classifier
from voiceconv.images.metrics import accuracy, frechet_distance


@dataclass
class Judge:
    """A trained (or, with one class, a fixed random) classifier and the real test
    images' features and statistics."""

    clf: SmallClassifier
    real_features: torch.Tensor
    device: str
    num_classes: int
    report: dict[str, Any]
    history: History

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return batched(self.clf.features, x, device=self.device)

    def score(self, fakes: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        """FD to the real test images, pixel diversity, predicted-class histogram and,
        for class-conditional samples, accuracy and within-class diversity."""
        res: dict[str, Any] = {"fd": frechet_distance(self.real_features, self.features(fakes)),
                               "pixel_std": pixel_std(fakes)}
        pred = batched(self.clf, fakes, device=self.device).argmax(1)
        res["predicted_class_histogram"] = np.bincount(pred.numpy(), minlength=self.num_classes).tolist()
        if labels is not None:
            res["conditional_accuracy"] = accuracy(pred, labels)
            res["within_class_pixel_std"] = pixel_std(fakes, labels)
        return res


def train_judge(cfg: DictConfig, sets: ImageSets, out: Path) -> Judge:
    """Train the judge on ``sets.train`` (labels last); with a single class it stays at
    its random initialisation (random-feature Frechet distance, weaker but defined)."""
    dev, w = str(cfg.device), int(cfg.size.width)
    real_a = take(sets.test)
    half = len(real_a[0]) // 2
    torch.manual_seed(int(cfg.seed))
    clf = SmallClassifier(sets.image_shape[0], max(2, sets.num_classes), width=w)
    hist: History = {}
    secs = 0.0
    if sets.num_classes > 1:
        hist, secs = timed(lambda: fit_classifier(clf, sets.train, loop_of(cfg, "classifier"), label_index=-1))
    clf.eval()
    x, y = real_a[0], real_a[-1]
    feats = batched(clf.features, x, device=dev)
    report: dict[str, Any] = {
        "trained": sets.num_classes > 1,
        "real_test_accuracy": accuracy(batched(clf, x, device=dev), y) if sets.num_classes > 1 else None,
        "fd_real_half_vs_half": frechet_distance(feats[:half], feats[half:]) if half > 1 else None,
        "train_seconds": round(secs, 1),
        "real_pixel_std": pixel_std(x),
        "real_within_class_pixel_std": pixel_std(x, y),
    }
    n_show = int(cfg.size.n_show)
    save_grid(out / "real_samples.png", x[: n_show * n_show], "real test images", nrow=n_show)
    return Judge(clf, feats, dev, max(2, sets.num_classes), report, hist)
