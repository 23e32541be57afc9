"""Readers for real image data already on disk (nothing is downloaded).

* :class:`ImageFolder` - ``root/<class name>/<image>.png|jpg|...``, one folder per class.
* :func:`read_idx` / :class:`MNIST` - the MNIST idx files (``*-idx3-ubyte`` images,
  ``*-idx1-ubyte`` labels), plain or ``.gz``.
* :class:`CelebA` - ``root/img_align_celeba/*.jpg`` with ``root/list_attr_celeba.txt``
  (and ``list_eval_partition.txt`` when a split is asked for).

Images are decoded with Pillow (a dependency of matplotlib, so always present; we
do not use torchvision) and returned as float ``(C, H, W)`` tensors in [0, 1].
Every layout or file problem raises :class:`~voiceconv.errors.CorpusError` naming
the file.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from voiceconv.errors import ConfigError, CorpusError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


def load_image(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    center_crop: int | None = None,
) -> np.ndarray:
    """Read one image as float32 ``(C, H, W)`` in [0, 1].

    ``channels`` 1 or 3 converts (grey / RGB; alpha is dropped); ``None`` keeps grey
    images grey and makes everything else RGB. ``center_crop`` takes a central
    square of that side first; ``size`` (side or ``(height, width)``) then resizes
    with an area filter.
    """
    path = Path(path)
    if channels not in (None, 1, 3):
        raise ConfigError(f"load_image: channels must be 1, 3 or None, got {channels}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = {1: "L", 3: "RGB"}.get(channels or 0) or ("L" if im.mode in ("1", "L", "I;16", "I") else "RGB")
            im = im.convert(mode)
    except FileNotFoundError as exc:
        raise CorpusError(path, "no such image file") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorpusError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    if center_crop is not None:
        w, h = im.size
        if center_crop > min(w, h):
            raise CorpusError(path, f"image {w}x{h} smaller than center_crop {center_crop}")
        left, top = (w - center_crop) // 2, (h - center_crop) // 2
        im = im.crop((left, top, left + center_crop, top + center_crop))
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        im = im.resize((hw[1], hw[0]), Image.Resampling.BOX)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


class ImageFolder(Dataset):
    """``root/<class>/<image>``: classes are the sub-folder names in sorted order;
    item ``i`` is ``(image, label)``. A root without class folders but with images
    in it is one unlabelled class (named after the root). Files with other suffixes
    are ignored; a root with no images is an error. Images are decoded on access."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int | tuple[int, int] | None = None,
        channels: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CorpusError(self.root, "no such image folder")
        self.size, self.channels = size, channels
        self.classes: list[str] = []
        self.samples: list[tuple[Path, int]] = []
        for sub in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = sorted(
                f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                continue
            label = len(self.classes)
            self.classes.append(sub.name)
            self.samples.extend((f, label) for f in files)
        if not self.samples:  # an unlabelled folder: the images themselves, one class
            files = sorted(
                f for f in self.root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            self.classes = [self.root.name] if files else []
            self.samples = [(f, 0) for f in files]
        if not self.samples:
            raise CorpusError(
                self.root,
                "no images (expected root/<class>/<image>.png, or images directly in root)",
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        img = load_image(path, self.size, self.channels)
        return torch.from_numpy(img), label

    @property
    def labels(self) -> np.ndarray:
        """Class index of every item."""
        return np.asarray([lab for _, lab in self.samples], dtype=np.int64)


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (the MNIST format; gzip-compressed when it ends in ``.gz``).

    Layout: two zero bytes, a type code, the number of dimensions ``d``, ``d``
    big-endian uint32 sizes, then the data in C order.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError as exc:
        raise CorpusError(path, "no such idx file") from exc
    except (OSError, EOFError) as exc:
        raise CorpusError(path, f"cannot read idx file ({type(exc).__name__}: {exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorpusError(path, "not an idx file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise CorpusError(path, "truncated idx header")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise CorpusError(
            path, f"idx payload is {len(raw) - header} bytes, header {shape} needs {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise CorpusError(root / stem, "missing MNIST file (plain or .gz)")


class MNIST(Dataset):
    """MNIST from its idx files in ``root`` (``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte``, or the ``t10k-`` pair for ``split="test"``, each
    optionally ``.gz``). Item ``i`` is ``(image (1, H, W) in [0, 1], label)``;
    ``pad_to`` zero-pads the 28x28 digits centrally (e.g. to 32 for conv nets)."""

    def __init__(self, root: str | os.PathLike[str], split: str = "train", pad_to: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise CorpusError(root, "no such MNIST folder")
        if split not in ("train", "test"):
            raise ConfigError(f"MNIST: split must be 'train' or 'test', got {split!r}")
        prefix = "train" if split == "train" else "t10k"
        img_path = _find(root, f"{prefix}-images-idx3-ubyte")
        lab_path = _find(root, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3:
            raise CorpusError(img_path, f"expected (N, H, W) images, got shape {images.shape}")
        if labels.ndim != 1:
            raise CorpusError(lab_path, f"expected (N,) labels, got shape {labels.shape}")
        if len(images) != len(labels):
            raise CorpusError(lab_path, f"{len(labels)} labels for {len(images)} images in {img_path.name}")
        h, w = images.shape[1:]
        if pad_to is not None:
            if pad_to < max(h, w):
                raise ConfigError(f"MNIST: pad_to {pad_to} smaller than the {h}x{w} images")
            top, left = (pad_to - h) // 2, (pad_to - w) // 2
            padded = np.zeros((len(images), pad_to, pad_to), dtype=images.dtype)
            padded[:, top : top + h, left : left + w] = images
            images = padded
        self.images = images
        self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.images[index].astype(np.float32) / 255.0)[None]
        return img, int(self.labels[index])

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, 1, H, W), labels (B,))``."""
        idx = np.asarray(indices, dtype=np.int64)
        img = torch.from_numpy(self.images[idx].astype(np.float32) / 255.0)[:, None]
        return img, torch.from_numpy(self.labels[idx])


class CelebA(Dataset):
    """CelebA-style folder: ``root/img_align_celeba/<name>.jpg`` and
    ``root/list_attr_celeba.txt`` (line 1: count, line 2: attribute names, then
    ``<name> v1 ... vK`` with values -1/1). Item ``i`` is ``(image, attrs)`` with
    ``attrs`` a float tensor of 0/1 for ``attributes`` (default: all).

    ``split`` (``"train"``, ``"valid"``, ``"test"``) filters with
    ``list_eval_partition.txt`` (``<name> 0|1|2``); ``None`` uses every listed image.
    Images are centre-cropped to ``center_crop`` and resized to ``size`` (the usual
    148 -> 64 recipe for the 178x218 aligned faces).
    """

    SPLITS = {"train": 0, "valid": 1, "test": 2}

    def __init__(
        self,
        root: str | os.PathLike[str],
        attributes: Sequence[str] | None = None,
        split: str | None = None,
        size: int | None = 64,
        center_crop: int | None = 148,
    ) -> None:
        self.root = Path(root)
        self.image_dir = self.root / "img_align_celeba"
        if not self.image_dir.is_dir():
            raise CorpusError(self.image_dir, "no such CelebA image folder")
        names, all_attrs, values = self._read_attributes(self.root / "list_attr_celeba.txt")
        if attributes is None:
            attributes = all_attrs
        missing = [a for a in attributes if a not in all_attrs]
        if missing:
            raise CorpusError(self.root / "list_attr_celeba.txt", f"unknown attributes {missing}")
        cols = [all_attrs.index(a) for a in attributes]
        keep = np.ones(len(names), dtype=bool)
        if split is not None:
            if split not in self.SPLITS:
                raise ConfigError(f"CelebA: split must be one of {sorted(self.SPLITS)}, got {split!r}")
            part = self._read_partition(self.root / "list_eval_partition.txt")
            ppath = self.root / "list_eval_partition.txt"
            for i, n in enumerate(names):
                if n not in part:
                    raise CorpusError(ppath, f"no partition entry for {n}")
                keep[i] = part[n] == self.SPLITS[split]
        self.attributes = list(attributes)
        self.names = [n for n, k in zip(names, keep, strict=True) if k]
        self.attrs = (values[keep][:, cols] > 0).astype(np.float32)
        self.size, self.center_crop = size, center_crop
        for n in self.names:
            if not (self.image_dir / n).is_file():
                raise CorpusError(self.image_dir / n, "listed in list_attr_celeba.txt but missing")

    @staticmethod
    def _read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError as exc:
            raise CorpusError(path, "no such attribute file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(path, f"cannot read attribute file ({exc})") from exc
        if len(lines) < 2:
            raise CorpusError(path, "expected a count line and an attribute-name line")
        try:
            count = int(lines[0].strip())
        except ValueError as exc:
            raise CorpusError(path, f"line 1: expected the image count, got {lines[0]!r}") from exc
        attrs = lines[1].split()
        rows = [ln for ln in lines[2:] if ln.strip()]
        if len(rows) != count:
            raise CorpusError(path, f"header says {count} images, found {len(rows)} rows")
        names, values = [], np.zeros((count, len(attrs)), dtype=np.int8)
        for i, ln in enumerate(rows):
            parts = ln.split()
            if len(parts) != len(attrs) + 1:
                raise CorpusError(path, f"line {i + 3}: expected {len(attrs) + 1} fields, got {len(parts)}")
            try:
                vals = [int(v) for v in parts[1:]]
            except ValueError as exc:
                raise CorpusError(path, f"line {i + 3}: non-integer attribute value") from exc
            if any(v not in (-1, 1) for v in vals):
                raise CorpusError(path, f"line {i + 3}: attribute values must be -1 or 1")
            names.append(parts[0])
            values[i] = vals
        return names, attrs, values

    @staticmethod
    def _read_partition(path: Path) -> dict[str, int]:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError as exc:
            raise CorpusError(path, "no such partition file (needed for a split)") from exc
        out: dict[str, int] = {}
        for i, ln in enumerate(lines):
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise CorpusError(path, f"line {i + 1}: expected '<name> 0|1|2'")
            out[parts[0]] = int(parts[1])
        return out

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = load_image(self.image_dir / self.names[index], self.size, 3, self.center_crop)
        return torch.from_numpy(img), torch.from_numpy(self.attrs[index])
