"""Image recipes: every experiment runs end to end on the debug size (via Hydra's
compose API) and writes metrics.json and PNG figures; the training loops behave on
problems with a known answer."""

from __future__ import annotations

import importlib.util
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

from voiceconv.data.images import PairedShapes, ShapesDataset, ShapesSpec
from voiceconv.training.image_loops import (
    LoopConfig,
    SmallClassifier,
    fit_classifier,
    progressive_schedule,
    random_batches,
)

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "recipes" / "images" / "run.py"
EXPERIMENTS = ["vae_vs_betavae", "gans", "translation", "debias", "outliers"]


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("image_recipe_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compose(recipe, overrides: list[str]):
    with initialize_config_dir(config_dir=recipe.CONFIG_PATH, version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("size", ["debug", "small", "full"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_config_composes_and_resolves(recipe, experiment: str, size: str, tmp_path) -> None:
    cfg = _compose(recipe, [f"experiment={experiment}", f"size={size}", f"out_dir={tmp_path}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["name"] == experiment and plain["size"]["name"] == size
    assert plain["shapes"]["image_size"] == plain["size"]["image_size"]
    assert set(plain["size"]["steps"]) == set(plain["optim"]) == set(plain["size"]["batch_size"])
    ShapesSpec.from_dict(plain["shapes"])  # valid spec


def _check_pngs(out: Path, names: list[str]) -> None:
    for name in names:
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 10 and img.shape[1] > 10, name


def _run(recipe, experiment: str, out: Path, *extra: str) -> dict:
    cfg = _compose(recipe, [f"experiment={experiment}", "size=debug", f"out_dir={out}", "threads=1", *extra])
    returned = recipe.run_experiment(cfg)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["experiment"] == experiment and on_disk["size"] == "debug"
    assert on_disk["wall_seconds"] == returned["wall_seconds"]
    assert (out / "config.yaml").is_file()
    assert not list(out.glob(".*.tmp*")), "temporary files left behind"
    return on_disk


def test_vae_vs_betavae_debug(recipe, tmp_path) -> None:
    m = _run(recipe, "vae_vs_betavae", tmp_path)
    for name, beta in (("vae", 1.0), ("beta_vae", 8.0)):
        r = m[name]
        assert r["beta"] == beta
        assert 0.0 <= r["mig"] <= 1.0
        assert r["per_factor"]["colour"] is None  # one grey level: constant factor
        assert len(r["kl_per_dim"]) == 6 and all(k >= 0 for k in r["kl_per_dim"])
        assert r["test_elbo"] < 0
    assert m["beta_vae_higher_mig"] == (m["beta_vae"]["mig"] > m["vae"]["mig"])
    _check_pngs(tmp_path, [f"{n}_{k}.png" for n in ("vae", "beta_vae")
                           for k in ("reconstructions", "samples", "traversals")] + ["training_curves.png"])


def test_gans_debug(recipe, tmp_path) -> None:
    m = _run(recipe, "gans", tmp_path)
    assert 0.0 <= m["classifier"]["real_test_accuracy"] <= 1.0
    assert m["classifier"]["fd_real_vs_real"] >= 0
    for name in ("dcgan", "progressive", "cgan"):
        assert m[name]["fd"] >= 0
        assert sum(m[name]["predicted_class_histogram"]) == 48  # n_eval samples judged
    assert 0.0 <= m["cgan"]["conditional_accuracy"] <= 1.0
    # diversity of the real images, recomputed from the set the recipe uses (seed + 1000)
    cfg = _compose(recipe, ["experiment=gans", "size=debug"])
    spec = ShapesSpec.from_dict(OmegaConf.to_container(cfg.shapes, resolve=True))
    real = ShapesDataset(spec, cfg.size.n_eval, seed=cfg.seed + 1000).get_batch(np.arange(cfg.size.n_eval))[0]
    assert m["real"]["pixel_std"] == pytest.approx(float(real.std(0).mean()), rel=1e-5)
    assert m["cgan"]["within_class_pixel_std"] >= 0.0
    _check_pngs(tmp_path, ["real_samples.png", "dcgan_samples.png", "progressive_samples.png",
                           "cgan_samples.png", "cgan_by_class.png", "training_curves.png"])


def test_translation_debug(recipe, tmp_path) -> None:
    m = _run(recipe, "translation", tmp_path)
    # identity baseline recomputed from the test set the recipe uses (seed + 1000)
    cfg = _compose(recipe, ["experiment=translation", "size=debug"])
    spec = ShapesSpec.from_dict(OmegaConf.to_container(cfg.shapes, resolve=True))
    a, b = PairedShapes(spec, cfg.size.n_eval, seed=cfg.seed + 1000).get_batch(np.arange(cfg.size.n_eval))
    identity_l1 = float((a - b).abs().mean())
    assert m["pix2pix"]["a2b"]["identity_l1"] == pytest.approx(identity_l1, rel=1e-5)
    assert m["cyclegan"]["b2a"]["identity_mse"] == pytest.approx(float(((a - b) ** 2).mean()), rel=1e-5)
    assert m["cyclegan"]["a2b"]["blank_l1"] == pytest.approx(float(b.mean()), rel=1e-5)
    assert m["cyclegan"]["b2a"]["blank_mse"] == pytest.approx(float((a**2).mean()), rel=1e-5)
    for r in (m["pix2pix"]["a2b"], m["cyclegan"]["a2b"], m["cyclegan"]["b2a"]):
        assert 0.0 <= r["l1"] <= 1.0 and 0.0 <= r["mse"] <= r["l1"]
    _check_pngs(tmp_path, ["pix2pix_examples.png", "cyclegan_examples.png", "training_curves.png"])


def test_debias_debug(recipe, tmp_path) -> None:
    m = _run(recipe, "debias", tmp_path)
    assert m["classes"] == ["square", "triangle"]
    for name in ("plain", "dbvae"):
        for key in ("overall", "minority", "majority"):
            assert 0.0 <= m[name][key] <= 1.0
    assert m["dbvae_minority_gain"] == pytest.approx(m["dbvae"]["minority"] - m["plain"]["minority"])
    assert m["test_minority_fraction"] > m["train_minority_fraction"]
    _check_pngs(tmp_path, ["train_examples.png", "test_minority_examples.png", "training_curves.png"])


def test_outliers_debug(recipe, tmp_path) -> None:
    m = _run(recipe, "outliers", tmp_path)
    assert m["held_out_shape"] == "heart"
    assert 0.0 <= m["auroc_held_out_shape"] <= 1.0 and 0.0 <= m["auroc_noise"] <= 1.0
    _check_pngs(tmp_path, ["reconstructions.png", "score_histogram.png", "training_curves.png"])


def test_unknown_experiment_is_a_config_error(recipe, tmp_path) -> None:
    from voiceconv.errors import ConfigError

    cfg = _compose(recipe, ["experiment=outliers", "size=debug", f"out_dir={tmp_path}", "name=nope"])
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        recipe.run_experiment(cfg)


@pytest.mark.slow
def test_command_line_entry_point(tmp_path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "experiment=outliers", "size=debug", f"out_dir={out}", "threads=1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["experiment"] == "outliers"
    assert not (tmp_path / "outputs").exists()  # Hydra wrote nothing outside out_dir


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
