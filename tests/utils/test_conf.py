"""compose_config: the conf/ tree composed outside a Hydra app, as the console scripts see it."""

from __future__ import annotations

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from voiceconv.utils.conf import CONF_DIR_ENV, compose_config, conf_dir


def test_top_level_config_with_overrides():
    cfg = compose_config("train", ["trainer=debug", "trainer.max_steps=7"])
    assert cfg.trainer.max_steps == 7  # the override
    assert (cfg.trainer.ckpt_every, cfg.trainer.progress) == (1, False)  # trainer/debug.yaml over default.yaml


def test_sub_tree_sees_the_top_level_groups():
    """conf/vocoder/config.yaml takes its mel from conf/mel: the tree's root stays searchable."""
    cfg = compose_config("config", ["model=vocos_small", "trainer=cpu_vocos"], tree="vocoder")
    assert cfg.model.generator.phase == "pghi"
    assert cfg.trainer.max_cpu_minutes == 15
    assert cfg.mel.sample_rate == OmegaConf.load(conf_dir() / "mel" / "default.yaml").sample_rate


def test_conf_dir_follows_the_environment(tmp_path, monkeypatch):
    (tmp_path / "only.yaml").write_text("answer: 42\n")
    monkeypatch.setenv(CONF_DIR_ENV, str(tmp_path))
    assert compose_config("only").answer == 42
    with pytest.raises(MissingConfigException):
        compose_config("train")


def test_a_vocoder_trainer_that_sets_the_optimiser_wins():
    """conf/vocoder/trainer files that name an optimiser (vocos_gpu: Vocos's AdamW 5e-4,
    betas (0.8, 0.9)) get it in the composed run config, over conf/vocoder/config.yaml's."""
    found = 0
    for path in sorted((conf_dir() / "vocoder" / "trainer").glob("*.yaml")):
        own = OmegaConf.load(path).get("optimizer")
        if own is None:
            continue
        found += 1
        cfg = compose_config("config", [f"trainer={path.stem}"], tree="vocoder")
        for side, values in own.items():
            for key, value in values.items():
                assert cfg.optimizer[side][key] == value, (path.name, side, key)
    assert found >= 1
