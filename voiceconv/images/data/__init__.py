"""Image data without downloads: procedural shapes with known factors, task sets
built from them (unpaired/paired translation, biased classification, outliers),
and readers for real local folders (class folders, MNIST idx, CelebA)."""

from voiceconv.images.data.folders import MNIST, CelebA, ImageFolder, load_image, read_idx
from voiceconv.images.data.sets import (
    BiasedShapes,
    DomainPair,
    OutlierSplit,
    PairedShapes,
    UnpairedShapes,
    outlier_split,
)
from voiceconv.images.data.shapes import (
    FACTOR_NAMES,
    PALETTE,
    SHAPES,
    NoiseImages,
    ShapesDataset,
    ShapesSpec,
)

__all__ = [
    "FACTOR_NAMES",
    "MNIST",
    "PALETTE",
    "SHAPES",
    "BiasedShapes",
    "CelebA",
    "DomainPair",
    "ImageFolder",
    "NoiseImages",
    "OutlierSplit",
    "PairedShapes",
    "ShapesDataset",
    "ShapesSpec",
    "UnpairedShapes",
    "load_image",
    "outlier_split",
    "read_idx",
]
