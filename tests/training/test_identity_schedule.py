"""The identity loss is on for trainer.identity_fraction of the schedule (CycleGAN-VC2: 5 %)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vc_tiny import make_trainer  # noqa: E402

from voiceconv.errors import ConfigError  # noqa: E402
from voiceconv.training.vc_trainer import TrainerSettings  # noqa: E402


def test_fraction_of_the_schedule(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_steps=6, total_steps=6)
    trainer.settings.identity_fraction = 1 / 3  # steps 0 and 1 of 6
    trainer.model.identity_steps = 10_000  # the model's own schedule would keep it on throughout
    weights = [float(trainer.train_step().logs["identity_weight"]) for _ in range(6)]
    lam = trainer.model.lambda_identity
    assert weights == [lam, lam, 0.0, 0.0, 0.0, 0.0]


def test_paper_proportion_and_fallback() -> None:
    paper = TrainerSettings(max_steps=200_000, identity_fraction=0.05)
    assert paper.identity_end == 10_000  # CycleGAN-VC2: 1e4 of 2e5 iterations
    assert TrainerSettings(max_steps=1000, identity_fraction=0.05).identity_end == 50
    assert TrainerSettings(max_steps=1000).identity_end is None  # the model's identity_steps decide
    with pytest.raises(ConfigError, match="identity_fraction"):
        TrainerSettings(identity_fraction=1.5)
