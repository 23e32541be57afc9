"""``translation``: pix2pix (paired) and CycleGAN (unpaired) between two image domains.

Shapes: filled shapes (A) <-> their outlines (B), whose true translation is known.
MNIST: digits (A) <-> the same digits inverted (B = 1 - A), also known. A folder: the
first two class folders are A and B; when both hold the same file names they are
pairs (truth known, pix2pix trained), otherwise only the CycleGAN is trained and
scored by cycle consistency. Errors are reported next to the identity (output =
input) and blank (all-black) baselines, with the foreground IoU, on which a blank
output scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from voiceconv.errors import ConfigError
from voiceconv.images.data import DomainPair, PairedShapes, UnpairedShapes
from voiceconv.images.data.sources import TensorImages, read_folder, split_train_test
from voiceconv.images.experiments.common import (
    data_of,
    final,
    loop_of,
    save_curves,
    save_grid,
    save_models,
    spec_of,
    take,
    timed,
)
from voiceconv.images.loops import History, batched, fit_cyclegan, fit_pix2pix, to_signed, to_unit
from voiceconv.images.metrics import foreground_iou
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.models.gan import define_D, define_G
from voiceconv.models.pix2pix import Pix2Pix


class TensorPairs(Dataset):
    """Item ``i`` is ``(a[i], b[order[i]])``: pairs when ``order`` is the identity,
    unpaired draws when it is a random permutation."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, order: np.ndarray | None = None) -> None:
        n = max(len(a), len(b))
        self.a, self.b = a, b
        self.order = np.arange(n) if order is None else np.asarray(order)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a[i % len(self.a)], self.b[int(self.order[i]) % len(self.b)]

    def get_batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64)
        ia = torch.from_numpy(idx % len(self.a))
        ib = torch.from_numpy(self.order[idx] % len(self.b))
        return self.a[ia], self.b[ib]


@dataclass
class TranslationData:
    """Training sets and test images; ``test_b`` is the truth of ``test_a``'s A->B
    translation (and ``test_a`` of ``test_b``'s B->A) when ``paired_test``."""

    paired: Dataset | None
    unpaired: Dataset
    test_a: torch.Tensor
    test_b: torch.Tensor
    paired_test: bool
    channels: int


def _domains_from_labels(data: TensorImages) -> tuple[TensorImages, TensorImages]:
    if int(data.labels.max()) < 1:
        raise ConfigError("translation on a folder needs two class folders (domain A, domain B)")
    return data.select(data.labels == 0), data.select(data.labels == 1)


def _stem(name: str) -> str:
    return name.split("/", 1)[-1].rsplit(".", 1)[0]


def _pair_by_name(a: TensorImages, b: TensorImages) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Images of A and B with the same file stem, in that order; None if there are none."""
    if a.names is None or b.names is None:
        return None
    index_b = {_stem(n): i for i, n in enumerate(b.names)}
    common = [(i, index_b[_stem(n)]) for i, n in enumerate(a.names) if _stem(n) in index_b]
    if not common:
        return None
    ia, ib = (torch.tensor(v) for v in zip(*common, strict=True))
    return a.images[ia], b.images[ib]


def translation_data(cfg: DictConfig) -> TranslationData:
    """The two domains of ``cfg.data`` (see the module docstring)."""
    seed = int(cfg.seed)
    rng = np.random.default_rng(seed + 17)
    if str(cfg.data.name) == "shapes":
        spec = spec_of(cfg)
        ec = cfg.translation
        domains = DomainPair("filled", str(ec.b_style), int(ec.b_colour_shift))
        test_a, test_b = take(PairedShapes(spec, int(cfg.size.n_eval), seed=seed + 1000, domains=domains))
        return TranslationData(PairedShapes(spec, int(cfg.size.n_train), seed=seed, domains=domains),
                               UnpairedShapes(spec, int(cfg.size.n_train), seed=seed, domains=domains),
                               test_a, test_b, True, spec.channels)
    if str(cfg.data.name) == "mnist":  # B = the inverted digit: truth known
        sets = data_of(cfg)
        train, test = sets.train, sets.test
        assert isinstance(train, TensorImages) and isinstance(test, TensorImages)
        a, b = train.images, 1.0 - train.images
        return TranslationData(TensorPairs(a, b), TensorPairs(a, b, rng.permutation(len(a))),
                               test.images, 1.0 - test.images, True, sets.image_shape[0])
    ch = int(cfg.data.channels) if cfg.data.get("channels") is not None else int(cfg.shapes.channels)
    every, _ = read_folder(str(cfg.data.root), int(cfg.size.image_size), ch)
    frac = float(cfg.data.get("test_fraction", 0.1))
    dom_a, dom_b = _domains_from_labels(every)
    pairs = _pair_by_name(dom_a, dom_b)
    if pairs is None:  # unpaired folders: split each domain on its own, no truth
        (tr_a, te_a), (tr_b, te_b) = split_train_test(dom_a, frac, seed), split_train_test(dom_b, frac, seed + 1)
        n, m = max(len(tr_a), len(tr_b)), min(len(te_a), len(te_b))
        return TranslationData(None, TensorPairs(tr_a.images, tr_b.images, rng.permutation(n)),
                               te_a.images[:m], te_b.images[:m], False, ch)
    both = TensorImages(torch.cat(pairs, 1), torch.zeros(len(pairs[0])))  # split pairs together
    train, test = split_train_test(both, frac, seed)
    tr_a, tr_b = train.images[:, :ch], train.images[:, ch:]
    return TranslationData(TensorPairs(tr_a, tr_b), TensorPairs(tr_a, tr_b, rng.permutation(len(tr_a))),
                           test.images[:, :ch], test.images[:, ch:], True, ch)


def translation_errors(pred: torch.Tensor, truth: torch.Tensor, source: torch.Tensor,
                       threshold: float = 0.5) -> dict[str, float]:
    """L1 / MSE / foreground IoU of ``pred`` against the true translation, next to two
    baselines that need no training: the input itself (identity) and an all-black image
    (blank; strong in L1 on sparse images, 0 in IoU)."""
    blank = torch.zeros_like(truth)
    out: dict[str, float] = {}
    for name, x in (("", pred), ("identity_", source), ("blank_", blank)):
        out[f"{name}l1"] = float((x - truth).abs().mean())
        out[f"{name}mse"] = float(((x - truth) ** 2).mean())
        out[f"{name}iou"] = foreground_iou(x, truth, threshold)
    out["best_baseline_l1"] = min(out["identity_l1"], out["blank_l1"])
    return out


def build_cyclegan(cfg: DictConfig, channels: int) -> CycleGAN:
    """ResNet generators and PatchGAN discriminators through ``define_G``/``define_D``
    (so they get the papers' N(0, 0.02) initialisation). ``translation.cyclegan_downsampling``
    sets the generator's stride-2 stages (the papers' 2 at 256x256; at 32x32 two stages
    leave an 8x8 middle from which a one-pixel outline cannot be redrawn, and the
    generators hid the input in speckles instead)."""
    ec, w, size = cfg.translation, int(cfg.size.width), int(cfg.size.image_size)
    n_down = int(ec.get("cyclegan_downsampling", 2))
    if n_down < 0 or size % 2**n_down:
        raise ConfigError(f"translation.cyclegan_downsampling={n_down}: need a count >= 0 whose 2**n "
                          f"divides image size {size}")

    def gen() -> Any:
        return define_G("resnet", in_channels=channels, out_channels=channels, base_channels=w,
                        n_blocks=int(cfg.size.resnet_blocks), n_downsampling=n_down, norm=str(ec.cyclegan_norm))

    def disc() -> Any:
        return define_D("patch", in_channels=channels, base_channels=w, n_layers=2 if size <= 32 else 3)

    return CycleGAN(gen(), gen(), disc(), disc(), gan_mode=str(ec.cyclegan_gan_mode),
                    lambda_cycle=float(ec.lambda_cycle), lambda_identity=float(ec.lambda_identity),
                    pool_size=int(ec.pool_size))


def exp_translation(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """pix2pix on pairs (when there are pairs) and CycleGAN on unpaired sets."""
    ec = cfg.translation
    seed, dev, size = int(cfg.seed), str(cfg.device), int(cfg.size.image_size)
    w, n_show, thr = int(cfg.size.width), int(cfg.size.n_show), float(ec.iou_threshold)
    data = translation_data(cfg)
    test_a, test_b, c = data.test_a, data.test_b, data.channels
    metrics: dict[str, Any] = {"paired_test": data.paired_test}
    histories: dict[str, History] = {}
    models = {}

    def translate(fn: Any, x: torch.Tensor) -> torch.Tensor:
        return to_unit(batched(fn, to_signed(x), device=dev))

    if data.paired is not None:
        torch.manual_seed(seed)
        p2p = Pix2Pix(c, c, num_downs=int(math.log2(size)), base_channels=w, d_base_channels=w,
                      d_layers=2 if size <= 32 else 3, lambda_l1=float(ec.lambda_l1))
        hist, secs = timed(lambda: fit_pix2pix(p2p, data.paired, loop_of(cfg, "pix2pix")))
        histories["pix2pix"], models["pix2pix"] = hist, p2p
        p2p.eval()
        pred = translate(p2p.translate, test_a)
        metrics["pix2pix"] = {"a2b": translation_errors(pred, test_b, test_a, thr), "final_train": final(hist),
                              "train_seconds": round(secs, 1)}
        save_grid(out / "pix2pix_examples.png", torch.stack([test_a[:n_show], pred[:n_show], test_b[:n_show]]),
                  "pix2pix: input, translation, ground truth")

    torch.manual_seed(seed)
    cyc = build_cyclegan(cfg, c)
    hist, secs = timed(lambda: fit_cyclegan(cyc, data.unpaired, loop_of(cfg, "cyclegan")))
    histories["cyclegan"], models["cyclegan"] = hist, cyc
    cyc.eval()
    a2b = translate(lambda x: cyc.convert(x, "a2b"), test_a)
    b2a = translate(lambda x: cyc.convert(x, "b2a"), test_b)
    aba = translate(lambda x: cyc.convert(x, "b2a"), to_unit(to_signed(a2b)))
    res: dict[str, Any] = {"cycle_l1_a": float((aba - test_a).abs().mean()), "final_train": final(hist),
                           "train_seconds": round(secs, 1)}
    if data.paired_test:
        res["a2b"] = translation_errors(a2b, test_b, test_a, thr)
        res["b2a"] = translation_errors(b2a, test_a, test_b, thr)
    metrics["cyclegan"] = res
    rows = [test_a, a2b, test_b, b2a]
    save_grid(out / "cyclegan_examples.png", torch.stack([r[:n_show] for r in rows]),
              "CycleGAN rows: A, A->B, B" + (" (truth of A->B)" if data.paired_test else "") + ", B->A")
    metrics["models"] = save_models(out, **models)
    save_curves(out / "training_curves.png", histories)
    return metrics
