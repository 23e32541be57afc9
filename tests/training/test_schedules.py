"""Learning-rate schedules: constant, then linear to 0; G and D each their own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vc_tiny import make_trainer

from voiceconv.errors import ConfigError
from voiceconv.training.schedules import LinearDecayLR

torch.set_num_threads(1)


def _expected(base: float, step: int, decay_start: int, total: int) -> float:
    # piecewise-linear reference: base until decay_start, 0 at total and after
    return float(np.interp(step, [0, decay_start, total], [base, base, 0.0]))


def _opt(lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr, betas=(0.5, 0.999))


def test_two_optimizers_decay_independently_to_zero():
    opt_g, opt_d = _opt(2e-4), _opt(1e-4)
    sched_g = LinearDecayLR(opt_g, decay_start=4, total_steps=10)
    sched_d = LinearDecayLR(opt_d, decay_start=4, total_steps=10)
    for step in range(13):
        assert opt_g.param_groups[0]["lr"] == pytest.approx(_expected(2e-4, step, 4, 10), abs=1e-15)
        assert opt_d.param_groups[0]["lr"] == pytest.approx(_expected(1e-4, step, 4, 10), abs=1e-15)
        opt_g.step()
        sched_g.step()
        opt_d.step()
        sched_d.step()
    assert opt_g.param_groups[0]["lr"] == 0.0 and opt_d.param_groups[0]["lr"] == 0.0


def test_state_dict_round_trip_and_reschedule(tmp_path):
    opt = _opt(1e-3)
    sched = LinearDecayLR(opt, decay_start=2, total_steps=8)
    for _ in range(5):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "sched.pt")
    state = torch.load(tmp_path / "sched.pt", weights_only=True)  # plain values only

    opt2 = _opt(1e-3)
    sched2 = LinearDecayLR(opt2, decay_start=2, total_steps=8)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(_expected(1e-3, 5, 2, 8), abs=1e-15)
    sched2.reschedule(decay_start=2, total_steps=20)  # a resumed run with a longer schedule
    assert opt2.param_groups[0]["lr"] == pytest.approx(_expected(1e-3, 5, 2, 20), abs=1e-15)


@pytest.mark.parametrize("decay_start,total", [(5, 4), (-1, 4), (0, 0)])
def test_bad_schedule_is_config_error(decay_start, total):
    with pytest.raises(ConfigError):
        LinearDecayLR(_opt(1e-3), decay_start=decay_start, total_steps=total)


def test_trainer_decays_g_and_d_with_their_own_base_rates(tmp_path):
    """The public MaskCycleGAN-VC code decayed D's rate on G's optimizer; ours must not."""
    trainer = make_trainer(tmp_path / "run", max_steps=4, decay_start=1, total_steps=4,
                           lr_g=2e-4, lr_d=1e-4, model_name="cyclegan_vc2_small")
    for step in range(1, 5):
        trainer.train_step()
        assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(_expected(2e-4, step, 1, 4), abs=1e-15)
        assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(_expected(1e-4, step, 1, 4), abs=1e-15)
    assert trainer.opt_g.param_groups[0]["lr"] == 0.0
