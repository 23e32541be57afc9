"""Image experiments: every one runs end to end on the debug size (through Hydra's
compose API) on procedural shapes and on an image folder the test writes, saves
models that load and sample; the loops learn tiny problems with a known answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from voiceconv.errors import ConfigError
from voiceconv.images.data import ShapesDataset, ShapesSpec
from voiceconv.images.experiments import EXPERIMENTS, run_experiment
from voiceconv.images.loops import (
    LoopConfig,
    SmallClassifier,
    fit_classifier,
    fit_vae,
    progressive_schedule,
    random_batches,
)
from voiceconv.models.base import load_model

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "recipes" / "images" / "run.py"
CONFIG_DIR = str(REPO / "conf" / "images")
NAMES = sorted(EXPERIMENTS)

torch.set_num_threads(1)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize(("size", "data"), [("debug", "shapes"), ("small", "shapes"), ("full", "shapes"),
                                            ("small", "folder"), ("small", "mnist")])
@pytest.mark.parametrize("experiment", NAMES)
def test_every_config_composes_and_resolves(experiment: str, size: str, data: str, tmp_path) -> None:
    cfg = _compose([f"experiment={experiment}", f"size={size}", f"data={data}", f"data.root={tmp_path}",
                    f"out_dir={tmp_path}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["name"] == experiment and plain["size"]["name"] == size and plain["data"]["name"] == data
    assert plain["shapes"]["image_size"] == plain["size"]["image_size"]
    assert set(plain["size"]["steps"]) == set(plain["optim"]) == set(plain["size"]["batch_size"])
    ShapesSpec.from_dict(plain["shapes"])


def _write_folder(root: Path, classes: dict[str, int], size: int = 20, seed: int = 0) -> Path:
    """A labelled image folder: class k's images are a bright square in quadrant k
    (different sizes), saved as PNG at ``size`` x ``size`` (not the model size)."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = np.zeros((size, size), dtype=np.uint8)
            r0, c0 = (k // 2) * size // 2, (k % 2) * size // 2
            s = int(rng.integers(3, size // 2))
            img[r0 : r0 + s, c0 : c0 + s] = 255
            Image.fromarray(img).save(root / name / f"img{i:03d}.png")
    return root


def _run(experiment: str, out: Path, *extra: str) -> dict:
    cfg = _compose([f"experiment={experiment}", "size=debug", f"out_dir={out}", "threads=1", *extra])
    returned = run_experiment(cfg)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["experiment"] == experiment and on_disk["size"] == "debug"
    assert on_disk["wall_seconds"] == returned["wall_seconds"]
    assert (out / "config.yaml").is_file()
    assert not list(out.rglob(".*.tmp*")), "temporary files left behind"
    for png in out.glob("*.png"):
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 10 and img.shape[1] > 10, png
    # every saved model loads and the generative ones sample
    assert on_disk["models"], "no models saved"
    for name, rel in on_disk["models"].items():
        model = load_model(out / rel)
        model.eval()
        if hasattr(model, "sample") and name in ("dcgan", "progressive", "ddpm", "vae", "beta_vae"):
            x = model.sample(2) if name != "ddpm" else model.sample(2, steps=2)
            assert x.shape[0] == 2 and torch.isfinite(x).all(), name
    return on_disk


@pytest.mark.slow
@pytest.mark.parametrize("experiment", NAMES)
def test_experiment_runs_on_shapes(experiment: str, tmp_path) -> None:
    m = _run(experiment, tmp_path)
    assert m["data"] == "shapes"
    if experiment == "gans":
        assert sorted(m["models"]) == ["cgan", "dcgan", "judge", "progressive"]
        assert sum(m["cgan"]["predicted_class_histogram"]) == 48  # n_eval samples judged
        cgan = load_model(tmp_path / m["models"]["cgan"]).eval()
        assert cgan.sample(torch.tensor([0, 4])).shape == (2, 1, 16, 16)
    if experiment == "translation":
        for r in (m["pix2pix"]["a2b"], m["cyclegan"]["a2b"], m["cyclegan"]["b2a"]):
            assert r["blank_iou"] == 0.0 and r["identity_iou"] > 0.0
    if experiment == "outliers":
        assert sorted(m["held_out"]) == ["cross", "heart", "triangle"]
        # size=debug trains the PixelCNN too: three scores per held-out class, its model saved
        assert m["scores"] == ["neg_elbo", "likelihood_ratio", "pixelcnn_ratio"]
        assert all(0.0 <= r["pixelcnn_ratio"]["auroc_held_out"] <= 1.0 for r in m["held_out"].values())
        assert "pixelcnn_without_heart" in m["models"]  # saved, and loaded by _run
        assert type(load_model(tmp_path / m["models"]["pixelcnn_without_heart"])).__name__ == "GatedPixelCNN"
    if experiment == "diffusion":
        assert m["ddpm_fd_below_dcgan"] == (m["ddpm"]["fd"] < m["dcgan"]["fd"])
        assert "ddpm_conditional" in m
        # size.n_eval_conditional (24 at debug) guided samples, each judged once
        assert m["ddpm_conditional"]["n_samples"] == 24
        assert sum(m["ddpm_conditional"]["predicted_class_histogram"]) == 24


@pytest.mark.slow
@pytest.mark.parametrize("experiment", NAMES)
def test_experiment_runs_on_a_folder(experiment: str, tmp_path) -> None:
    root = _write_folder(tmp_path / "images", {"a": 24, "b": 24, "c": 24})
    extra = ["data=folder", f"data.root={root}"]
    if experiment == "outliers":
        extra.append("outliers.held_out=[c]")
    if experiment == "debias":
        extra.append("debias.classes=[a,b]")
    m = _run(experiment, tmp_path / "out", *extra)
    assert m["data"] == "folder"
    if experiment in ("gans", "diffusion"):
        assert m["classes"] == ["a", "b", "c"]
    if experiment == "translation":  # same file names in a/ and b/: paired, truth known
        assert m["paired_test"] and "pix2pix" in m


def test_folder_images_reach_the_models_as_written(tmp_path) -> None:
    # end to end through data=folder: the loaded training set holds exactly the images
    # the test wrote (resized from 20 to 16 px by area averaging), with their class labels
    from voiceconv.images.experiments.common import data_of, take

    root = _write_folder(tmp_path / "images", {"left": 5, "right": 5}, size=32)
    cfg = _compose(["experiment=gans", "size=debug", "data=folder", f"data.root={root}", "data.test_fraction=0.2"])
    sets = data_of(cfg)
    x, y = take(sets.train)
    xt, yt = take(sets.test)
    assert sets.classes == ["left", "right"] and len(x) + len(xt) == 10 and len(xt) == 2
    assert x.shape[1:] == (1, 16, 16)
    xs = torch.cat([x, xt])
    ys = torch.cat([y, yt])
    # class 0's squares sit in the top-left quadrant, class 1's in the top-right one
    left_mass, right_mass = xs[:, 0, :8, :8].sum((1, 2)), xs[:, 0, :8, 8:].sum((1, 2))
    assert bool(((left_mass > 0) == (ys == 0)).all()) and bool(((right_mass > 0) == (ys == 1)).all())
    assert float(xs[:, 0, 8:].abs().max()) == 0.0  # nothing in the bottom half


def test_unlabelled_folder_runs_the_unconditional_models(tmp_path) -> None:
    root = tmp_path / "faces"
    root.mkdir()
    for i in range(20):
        Image.fromarray(np.full((16, 16, 3), i * 10, dtype=np.uint8)).save(root / f"{i}.jpg")
    m = _run("gans", tmp_path / "out", "data=folder", f"data.root={root}", "data.channels=3")
    assert m["classes"] == ["faces"] and "cgan" not in m and not m["real"]["trained"]
    assert sorted(m["models"]) == ["dcgan", "judge", "progressive"]


def test_mnist_idx_files_feed_the_experiments(tmp_path) -> None:
    import gzip

    def idx(path: Path, arr: np.ndarray, code: int) -> None:
        header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        with gzip.open(path, "wb") as fh:
            fh.write(header + arr.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, lab in enumerate(labels):
            images[i, 2 * lab : 2 * lab + 4, 4:24] = 200 + rng.integers(0, 50)  # a bar at height 2 * label
        idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images, 0x08)
        idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels, 0x08)
    m = _run("translation", tmp_path / "out", "data=mnist", f"data.root={tmp_path}", "shapes.channels=1")
    assert m["data"] == "mnist" and m["paired_test"]
    # B = 1 - A: the foreground of A (the bars) and of B (all but the bars) are disjoint,
    # so the identity baseline's IoU is exactly 0 and the blank one's too
    assert m["cyclegan"]["a2b"]["identity_iou"] == 0.0 and m["cyclegan"]["a2b"]["blank_iou"] == 0.0


def test_unknown_experiment_is_a_config_error(tmp_path) -> None:
    cfg = _compose(["experiment=outliers", "size=debug", f"out_dir={tmp_path}", "name=nope"])
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        run_experiment(cfg)


@pytest.mark.slow
def test_command_line_entry_point(tmp_path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "experiment=debias", "size=debug", f"out_dir={out}", "threads=1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["experiment"] == "debias"
    assert not (tmp_path / "outputs").exists()  # Hydra wrote nothing outside out_dir


def test_models_do_not_import_the_image_side() -> None:
    code = ("import sys, voiceconv.models, voiceconv.models.vc; "
            "print(sorted(m for m in sys.modules if m.startswith('voiceconv.images')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ loops


def test_progressive_schedule() -> None:
    res = [4, 8, 16]
    steps = 300  # 100 per stage; fade over the first 50 of stages 2 and 3
    assert progressive_schedule(0, steps, res) == (4, 1.0)
    assert progressive_schedule(99, steps, res) == (4, 1.0)
    assert progressive_schedule(100, steps, res) == (8, 0.0)
    assert progressive_schedule(125, steps, res) == (8, 0.5)
    assert progressive_schedule(160, steps, res) == (8, 1.0)
    assert progressive_schedule(225, steps, res) == (16, 0.5)
    assert progressive_schedule(299, steps, res) == (16, 1.0)


def test_random_batches_follow_weights() -> None:
    spec = ShapesSpec(image_size=8, channels=1, n_colours=1)
    data = ShapesDataset(spec, 10, seed=0)
    w = np.zeros(10)
    w[[2, 7]] = [1.0, 3.0]
    batches = random_batches(data, 400, seed=1, weights=w)
    _, factors, _ = next(batches)
    rows = {tuple(r) for r in factors.numpy()}
    assert rows <= {tuple(data.factors[2]), tuple(data.factors[7])}
    share7 = (factors == torch.from_numpy(data.factors[7])).all(1).float().mean()
    assert abs(float(share7) - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 400)


def test_fit_classifier_learns_and_leaves_global_rng_alone() -> None:
    spec = ShapesSpec(image_size=16, channels=3, n_colours=2, n_positions=4)
    # label = colour, which a classifier learns in a few dozen steps
    data = ShapesDataset(spec, 512, seed=0)
    data.factors[:, 0] = data.factors[:, 5]
    torch.manual_seed(0)
    clf = SmallClassifier(3, 2, width=4)
    state = torch.get_rng_state()
    hist = fit_classifier(clf, data, LoopConfig(steps=60, batch_size=32, lr=1e-2, log_every=10), label_index=-1)
    assert torch.equal(torch.get_rng_state(), state)  # fork_rng restored the caller's stream
    assert hist["loss"][-1] < hist["loss"][0]
    test = ShapesDataset(spec, 200, seed=9)
    x, f, _ = test.get_batch(np.arange(200))
    with torch.no_grad():
        acc = (clf(x).argmax(1) == f[:, 5]).float().mean()
    assert acc > 0.9


def test_fit_vae_learns_a_two_image_set() -> None:
    # two fixed 8x8 binary images: a VAE with a 1-d latent must reconstruct both almost
    # exactly (the known answer), far better than their pixel mean does
    from voiceconv.images.data.sources import TensorImages
    from voiceconv.models.vae import VAE

    imgs = torch.zeros(2, 1, 8, 8)
    imgs[0, 0, :4] = 1
    imgs[1, 0, :, :4] = 1
    data = TensorImages(imgs.repeat(64, 1, 1, 1), torch.zeros(128))
    torch.manual_seed(0)
    vae = VAE(1, 8, 1, (8, 16), likelihood="bernoulli")
    fit_vae(vae, data, LoopConfig(steps=200, batch_size=32, lr=3e-3, log_every=50))
    with torch.no_grad():
        rec = vae.reconstruct(imgs)
    err = float((rec - imgs).abs().mean())
    mean_err = float((imgs.mean(0, keepdim=True) - imgs).abs().mean())
    assert err < 0.2 * mean_err


def test_old_paths_import_and_old_checkpoints_load(tmp_path) -> None:
    # the image side moved to voiceconv.images; the old module paths are aliases, so old
    # imports work and a model saved under its old class path is rebuilt
    import voiceconv.data.images.shapes as old_shapes
    import voiceconv.images.data.shapes as new_shapes
    from voiceconv.data.images import ShapesDataset as OldShapes
    from voiceconv.evaluation.image_metrics import auroc  # noqa: F401
    from voiceconv.models.base import model_payload

    assert old_shapes is new_shapes and OldShapes is ShapesDataset
    clf = SmallClassifier(1, 3, width=4).eval()
    payload = model_payload(clf)
    payload["class"] = "voiceconv.training.image_loops.SmallClassifier"
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt").eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), clf(x))


def test_outliers_pixelcnn_arch_switch() -> None:
    from voiceconv.images.experiments.outliers import build_pixelcnn
    from voiceconv.models.pixelcnn import GatedPixelCNN, PixelCNN

    gated = build_pixelcnn(1, OmegaConf.create({"arch": "gated", "width": 4, "layers": 2, "kernel": 3}))
    assert isinstance(gated, GatedPixelCNN) and gated.hparams["kernel"] == 3
    # configs written before `arch` existed (width, layers, dilated) still build the plain model
    plain = build_pixelcnn(1, OmegaConf.create({"width": 4, "layers": 2, "dilated": False}))
    assert type(plain) is PixelCNN and plain.hparams["dilated"] is False
    with pytest.raises(ConfigError, match="arch"):
        build_pixelcnn(1, OmegaConf.create({"arch": "wavenet", "width": 4, "layers": 2}))


@pytest.mark.slow
def test_outliers_in_worker_processes_match_one_process(tmp_path) -> None:
    """Held-out classes trained in two spawned workers (one thread each) give the same
    scores and the same saved weights as the same classes trained one after another."""
    extra = ["outliers.held_out=[heart,cross]"]
    one = _run("outliers", tmp_path / "one", *extra, "outliers.workers=1")
    two = _run("outliers", tmp_path / "two", *extra, "outliers.workers=2")
    assert one["workers"] == 1 and two["workers"] == 2
    for name in ("heart", "cross"):
        for s in one["scores"]:
            assert two["held_out"][name][s] == one["held_out"][name][s], (name, s)
    assert sorted(one["models"]) == sorted(two["models"])
    for name, rel in one["models"].items():
        a = load_model(tmp_path / "one" / rel).state_dict()
        b = load_model(tmp_path / "two" / two["models"][name]).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "two" / "scores_pixelcnn_ratio_without_cross.png").is_file()


@pytest.mark.slow
def test_gans_cgan_in_a_worker_process_matches_one_process(tmp_path) -> None:
    """The conditional GAN trained in a spawned worker (one thread, beside this process)
    scores the same and saves the same weights as when trained here after the rest."""
    one = _run("gans", tmp_path / "one", "gans.workers=1")
    two = _run("gans", tmp_path / "two", "gans.workers=2")
    assert one["workers"] == 1 and two["workers"] == 2
    for name in ("cgan", "dcgan", "progressive"):
        assert two[name]["fd"] == one[name]["fd"], name
    assert two["cgan"]["conditional_accuracy"] == one["cgan"]["conditional_accuracy"]
    for name, rel in one["models"].items():
        a = load_model(tmp_path / "one" / rel).state_dict()
        b = load_model(tmp_path / "two" / two["models"][name]).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_outliers_warm_start_never_sees_a_held_out_class(monkeypatch) -> None:
    """The PixelCNNs' shared warm start trains on the classes no run holds out, and is
    off when every class is held out somewhere or its steps are 0."""
    from voiceconv.images.data.sources import TensorImages
    from voiceconv.images.experiments import outliers

    seen: list[set[int]] = []

    def spy(model, data, loop):
        seen.append(set(data.labels.tolist()))
        return {}

    monkeypatch.setattr(outliers, "fit_vae", spy)
    cfg = _compose(["experiment=outliers", "size=debug"])
    labels = torch.arange(40) % 5
    train = TensorImages(torch.rand(40, 1, 16, 16), labels)
    state = outliers.warm_pixelcnn(cfg, train, [1, 3])
    assert seen == [{0, 2, 4}]
    assert state is not None and set(state) == set(outliers.build_pixelcnn(1, cfg.outliers.pixelcnn).state_dict())
    assert outliers.warm_pixelcnn(cfg, train, [0, 1, 2, 3, 4]) is None
    off = _compose(["experiment=outliers", "size=debug", "size.steps.pixelcnn_warm=0"])
    assert outliers.warm_pixelcnn(off, train, [1]) is None
    assert len(seen) == 1


@pytest.mark.parametrize(("value", "threads", "device", "expected"),
                         [("auto", 2, "cpu", 3), ("auto", 1, "cpu", 1), ("auto", 2, "cuda", 1), ("2", 1, "cpu", 2),
                          ("8", 2, "cpu", 3)])
def test_outliers_workers_setting(value: str, threads: int, device: str, expected: int) -> None:
    from voiceconv.images.experiments.common import worker_count

    cfg = _compose(["experiment=outliers", "size=small", f"threads={threads}", f"device={device}",
                    f"outliers.workers={value}"])
    assert worker_count(cfg, "outliers", 3) == expected
    with pytest.raises(ConfigError, match="outliers.workers"):
        worker_count(_compose(["experiment=outliers", "outliers.workers=0"]), "outliers", 3)
