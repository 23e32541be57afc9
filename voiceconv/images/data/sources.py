"""One way for every image experiment to get its data: procedural shapes, a user's
folder (a folder per class, or one unlabelled folder) or MNIST idx files.

:func:`image_sets` returns an :class:`ImageSets`: train and test sets whose items end
with the class label (``label_index=-1`` in the loops), the class names and the image
shape. Real images are decoded once, resized to the configured size and kept in
memory as a :class:`TensorImages` (fast random batches for the CPU loops).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from voiceconv.errors import ConfigError, CorpusError
from voiceconv.images.data.folders import MNIST, ImageFolder
from voiceconv.images.data.shapes import SHAPES, ShapesDataset, ShapesSpec

SOURCES: tuple[str, ...] = ("shapes", "folder", "mnist")


class TensorImages(Dataset):
    """Images ``(N, C, H, W)`` in [0, 1] with labels ``(N,)``; item ``i`` is
    ``(image, label)`` and :meth:`get_batch` indexes both at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, names: Sequence[str] | None = None) -> None:
        if images.dim() != 4 or len(images) != len(labels):
            raise ConfigError(f"TensorImages: need (N, C, H, W) images and N labels, got "
                              f"{tuple(images.shape)} and {tuple(labels.shape)}")
        self.images, self.labels = images.float(), labels.long()
        self.names = list(names) if names is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, C, H, W), labels (B,))``."""
        t = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return self.images[t], self.labels[t]

    def select(self, mask: torch.Tensor | np.ndarray) -> TensorImages:
        """The items where ``mask`` is true (names follow)."""
        m = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        names = None if self.names is None else [n for n, k in zip(self.names, m.tolist(), strict=True) if k]
        return TensorImages(self.images[m], self.labels[m], names)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resize ``(N, C, H, W)`` to ``size x size`` (no-op when already that size)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="area")


def read_folder(root: str | os.PathLike[str], size: int, channels: int) -> tuple[TensorImages, list[str]]:
    """Decode every image of an :class:`ImageFolder` at ``size`` with ``channels``."""
    folder = ImageFolder(root, size=size, channels=channels)
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    names = [f"{folder.classes[lab]}/{p.name}" for p, lab in folder.samples]
    return TensorImages(images, torch.from_numpy(folder.labels), names), list(folder.classes)


def read_mnist(root: str | os.PathLike[str], split: str, size: int, channels: int) -> TensorImages:
    """MNIST ``split`` padded to 32x32 (the digits stay 28 px wide, as LeNet-5 did),
    then area-resized to ``size``; grey, or the grey level repeated for 3 channels."""
    data = MNIST(root, split, pad_to=32)
    images, labels = data.get_batch(np.arange(len(data)))
    images = resize_images(images, size)
    return TensorImages(images.repeat(1, channels, 1, 1), labels)


def _take(data: TensorImages, n: int, rng: np.random.Generator) -> TensorImages:
    if n >= len(data):
        return data
    idx = np.sort(rng.choice(len(data), size=n, replace=False))
    return data.select(np.isin(np.arange(len(data)), idx))


def split_train_test(data: TensorImages, test_fraction: float, seed: int) -> tuple[TensorImages, TensorImages]:
    """A random ``test_fraction`` of the items (at least one) for testing, the rest for training."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(data) < 2:
        raise CorpusError(None, f"need at least two images to split into train and test, got {len(data)}")
    n_test = min(len(data) - 1, max(1, round(test_fraction * len(data))))
    perm = np.random.default_rng(seed).permutation(len(data))
    is_test = np.zeros(len(data), dtype=bool)
    is_test[perm[:n_test]] = True
    return data.select(~is_test), data.select(is_test)


@dataclass
class ImageSets:
    """Train and test sets (items end with the label), class names, image shape, and
    the source kind (``shapes`` sets also carry their factors)."""

    train: Dataset
    test: Dataset
    classes: list[str]
    image_shape: tuple[int, int, int]
    kind: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def image_sets(
    kind: str,
    *,
    spec: ShapesSpec,
    n_train: int,
    n_test: int,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    channels: int | None = None,
    test_fraction: float = 0.1,
) -> ImageSets:
    """The data of one experiment run.

    ``shapes``: ``ShapesDataset(spec)`` with ``n_train`` / ``n_test`` items (seeds
    ``seed`` and ``seed + 1000``). ``folder``: the images under ``root`` (a folder per
    class, or one unlabelled folder), split randomly into train and test
    (``test_fraction``). ``mnist``: the idx files in ``root`` (train and t10k splits).
    Real images are resized to ``spec.image_size`` with ``channels`` (default
    ``spec.channels``) and capped at ``n_train`` / ``n_test`` items.
    """
    size, ch = spec.image_size, channels or spec.channels
    if kind == "shapes":
        return ImageSets(ShapesDataset(spec, n_train, seed=seed), ShapesDataset(spec, n_test, seed=seed + 1000),
                         list(SHAPES), spec.image_shape, kind)
    if kind not in SOURCES:
        raise ConfigError(f"unknown data source {kind!r} (expected one of {SOURCES})")
    if root is None:
        raise ConfigError(f"data={kind} needs data.root=DIR")
    rng = np.random.default_rng(seed)
    if kind == "folder":
        every, classes = read_folder(root, size, ch)
        train, test = split_train_test(every, test_fraction, seed)
    else:
        train, test = read_mnist(root, "train", size, ch), read_mnist(root, "test", size, ch)
        classes = [str(k) for k in range(10)]
    return ImageSets(_take(train, n_train, rng), _take(test, n_test, rng), classes, (ch, size, size), kind)


__all__ = ["SOURCES", "ImageSets", "TensorImages", "image_sets", "read_folder", "read_mnist",
           "resize_images", "split_train_test"]
