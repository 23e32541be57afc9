"""The conf/ tree for voiceconv-train: every option composes, instantiates the right
objects, and every experiment runs a tiny debug training (Hydra compose API)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from voiceconv.audio.mel import MelConfig
from voiceconv.cli.train import conf_dir, run
from voiceconv.models.streaming import CausalConv2d
from voiceconv.models.vc import CycleGANVC2, MaskCycleGANVC
from voiceconv.training.checkpoint import load_checkpoint
from voiceconv.training.vc_trainer import TrainerSettings

torch.set_num_threads(1)
CONF = conf_dir()
SR = 8000
#: a tiny model, 8 kHz 16-band mels, 16-frame crops, one CPU step per run
TINY = [
    "trainer=debug", "trainer.max_steps=1", "trainer.decay_start=0", "trainer.ckpt_every=1",
    "trainer.device=cpu", "trainer.precision=fp32", "trainer.compile=false",
    "model.base_channels=4", "model.residual_channels=8", "model.residual_hidden=8",
    "model.n_residual=1", "model.d_base_channels=4",
    f"mel.sample_rate={SR}", "mel.n_fft=256", "mel.win_length=256", "mel.hop_length=64",
    "mel.n_mels=16", "mel.fmax=4000", "data.crop_frames=16", "data.workers=1",
]


def _compose(overrides: list[str], hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra_cfg)


def _speaker(folder: Path, f0: float, n: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.5 * SR)) / SR
    for i in range(n):
        wav = sum(0.2 / k * np.sin(2 * np.pi * f0 * (1 + 0.03 * i) * k * t) for k in range(1, 5))
        sf.write(folder / f"utt{i}.wav", wav.astype(np.float32), SR)


@functools.cache
def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_have_the_expected_options():
    assert _group_options("model") == ["cyclegan_vc2", "cyclegan_vc2_small", "maskcyclegan_vc",
                                       "maskcyclegan_vc_small", "maskcyclegan_vc_stream_small"]
    assert _group_options("trainer") == ["cpu_small", "debug", "default", "gpu"]
    assert _group_options("experiment") == ["cmu_arctic", "flite_demo", "gpu_paper", "vcc2018"]
    assert _group_options("data") == ["cache", "folders"]


@pytest.mark.parametrize("name", ["maskcyclegan_vc", "maskcyclegan_vc_small", "cyclegan_vc2",
                                  "cyclegan_vc2_small", "maskcyclegan_vc_stream_small"])
def test_model_configs_build_the_named_model(name):
    cfg = _compose([f"model={name}", "out_dir=/tmp/x", "model.n_residual=1"])
    model = instantiate(cfg.model)
    assert type(model) is (MaskCycleGANVC if name.startswith("mask") else CycleGANVC2)
    hp = model.hparams
    assert hp["size"] == ("small" if name.endswith("_small") else "paper")
    assert hp["n_mels"] == cfg.mel.n_mels == 80
    # the papers' loss weights: cycle 10, identity 5 for the first 10^4 iterations
    assert (hp["lambda_cycle"], hp["lambda_identity"], hp["identity_steps"]) == (10.0, 5.0, 10000)
    assert model.identity_weight(9999) == 5.0 and model.identity_weight(10000) == 0.0
    # only the streaming variant's generators are causal with batch norm; its discriminators
    # are the small model's (instance norm)
    streams = name.endswith("_stream_small")
    assert (model.g_ab.lookahead, hp["generator_norm"]) == ((4, "batch") if streams else (None, None))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.g_ab.modules()) is streams
    assert any(isinstance(m, CausalConv2d) for m in model.g_ab.modules()) is streams
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.d_a.modules())


def test_optimizers_are_the_papers_adam_with_own_rates():
    cfg = _compose(["out_dir=/tmp/x"])
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt_g = instantiate(cfg.optimizer.generator)(params)
    opt_d = instantiate(cfg.optimizer.discriminator)(params)
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.Adam)
    assert opt_g.defaults["lr"] == 2e-4 and opt_d.defaults["lr"] == 1e-4
    assert tuple(opt_g.defaults["betas"]) == tuple(opt_d.defaults["betas"]) == (0.5, 0.999)


def test_mel_default_is_melconfig_default():
    cfg = _compose(["out_dir=/tmp/x"])
    assert MelConfig.from_dict(OmegaConf.to_container(cfg.mel)) == MelConfig()


def _settings(trainer_cfg) -> TrainerSettings:
    names = {f.name for f in dataclasses.fields(TrainerSettings)}
    return TrainerSettings(**{k: v for k, v in OmegaConf.to_container(trainer_cfg).items() if k in names})


def test_default_schedule_is_cyclegan_vc2s():
    t = _compose(["out_dir=/tmp/x"]).trainer
    assert (t.max_steps, t.batch_size, t.precision) == (200_000, 1, "auto")
    s = _settings(t)
    assert (s.schedule_knee, s.schedule_end) == (100_000, 200_000)  # decay over the second half


# ids not equal to "gpu": tests/conftest.py skips items whose keywords contain "gpu"
@pytest.mark.parametrize("trainer", ["default", "cpu_small", "gpu", "debug"], ids=lambda t: f"trainer_{t}")
def test_every_trainer_accepts_a_short_max_steps(trainer):
    """``voiceconv-train ... trainer.max_steps=N`` must give a valid schedule for any N."""
    s = _settings(_compose([f"trainer={trainer}", "trainer.max_steps=3", "out_dir=/tmp/x"]).trainer)
    assert s.schedule_end == 3 and 0 <= s.schedule_knee <= 3


def test_hydra_writes_nothing_of_its_own_and_out_dir_is_required(tmp_path):
    cfg = _compose([f"out_dir={tmp_path}"], hydra_cfg=True)
    assert cfg.hydra.run.dir == str(tmp_path)
    assert cfg.hydra.job.chdir is False
    assert cfg.hydra.output_subdir is None
    assert "file" not in cfg.hydra.job_logging.handlers  # no per-rank log file
    with pytest.raises(MissingMandatoryValue):
        _ = _compose([]).out_dir


def test_gpu_paper_experiment_values():
    cfg = _compose(["experiment=gpu_paper", "out_dir=/tmp/x"])
    assert cfg.model.name == "maskcyclegan_vc"
    assert (cfg.trainer.device, cfg.trainer.precision, cfg.trainer.compile) == ("cuda", "bf16", True)
    assert (_settings(cfg.trainer).schedule_knee, _settings(cfg.trainer).schedule_end) == (250_000, 500_000)


def _layout(experiment: str, root: Path) -> list[str]:
    """Write two tiny speakers where the experiment looks for them; return its overrides."""
    if experiment == "flite_demo":
        _speaker(root / "rms", 110.0)
        _speaker(root / "slt", 220.0)
        return [f"data.root={root}"]
    if experiment == "vcc2018":
        _speaker(root / "vcc2018_training" / "VCC2SF3", 220.0)
        _speaker(root / "vcc2018_training" / "VCC2TM3", 110.0)
        return [f"data.root={root}"]
    if experiment == "cmu_arctic":
        _speaker(root / "cmu_us_bdl_arctic" / "wav", 110.0)
        _speaker(root / "cmu_us_slt_arctic" / "wav", 220.0)
        return [f"data.root={root}"]
    _speaker(root / "a", 110.0)
    _speaker(root / "b", 220.0)
    return [f"data.a_dir={root / 'a'}", f"data.b_dir={root / 'b'}"]


@pytest.mark.parametrize("experiment", ["flite_demo", "vcc2018", "cmu_arctic", "gpu_paper"])
def test_every_experiment_smoke_runs(tmp_path, experiment):
    overrides = _layout(experiment, tmp_path / "data")
    out = tmp_path / "run"
    cfg = _compose([f"experiment={experiment}", f"out_dir={out}", *overrides, *TINY])
    result = run(cfg)
    assert result.step == 1
    ckpt = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 1
    expected_class = "MaskCycleGANVC" if "mask" in cfg.model.name else "CycleGANVC2"
    assert ckpt["model"]["class"].endswith(expected_class)
    if experiment != "gpu_paper":
        speakers = {"A": cfg.data.speaker_a, "B": cfg.data.speaker_b}
        assert ckpt["speakers"] == speakers
    assert (out / "config.yaml").is_file() and (out / "cache" / "manifest.jsonl").is_file()
