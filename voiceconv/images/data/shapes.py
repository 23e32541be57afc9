"""Procedural dSprites-like shapes, rendered on the fly with known generative factors.

dSprites (Matthey et al., 2017) is the usual benchmark for disentanglement because
every image is a deterministic function of a few independent factors. We cannot
download it, so :class:`ShapesSpec` defines a close cousin that is generated
procedurally: a single shape on a black background whose factors are

============  ==============================================================
``shape``     square, ellipse, triangle, heart, cross (dSprites: 3 shapes)
``scale``     ``n_scales`` values, linearly from 0.5 to 1.0 of the largest size
``rotation``  ``n_rotations`` angles over [0, 2 pi) (as in dSprites)
``x``, ``y``  ``n_positions`` centres each, evenly over the central part
``colour``    ``n_colours`` palette entries (RGB) or grey levels (grayscale)
============  ==============================================================

Factors are stored as integer *indices* (one column per factor, like dSprites'
``latents_classes``); :meth:`ShapesSpec.factor_values` turns them into physical
values. Rendering is vectorised numpy over a coordinate grid (one batch of images
is a handful of array operations), so thousands of images render per second and
datasets never need to be stored.

Deviations from dSprites: five shapes instead of three (a held-out shape gives a
natural out-of-distribution set), an optional colour factor, and an ``outline``
rendering style (the filled mask minus its ``k``-pixel erosion) that gives
image-to-image translation a known ground truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from voiceconv.errors import ConfigError

SHAPES: tuple[str, ...] = ("square", "ellipse", "triangle", "heart", "cross")
FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "rotation", "x", "y", "colour")
STYLES: tuple[str, ...] = ("filled", "outline")

# Saturated, easily told apart colours (RGB in [0, 1]).
PALETTE: tuple[tuple[float, float, float], ...] = (
    (1.0, 1.0, 1.0),  # white
    (1.0, 0.2, 0.2),  # red
    (0.2, 1.0, 0.2),  # green
    (0.25, 0.45, 1.0),  # blue
    (1.0, 1.0, 0.2),  # yellow
    (1.0, 0.3, 1.0),  # magenta
    (0.2, 1.0, 1.0),  # cyan
    (1.0, 0.6, 0.1),  # orange
)

# Largest shape radius and the range of centres, in image units where the image
# spans [-1, 1]. Every unit shape fits in the unit circle, so max radius + max
# |centre| < 1 keeps every shape inside the frame at any rotation.
_MAX_RADIUS = 0.45
_CENTRE_RANGE = 0.5


@dataclass(frozen=True)
class ShapesSpec:
    """What the shapes look like and how many values each factor takes.

    ``channels`` is 3 (RGB, colour from :data:`PALETTE`) or 1 (grayscale, colour
    from ``n_colours`` grey levels between 1.0 and 0.4; ``n_colours=1`` gives
    binary dSprites-like images). ``outline_width`` (pixels) defaults to
    ``max(1, image_size // 32)``.
    """

    image_size: int = 32
    channels: int = 3
    n_scales: int = 6
    n_rotations: int = 40
    n_positions: int = 16
    n_colours: int = 6
    outline_width: int | None = None

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ConfigError(f"ShapesSpec: image_size {self.image_size} < 8")
        if self.channels not in (1, 3):
            raise ConfigError(f"ShapesSpec: channels must be 1 or 3, got {self.channels}")
        for name in ("n_scales", "n_rotations", "n_positions", "n_colours"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ShapesSpec: {name} must be >= 1, got {getattr(self, name)}")
        if self.channels == 3 and self.n_colours > len(PALETTE):
            raise ConfigError(
                f"ShapesSpec: n_colours {self.n_colours} > palette size {len(PALETTE)}"
            )
        if self.outline_width is not None and self.outline_width < 1:
            raise ConfigError(f"ShapesSpec: outline_width must be >= 1, got {self.outline_width}")

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ShapesSpec:
        """Build from a plain mapping (e.g. a Hydra node); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"ShapesSpec: unknown keys {sorted(unknown)}")
        return cls(**dict(d))  # type: ignore[arg-type]

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """Number of values of each factor, in :data:`FACTOR_NAMES` order."""
        return (
            len(SHAPES),
            self.n_scales,
            self.n_rotations,
            self.n_positions,
            self.n_positions,
            self.n_colours,
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one rendered image."""
        return (self.channels, self.image_size, self.image_size)

    def sample_factors(
        self,
        n: int,
        rng: np.random.Generator,
        allowed: Mapping[str, Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Draw ``n`` factor-index rows uniformly (independent factors).

        ``allowed`` restricts a factor to some of its values, e.g.
        ``{"shape": [0, 1]}``; those are drawn uniformly too.
        """
        allowed = dict(allowed or {})
        unknown = set(allowed) - set(FACTOR_NAMES)
        if unknown:
            raise ConfigError(f"sample_factors: unknown factors {sorted(unknown)}")
        cols = []
        for name, size in zip(FACTOR_NAMES, self.factor_sizes, strict=True):
            if name in allowed:
                values = np.asarray(list(allowed[name]), dtype=np.int64)
                if values.size == 0 or values.min() < 0 or values.max() >= size:
                    raise ConfigError(
                        f"sample_factors: allowed {name} values {values.tolist()} not in [0, {size})"
                    )
                cols.append(values[rng.integers(0, values.size, size=n)])
            else:
                cols.append(rng.integers(0, size, size=n, dtype=np.int64))
        return np.stack(cols, axis=1)

    def check_factors(self, factors: np.ndarray) -> np.ndarray:
        """Return ``factors`` as an int64 ``(N, 6)`` array, or raise if out of range."""
        f = np.asarray(factors)
        if f.ndim == 1:
            f = f[None, :]
        if f.ndim != 2 or f.shape[1] != len(FACTOR_NAMES):
            raise ConfigError(f"factors must have shape (N, {len(FACTOR_NAMES)}), got {f.shape}")
        f = f.astype(np.int64, copy=False)
        sizes = np.asarray(self.factor_sizes)
        if (f < 0).any() or (f >= sizes).any():
            raise ConfigError(f"factor indices outside [0, {list(self.factor_sizes)})")
        return f

    def factor_values(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Physical values of factor indices: shape index, scale (fraction of the
        largest size), rotation (radians), x and y centre (image spans [-1, 1])
        and colour index."""
        f = self.check_factors(factors)
        scales = np.linspace(0.5, 1.0, self.n_scales) if self.n_scales > 1 else np.ones(1)
        rotations = 2.0 * np.pi * np.arange(self.n_rotations) / self.n_rotations
        positions = (
            np.linspace(-_CENTRE_RANGE, _CENTRE_RANGE, self.n_positions)
            if self.n_positions > 1
            else np.zeros(1)
        )
        return {
            "shape": f[:, 0],
            "scale": scales[f[:, 1]],
            "rotation": rotations[f[:, 2]],
            "x": positions[f[:, 3]],
            "y": positions[f[:, 4]],
            "colour": f[:, 5],
        }

    def colours(self) -> np.ndarray:
        """``(n_colours, channels)`` intensities of each colour index."""
        if self.channels == 3:
            return np.asarray(PALETTE[: self.n_colours], dtype=np.float32)
        if self.n_colours == 1:
            return np.ones((1, 1), dtype=np.float32)
        return np.linspace(1.0, 0.4, self.n_colours, dtype=np.float32)[:, None]

    def masks(self, factors: np.ndarray, style: str = "filled") -> np.ndarray:
        """Boolean ``(N, H, W)`` masks of the shapes (``style`` filled or outline)."""
        if style not in STYLES:
            raise ConfigError(f"unknown style {style!r} (expected one of {STYLES})")
        v = self.factor_values(factors)
        s = self.image_size
        grid = (np.arange(s, dtype=np.float32) + 0.5) / s * 2.0 - 1.0
        u = grid[None, None, :]  # horizontal (x), left to right
        w = grid[None, :, None]  # vertical (y), top to bottom
        cx = v["x"].astype(np.float32)[:, None, None]
        cy = v["y"].astype(np.float32)[:, None, None]
        radius = (_MAX_RADIUS * v["scale"]).astype(np.float32)[:, None, None]
        cos = np.cos(v["rotation"]).astype(np.float32)[:, None, None]
        sin = np.sin(v["rotation"]).astype(np.float32)[:, None, None]
        dx, dy = u - cx, w - cy
        # Shape-frame coordinates: undo rotation and scale.
        p = (cos * dx + sin * dy) / radius
        q = (-sin * dx + cos * dy) / radius
        mask = np.zeros((len(v["shape"]), s, s), dtype=bool)
        for k in np.unique(v["shape"]):
            sel = v["shape"] == k
            mask[sel] = _unit_shape(int(k), p[sel], q[sel])
        if style == "outline":
            width = self.outline_width or max(1, s // 32)
            mask = mask & ~_erode(mask, width)
        return mask

    def render(self, factors: np.ndarray, style: str = "filled", colour_shift: int = 0) -> np.ndarray:
        """Images of ``factors`` as float32 in [0, 1].

        A 1-D factor row gives ``(C, H, W)``, an ``(N, 6)`` array gives
        ``(N, C, H, W)``. ``colour_shift`` draws colour index ``c`` with palette
        entry ``(c + colour_shift) % n_colours`` (a second "domain").
        """
        single = np.asarray(factors).ndim == 1
        f = self.check_factors(factors)
        mask = self.masks(f, style)
        colour = self.colours()[(f[:, 5] + colour_shift) % self.n_colours]  # (N, C)
        img = mask[:, None, :, :].astype(np.float32) * colour[:, :, None, None]
        return img[0] if single else img


def _unit_shape(kind: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Membership of shape-frame points in unit shape ``kind`` (all fit in the unit
    circle; ``q`` points down the image)."""
    name = SHAPES[kind]
    if name == "square":
        return np.maximum(np.abs(p), np.abs(q)) <= 0.7
    if name == "ellipse":
        return (p / 0.95) ** 2 + (q / 0.55) ** 2 <= 1.0
    if name == "triangle":
        # Equilateral, circumradius 0.95, apex up: inside all three half-planes whose
        # normals point away from each vertex, at the inradius (half the circumradius).
        inside = np.ones(p.shape, dtype=bool)
        for k in range(3):
            a = -np.pi / 2 + 2 * np.pi * k / 3 + np.pi
            inside &= np.cos(a) * p + np.sin(a) * q <= 0.475
        return inside
    if name == "heart":
        # (X^2 + Y^2 - 1)^3 - X^2 Y^3 <= 0, Y up, scaled and centred into the unit circle.
        x = p / 0.8
        y = -q / 0.8 + 0.12
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    if name == "cross":
        ap, aq = np.abs(p), np.abs(q)
        return ((ap <= 0.28) & (aq <= 0.9)) | ((aq <= 0.28) & (ap <= 0.9))
    raise ConfigError(f"unknown shape index {kind}")


def _erode(mask: np.ndarray, width: int) -> np.ndarray:
    """4-neighbour binary erosion of ``(N, H, W)`` masks, ``width`` times (outside
    the image counts as background)."""
    out = mask
    for _ in range(width):
        padded = np.pad(out, ((0, 0), (1, 1), (1, 1)), constant_values=False)
        out = (
            out
            & padded[:, :-2, 1:-1]
            & padded[:, 2:, 1:-1]
            & padded[:, 1:-1, :-2]
            & padded[:, 1:-1, 2:]
        )
    return out


class ShapesDataset(Dataset):
    """``length`` shapes whose factors are drawn once from ``seed``; images are
    rendered when asked for.

    Item ``i`` is ``(image, factors, label)``: a float ``(C, H, W)`` tensor in
    [0, 1], the int64 factor indices (:data:`FACTOR_NAMES` order) and the shape
    index as the class label. Same ``spec``, ``length``, ``seed`` and ``allowed``
    give the same items. :meth:`get_batch` renders many items in one vectorised call.
    """

    def __init__(
        self,
        spec: ShapesSpec,
        length: int,
        seed: int = 0,
        allowed: Mapping[str, Sequence[int]] | None = None,
        style: str = "filled",
        colour_shift: int = 0,
    ) -> None:
        if length < 1:
            raise ConfigError(f"ShapesDataset: length must be >= 1, got {length}")
        if style not in STYLES:
            raise ConfigError(f"unknown style {style!r} (expected one of {STYLES})")
        self.spec = spec
        self.style = style
        self.colour_shift = colour_shift
        self.factors = spec.sample_factors(length, np.random.default_rng(seed), allowed)

    def __len__(self) -> int:
        return len(self.factors)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        f = self.factors[index]
        img = self.spec.render(f, self.style, self.colour_shift)
        return torch.from_numpy(img), torch.from_numpy(f.copy()), int(f[0])

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, ...]:
        """``(images (B, C, H, W), factors (B, 6), labels (B,))`` for ``indices``."""
        f = self.factors[np.asarray(indices, dtype=np.int64)]
        img = self.spec.render(f, self.style, self.colour_shift)
        return torch.from_numpy(img), torch.from_numpy(f.copy()), torch.from_numpy(f[:, 0].copy())

    @property
    def labels(self) -> np.ndarray:
        """Shape index of every item."""
        return self.factors[:, 0]


class NoiseImages(Dataset):
    """Uniform-noise images (an out-of-distribution set): item ``i`` is
    ``(image, label=-1)``, deterministic in ``seed`` and ``i``."""

    def __init__(self, image_shape: tuple[int, int, int], length: int, seed: int = 0) -> None:
        self.image_shape = tuple(image_shape)
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        return torch.from_numpy(rng.random(self.image_shape, dtype=np.float32)), -1

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, C, H, W), labels (B,) = -1)``."""
        imgs = torch.stack([self[int(i)][0] for i in indices])
        return imgs, torch.full((len(imgs),), -1, dtype=torch.int64)
