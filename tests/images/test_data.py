"""Image data: procedural shapes, task sets and folder readers.

References are independent of the renderer: closed-form areas and centroids of the
shapes, image moments for the rotation, scipy's binary erosion for outlines, and
hand-written fixture files (PNG/JPEG via Pillow, idx via struct) for the readers.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from voiceconv.errors import ConfigError, CorpusError
from voiceconv.images.data import (
    MNIST,
    PALETTE,
    SHAPES,
    BiasedShapes,
    CelebA,
    DomainPair,
    ImageFolder,
    PairedShapes,
    ShapesDataset,
    ShapesSpec,
    UnpairedShapes,
    load_image,
    outlier_split,
    read_idx,
)

# ------------------------------------------------------------------ shapes


def _row(shape: str, scale: int, rot: int, x: int, y: int, colour: int = 0) -> np.ndarray:
    return np.array([SHAPES.index(shape), scale, rot, x, y, colour], dtype=np.int64)


@pytest.mark.parametrize(
    ("shape", "unit_area"),
    [
        ("square", 1.4**2),
        ("ellipse", np.pi * 0.95 * 0.55),
        ("triangle", 3 * np.sqrt(3) / 4 * 0.95**2),
        ("cross", 2 * (1.8 * 0.56) - 0.56**2),
    ],
)
def test_filled_area_matches_closed_form(shape: str, unit_area: float) -> None:
    spec = ShapesSpec(image_size=64, channels=1, n_colours=1, n_scales=2, n_positions=3)
    vals = spec.factor_values(_row(shape, 1, 3, 1, 1))
    radius_px = 0.45 * vals["scale"][0] * spec.image_size / 2  # image spans [-1, 1]
    expected = unit_area * radius_px**2
    area = spec.masks(_row(shape, 1, 3, 1, 1)).sum()
    assert abs(area - expected) / expected < 0.06


@pytest.mark.parametrize("shape", ["square", "ellipse", "cross"])
def test_centroid_is_the_position_factor(shape: str) -> None:
    spec = ShapesSpec(image_size=64, n_positions=5)
    rng = np.random.default_rng(1)
    for _ in range(5):
        xi, yi = rng.integers(0, 5, size=2)
        f = _row(shape, 3, int(rng.integers(0, 40)), int(xi), int(yi))
        m = spec.masks(f)[0]
        rows, cols = np.nonzero(m)
        x, y = np.linspace(-0.5, 0.5, 5)[[xi, yi]]
        # pixel centre j sits at (j + 0.5) / S * 2 - 1
        assert abs((cols.mean() + 0.5) / 64 * 2 - 1 - x) < 0.02
        assert abs((rows.mean() + 0.5) / 64 * 2 - 1 - y) < 0.02


def test_ellipse_orientation_follows_rotation() -> None:
    spec = ShapesSpec(image_size=64, n_rotations=12, n_positions=1)
    for r in range(12):
        m = spec.masks(_row("ellipse", 5, r, 0, 0))[0].astype(float)
        rows, cols = np.nonzero(m)
        dx, dy = cols - cols.mean(), rows - rows.mean()
        angle = 0.5 * np.arctan2(2 * (dx * dy).mean(), (dx**2).mean() - (dy**2).mean())
        want = 2 * np.pi * r / 12
        err = (angle - want + np.pi / 2) % np.pi - np.pi / 2  # an ellipse is pi-periodic
        assert abs(err) < 0.05


def test_scale_factor_grows_area_quadratically() -> None:
    spec = ShapesSpec(image_size=64, n_scales=6)
    areas = [spec.masks(_row("square", s, 0, 8, 8))[0].sum() for s in range(6)]
    scales = np.linspace(0.5, 1.0, 6)
    ratio = np.asarray(areas) / areas[-1]
    assert np.allclose(ratio, scales**2, atol=0.05)


def test_colours_and_grayscale() -> None:
    rgb = ShapesSpec(image_size=32, channels=3, n_colours=4)
    img = rgb.render(_row("square", 5, 0, 8, 8, colour=2))
    assert img.shape == (3, 32, 32) and img.dtype == np.float32
    on = img.max(axis=0) > 0
    assert np.allclose(img[:, on].T, np.asarray(PALETTE[2]))
    assert set(np.unique(img[:, ~on])) == {0.0}
    grey = ShapesSpec(image_size=32, channels=1, n_colours=3)
    levels = [grey.render(_row("square", 5, 0, 8, 8, colour=c)).max() for c in range(3)]
    assert levels[0] == pytest.approx(1.0) and levels[0] > levels[1] > levels[2] > 0


def test_outline_is_mask_minus_its_erosion() -> None:
    for size, width in [(32, 1), (64, 2), (64, 3)]:
        spec = ShapesSpec(image_size=size, outline_width=width if width == 3 else None)
        f = spec.sample_factors(20, np.random.default_rng(size + width))
        filled, outline = spec.masks(f), spec.masks(f, "outline")
        cross = ndimage.generate_binary_structure(2, 1)
        for m, o in zip(filled, outline, strict=True):
            eroded = ndimage.binary_erosion(m, cross, iterations=width, border_value=0)
            assert np.array_equal(o, m & ~eroded)
            assert o.sum() > 0


def test_dataset_is_deterministic_and_in_range() -> None:
    spec = ShapesSpec(image_size=32)
    a, b = ShapesDataset(spec, 300, seed=7), ShapesDataset(spec, 300, seed=7)
    c = ShapesDataset(spec, 300, seed=8)
    assert np.array_equal(a.factors, b.factors) and not np.array_equal(a.factors, c.factors)
    img, fac, label = a[17]
    img_b, _, _ = b[17]
    assert torch.equal(img, img_b)
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert label == int(fac[0])
    sizes = np.asarray(spec.factor_sizes)
    assert (a.factors >= 0).all() and (a.factors < sizes).all()
    # every value of the small factors occurs in 300 uniform draws
    for k in (0, 1, 5):
        assert len(np.unique(a.factors[:, k])) == sizes[k]
    bi, bf, bl = a.get_batch([17, 3])
    assert torch.equal(bi[0], img) and torch.equal(bf[0], fac) and bl.tolist() == [label, int(a[3][2])]


def test_allowed_restricts_factors_and_bad_values_raise() -> None:
    spec = ShapesSpec(image_size=32)
    ds = ShapesDataset(spec, 200, seed=0, allowed={"shape": [1, 3]})
    assert set(np.unique(ds.factors[:, 0])) == {1, 3}
    with pytest.raises(ConfigError):
        ShapesDataset(spec, 10, allowed={"shape": [9]})
    with pytest.raises(ConfigError):
        ShapesSpec(image_size=32, channels=2)
    with pytest.raises(ConfigError):
        spec.render(np.array([0, 0, 0, 0, 99, 0]))


# ------------------------------------------------------------------ sets


def _outline_of(filled: np.ndarray, width: int) -> np.ndarray:
    cross = ndimage.generate_binary_structure(2, 1)
    return filled & ~ndimage.binary_erosion(filled, cross, iterations=width, border_value=0)


def test_paired_target_is_the_outline_of_the_input() -> None:
    spec = ShapesSpec(image_size=32)
    ds = PairedShapes(spec, 16, seed=3)
    src, tgt = ds.get_batch(np.arange(16))
    for s, t in zip(src.numpy(), tgt.numpy(), strict=True):
        filled = s.max(0) > 0
        assert np.array_equal(t.max(0) > 0, _outline_of(filled, 1))
        # same colour: every lit target pixel has the input's colour
        colour = s[:, filled][:, 0]
        assert np.allclose(t[:, t.max(0) > 0].T, colour)
    a0, b0 = ds[5]
    assert torch.equal(a0, src[5]) and torch.equal(b0, tgt[5])


def test_paired_colour_shift_changes_colour_only() -> None:
    spec = ShapesSpec(image_size=32, n_colours=6)
    ds = PairedShapes(spec, 8, seed=1, domains=DomainPair("filled", "filled", colour_shift_b=1))
    src, tgt = ds.get_batch(np.arange(8))
    for k in range(8):
        assert torch.equal(src[k].amax(0) > 0, tgt[k].amax(0) > 0)
        c = int(ds.factors[k, 5])
        on = tgt[k].amax(0) > 0
        assert np.allclose(tgt[k][:, on].T.numpy(), PALETTE[(c + 1) % 6])
    with pytest.raises(ConfigError):
        DomainPair("filled", "filled", 0)


def test_unpaired_domains_and_known_translation() -> None:
    spec = ShapesSpec(image_size=32)
    ds = UnpairedShapes(spec, 64, seed=2)
    a, b = ds.get_batch(np.arange(64))
    assert not np.array_equal(ds.factors_a, ds.factors_b)
    # A is filled: a filled shape equals its own hole-free closure; B is an outline
    for k in range(8):
        ma = a[k].amax(0).numpy() > 0
        assert np.array_equal(ma, ndimage.binary_fill_holes(ma))
        truth = ds.domains.translate(spec, ds.factors_a[k], "a2b")
        assert np.array_equal(truth.max(0) > 0, _outline_of(ma, 1))
    # B pixels are fewer than the corresponding filled renders
    filled_b = spec.render(ds.factors_b)
    assert (b.amax(1).sum((1, 2)) < torch.from_numpy(filled_b).amax(1).sum((1, 2))).all()


def _colour_index(img: np.ndarray) -> int:
    on = img.max(0) > 0
    c = img[:, on].mean(1)
    return int(np.argmin(((np.asarray(PALETTE) - c) ** 2).sum(1)))


@pytest.mark.parametrize("bias", [0.95, 0.8])
def test_biased_train_ratio_and_minority_flags(bias: float) -> None:
    spec = ShapesSpec(image_size=32, n_colours=5)
    n = 2000
    ds = BiasedShapes(spec, n, seed=0, split="train", bias=bias, nuisance="colour")
    majority = ~ds.minority
    sd = np.sqrt(bias * (1 - bias) / n)
    assert abs(majority.mean() - bias) < 4 * sd
    imgs, labels, minority = ds.get_batch(np.arange(60))
    for k in range(60):
        colour = _colour_index(imgs[k].numpy())
        assert bool(minority[k]) == (colour != int(labels[k]))  # majority colour of class k is k
    # labels are the shape classes
    assert np.array_equal(ds.labels, ds.factors[:, 0])


def test_biased_test_split_is_balanced() -> None:
    spec = ShapesSpec(image_size=32, n_colours=5)
    ds = BiasedShapes(spec, 3000, seed=1, split="test", nuisance="colour")
    counts = np.zeros((5, 5))
    np.add.at(counts, (ds.labels, ds.nuisance_values), 1)
    expected = counts.sum() / 25
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert abs(ds.minority_fraction - 0.8) < 0.03


def test_biased_position_nuisance_and_class_subset() -> None:
    spec = ShapesSpec(image_size=32, n_positions=16)
    ds = BiasedShapes(spec, 1000, seed=4, bias=0.9, nuisance="position", classes=[0, 4])
    assert set(np.unique(ds.factors[:, 0])) == {0, 4}
    assert set(np.unique(ds.labels)) == {0, 1}
    # band 0 = left half of the x positions, band 1 = right half
    band = (ds.factors[:, 3] >= 8).astype(int)
    assert np.array_equal(band != ds.labels, ds.minority)
    assert abs((~ds.minority).mean() - 0.9) < 4 * np.sqrt(0.09 / 1000)
    with pytest.raises(ConfigError):
        BiasedShapes(ShapesSpec(n_colours=3), 10, nuisance="colour")


@pytest.mark.parametrize("kind", ["shape", "noise"])
def test_outlier_split(kind: str) -> None:
    spec = ShapesSpec(image_size=32)
    split = outlier_split(spec, 200, 50, seed=0, held_out_shape=3, kind=kind)
    assert 3 not in split.train.factors[:, 0] and 3 not in split.test_in.factors[:, 0]
    assert not np.array_equal(split.train.factors[:50], split.test_in.factors)
    out = split.test_out[0][0]
    assert out.shape == (3, 32, 32)
    if kind == "shape":
        assert (split.test_out.factors[:, 0] == 3).all()
    else:
        imgs = split.test_out.get_batch(range(50))[0]
        assert 0.45 < imgs.mean() < 0.55 and torch.equal(split.test_out[4][0], imgs[4])


# ------------------------------------------------------------------ folders


def test_image_folder_reads_png_and_jpeg(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
    pix = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    Image.fromarray(pix).save(tmp_path / "cat" / "a.png")
    Image.fromarray(pix[..., 0]).save(tmp_path / "dog" / "b.png")
    Image.fromarray(np.full((6, 5, 3), 200, np.uint8)).save(tmp_path / "dog" / "c.jpg", quality=95)
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    (tmp_path / "empty").mkdir()
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and len(ds) == 3 and ds.labels.tolist() == [0, 1, 1]
    img, label = ds[0]
    assert label == 0 and img.shape == (3, 6, 5)
    assert torch.allclose(img, torch.from_numpy(pix).permute(2, 0, 1).float() / 255)
    grey, _ = ds[1]
    assert grey.shape == (1, 6, 5)
    jpg, _ = ds[2]
    assert abs(float(jpg.mean()) - 200 / 255) < 0.02
    small = ImageFolder(tmp_path, size=4, channels=1)
    assert small[0][0].shape == (1, 4, 4)


def test_image_folder_errors(tmp_path) -> None:
    with pytest.raises(CorpusError, match="no such image folder"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(CorpusError, match=str(tmp_path)):
        ImageFolder(tmp_path)
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(b"not a png")
    ds = ImageFolder(tmp_path)
    with pytest.raises(CorpusError) as err:
        ds[0]
    assert str(err.value).startswith(str(bad)) and "\n" not in str(err.value)


def _write_idx(path, arr: np.ndarray, code: int, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx(tmp_path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    sfx = ".gz" if compress else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", images, 0x08, compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels, 0x08, compress)
    ds = MNIST(tmp_path, split="test", pad_to=32)
    assert len(ds) == 7
    img, lab = ds[3]
    assert lab == labels[3] and img.shape == (1, 32, 32)
    assert torch.allclose(img[0, 2:30, 2:30], torch.from_numpy(images[3]).float() / 255)
    assert img[0, :2].abs().sum() == 0
    floats = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    _write_idx(tmp_path / "f.idx", floats, 0x0D)
    assert np.allclose(read_idx(tmp_path / "f.idx"), floats)


def test_mnist_errors(tmp_path) -> None:
    with pytest.raises(CorpusError, match="missing MNIST file"):
        MNIST(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x08\x03garbage")
    with pytest.raises(CorpusError, match="bad magic"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8), 0x08)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8), 0x08)
    with pytest.raises(CorpusError, match="2 labels for 3 images"):
        MNIST(tmp_path)
    raw = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(raw[:-1])
    with pytest.raises(CorpusError, match="payload"):
        read_idx(tmp_path / "train-labels-idx1-ubyte")


def _celeba(tmp_path, rows: list[str], names: list[str], count: int | None = None) -> None:
    (tmp_path / "img_align_celeba").mkdir()
    for i, n in enumerate(names):
        Image.fromarray(np.full((12, 10, 3), 40 * i, np.uint8)).save(tmp_path / "img_align_celeba" / n)
    text = f"{count if count is not None else len(rows)}\nSmiling Male Young\n" + "\n".join(rows) + "\n"
    (tmp_path / "list_attr_celeba.txt").write_text(text)


def test_celeba_reads_attributes_and_split(tmp_path) -> None:
    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    _celeba(tmp_path, [f"{names[0]}  1 -1  1", f"{names[1]} -1  1  1", f"{names[2]} 1 1 -1"], names)
    (tmp_path / "list_eval_partition.txt").write_text(
        f"{names[0]} 0\n{names[1]} 2\n{names[2]} 0\n"
    )
    ds = CelebA(tmp_path, attributes=["Male", "Smiling"], size=8, center_crop=10)
    assert len(ds) == 3
    img, attrs = ds[1]
    assert img.shape == (3, 8, 8) and attrs.tolist() == [1.0, 0.0]
    assert abs(float(img.mean()) - 40 / 255) < 0.03
    train = CelebA(tmp_path, split="train", size=None, center_crop=None)
    assert train.names == [names[0], names[2]] and train.attributes == ["Smiling", "Male", "Young"]
    assert train[1][0].shape == (3, 12, 10)


def test_celeba_errors(tmp_path) -> None:
    with pytest.raises(CorpusError, match="img_align_celeba"):
        CelebA(tmp_path)
    _celeba(tmp_path, ["000001.jpg 1 -1", "000002.jpg 1 1 1"], ["000001.jpg"], count=2)
    with pytest.raises(CorpusError, match="line 3: expected 4 fields"):
        CelebA(tmp_path)
    (tmp_path / "list_attr_celeba.txt").write_text("1\nSmiling\n000009.jpg 1\n")
    with pytest.raises(CorpusError, match="missing"):
        CelebA(tmp_path)
    (tmp_path / "list_attr_celeba.txt").write_text("1\nSmiling\n000001.jpg 1\n")
    with pytest.raises(CorpusError, match="unknown attributes"):
        CelebA(tmp_path, attributes=["Bald"])


def test_load_image_crop_and_resize(tmp_path) -> None:
    arr = np.zeros((10, 10), np.uint8)
    arr[3:7, 3:7] = 255
    Image.fromarray(arr).save(tmp_path / "x.png")
    crop = load_image(tmp_path / "x.png", center_crop=4)
    assert crop.shape == (1, 4, 4) and crop.min() == 1.0
    down = load_image(tmp_path / "x.png", size=5, channels=3)
    assert down.shape == (3, 5, 5)
    assert down[0, 2, 2] == pytest.approx(1.0) and down[0, 0, 0] == 0.0
    with pytest.raises(CorpusError, match="smaller than center_crop"):
        load_image(tmp_path / "x.png", center_crop=11)
