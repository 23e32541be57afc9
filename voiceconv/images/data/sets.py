"""Task-shaped image sets built from :mod:`voiceconv.images.data.shapes`.

Each set is a deterministic function of ``(spec, length, seed, ...)`` and knows
its ground truth, which is what makes the image recipes measurable:

* :class:`UnpairedShapes` - two domains for CycleGAN. Domain A is filled shapes,
  domain B the *same kind* of factors rendered as outlines (optionally with the
  palette rotated). The two sides of an item come from independent factor draws,
  so nothing pairs them; but the true A->B translation of any A image is known
  (:meth:`DomainPair.translate`).
* :class:`PairedShapes` - the pix2pix version: input A-render and target
  B-render of the *same* factors.
* :class:`BiasedShapes` - classification of the shape where a nuisance
  attribute (colour, or a horizontal position band) agrees with the label for a
  fraction ``bias`` of the training items; the test split is balanced. Items
  whose nuisance disagrees with the label's majority value are the minority
  (bias-conflicting) group and are flagged explicitly.
* :func:`outlier_split` - in-distribution shapes (one shape held out) vs an
  out-of-distribution set (the held-out shape, or uniform noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from voiceconv.errors import ConfigError
from voiceconv.images.data.shapes import (
    SHAPES,
    STYLES,
    NoiseImages,
    ShapesDataset,
    ShapesSpec,
)

NUISANCES: tuple[str, ...] = ("colour", "position")


@dataclass(frozen=True)
class DomainPair:
    """How domains A and B render the same factors.

    Defaults: A = filled shape, B = its ``outline`` in the same colour.
    ``colour_shift_b`` additionally rotates B's palette (RGB only is meaningful).
    """

    style_a: str = "filled"
    style_b: str = "outline"
    colour_shift_b: int = 0

    def __post_init__(self) -> None:
        for s in (self.style_a, self.style_b):
            if s not in STYLES:
                raise ConfigError(f"DomainPair: unknown style {s!r} (expected one of {STYLES})")
        if self.style_a == self.style_b and self.colour_shift_b == 0:
            raise ConfigError("DomainPair: domains A and B render identically")

    def render(self, spec: ShapesSpec, factors: np.ndarray, domain: str) -> np.ndarray:
        """Render ``factors`` in ``domain`` ("a" or "b")."""
        if domain == "a":
            return spec.render(factors, self.style_a, 0)
        if domain == "b":
            return spec.render(factors, self.style_b, self.colour_shift_b)
        raise ConfigError(f"unknown domain {domain!r} (expected 'a' or 'b')")

    def translate(self, spec: ShapesSpec, factors: np.ndarray, direction: str = "a2b") -> np.ndarray:
        """The ground-truth translation of the images of ``factors``: their render
        in the target domain of ``direction`` ("a2b" or "b2a")."""
        if direction not in ("a2b", "b2a"):
            raise ConfigError(f"unknown direction {direction!r} (expected 'a2b' or 'b2a')")
        return self.render(spec, factors, direction[-1])


class UnpairedShapes(Dataset):
    """Two-domain unpaired set: item ``i`` is ``(image_a, image_b)``, rendered from
    *independent* factor draws ``factors_a[i]`` and ``factors_b[i]``."""

    def __init__(
        self, spec: ShapesSpec, length: int, seed: int = 0, domains: DomainPair | None = None
    ) -> None:
        if length < 1:
            raise ConfigError(f"UnpairedShapes: length must be >= 1, got {length}")
        self.spec = spec
        self.domains = domains or DomainPair()
        rng = np.random.default_rng(seed)
        self.factors_a = spec.sample_factors(length, rng)
        self.factors_b = spec.sample_factors(length, rng)

    def __len__(self) -> int:
        return len(self.factors_a)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.get_batch([index])
        return a[0], b[0]

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images_a, images_b)``, each ``(B, C, H, W)``."""
        idx = np.asarray(indices, dtype=np.int64)
        a = self.domains.render(self.spec, self.factors_a[idx], "a")
        b = self.domains.render(self.spec, self.factors_b[idx], "b")
        return torch.from_numpy(a), torch.from_numpy(b)


class PairedShapes(Dataset):
    """Paired set for pix2pix: item ``i`` is ``(A-render, B-render)`` of ``factors[i]``."""

    def __init__(
        self, spec: ShapesSpec, length: int, seed: int = 0, domains: DomainPair | None = None
    ) -> None:
        if length < 1:
            raise ConfigError(f"PairedShapes: length must be >= 1, got {length}")
        self.spec = spec
        self.domains = domains or DomainPair()
        self.factors = spec.sample_factors(length, np.random.default_rng(seed))

    def __len__(self) -> int:
        return len(self.factors)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.get_batch([index])
        return a[0], b[0]

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(B, C, H, W)``."""
        f = self.factors[np.asarray(indices, dtype=np.int64)]
        a = self.domains.render(self.spec, f, "a")
        b = self.domains.render(self.spec, f, "b")
        return torch.from_numpy(a), torch.from_numpy(b)


class BiasedShapes(Dataset):
    """Shape classification with a nuisance attribute correlated with the label.

    ``classes`` are shape indices (default: all five); the label is the position of
    the item's shape in ``classes``. The nuisance is ``"colour"`` (colour index) or
    ``"position"`` (horizontal band of the centre: the ``n_positions`` x-values are
    cut into ``len(classes)`` bands). Class ``k``'s majority nuisance value is
    ``k``. In the ``"train"`` split a fraction ``bias`` of items take their class's
    majority value and the rest one of the other values uniformly; in ``"test"``
    the nuisance is uniform over all values (balanced). ``minority[i]`` is True when
    item ``i``'s nuisance differs from its class's majority value.

    Item ``i`` is ``(image, label, minority)``.
    """

    def __init__(
        self,
        spec: ShapesSpec,
        length: int,
        seed: int = 0,
        split: str = "train",
        bias: float = 0.95,
        nuisance: str = "colour",
        classes: Sequence[int] | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"BiasedShapes: split must be 'train' or 'test', got {split!r}")
        if nuisance not in NUISANCES:
            raise ConfigError(f"BiasedShapes: nuisance must be one of {NUISANCES}, got {nuisance!r}")
        if not 0.0 <= bias <= 1.0:
            raise ConfigError(f"BiasedShapes: bias must be in [0, 1], got {bias}")
        if length < 1:
            raise ConfigError(f"BiasedShapes: length must be >= 1, got {length}")
        self.classes = tuple(int(c) for c in (classes if classes is not None else range(len(SHAPES))))
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"BiasedShapes: need >= 2 distinct classes, got {self.classes}")
        if min(self.classes) < 0 or max(self.classes) >= len(SHAPES):
            raise ConfigError(f"BiasedShapes: class indices must be in [0, {len(SHAPES)})")
        n_cls = len(self.classes)
        n_values = spec.n_colours if nuisance == "colour" else n_cls
        if nuisance == "colour" and spec.n_colours < n_cls:
            raise ConfigError(
                f"BiasedShapes: colour nuisance needs n_colours >= {n_cls} classes, got {spec.n_colours}"
            )
        if nuisance == "position" and spec.n_positions < n_cls:
            raise ConfigError(
                f"BiasedShapes: position nuisance needs n_positions >= {n_cls}, got {spec.n_positions}"
            )
        self.spec, self.split, self.bias, self.nuisance = spec, split, bias, nuisance
        self.n_nuisance_values = n_values
        rng = np.random.default_rng(seed)
        factors = spec.sample_factors(length, rng, {"shape": self.classes})
        labels = np.asarray([self.classes.index(int(s)) for s in factors[:, 0]], dtype=np.int64)
        if split == "train":
            agree = rng.random(length) < bias
            # One of the other n_values - 1 values, uniformly.
            other = (labels + 1 + rng.integers(0, n_values - 1, size=length)) % n_values
            value = np.where(agree, labels, other)
        else:
            value = rng.integers(0, n_values, size=length)
        if nuisance == "colour":
            factors[:, 5] = value
        else:
            factors[:, 3] = self._position_in_band(value, rng)
        self.factors = factors
        self.labels = labels
        self.nuisance_values = value.astype(np.int64)
        self.minority = self.nuisance_values != self.labels

    def _position_in_band(self, band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly chosen x index inside horizontal band ``band``."""
        edges = np.linspace(0, self.spec.n_positions, len(self.classes) + 1).round().astype(np.int64)
        lo, hi = edges[band], edges[band + 1]
        return lo + (rng.random(len(band)) * (hi - lo)).astype(np.int64)

    def nuisance_of(self, factors: np.ndarray) -> np.ndarray:
        """The nuisance value of factor rows (colour index or x band)."""
        f = np.atleast_2d(factors)
        if self.nuisance == "colour":
            return f[:, 5].copy()
        edges = np.linspace(0, self.spec.n_positions, len(self.classes) + 1).round()
        return (np.searchsorted(edges, f[:, 3], side="right") - 1).astype(np.int64)

    @property
    def minority_fraction(self) -> float:
        """Fraction of items in the minority (bias-conflicting) group."""
        return float(self.minority.mean())

    def __len__(self) -> int:
        return len(self.factors)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        img = self.spec.render(self.factors[index])
        return torch.from_numpy(img), int(self.labels[index]), bool(self.minority[index])

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, ...]:
        """``(images (B, C, H, W), labels (B,), minority (B,) bool)``."""
        idx = np.asarray(indices, dtype=np.int64)
        img = self.spec.render(self.factors[idx])
        return (
            torch.from_numpy(img),
            torch.from_numpy(self.labels[idx].copy()),
            torch.from_numpy(self.minority[idx].copy()),
        )


@dataclass
class OutlierSplit:
    """In-distribution train/test sets and an out-of-distribution test set."""

    train: ShapesDataset
    test_in: ShapesDataset
    test_out: Dataset
    kind: str


def outlier_split(
    spec: ShapesSpec,
    n_train: int,
    n_test: int,
    seed: int = 0,
    held_out_shape: int = SHAPES.index("heart"),
    kind: str = "shape",
) -> OutlierSplit:
    """Shapes without ``held_out_shape`` for training and in-distribution testing;
    out-of-distribution test items are the held-out shape (``kind="shape"``) or
    uniform noise images (``kind="noise"``). The three sets use distinct seeds."""
    if not 0 <= held_out_shape < len(SHAPES):
        raise ConfigError(f"outlier_split: held_out_shape must be in [0, {len(SHAPES)})")
    if kind not in ("shape", "noise"):
        raise ConfigError(f"outlier_split: kind must be 'shape' or 'noise', got {kind!r}")
    kept = {"shape": [k for k in range(len(SHAPES)) if k != held_out_shape]}
    train = ShapesDataset(spec, n_train, seed=seed * 3 + 0, allowed=kept)
    test_in = ShapesDataset(spec, n_test, seed=seed * 3 + 1, allowed=kept)
    if kind == "shape":
        test_out: Dataset = ShapesDataset(
            spec, n_test, seed=seed * 3 + 2, allowed={"shape": [held_out_shape]}
        )
    else:
        test_out = NoiseImages(spec.image_shape, n_test, seed=seed * 3 + 2)
    return OutlierSplit(train=train, test_in=test_in, test_out=test_out, kind=kind)
