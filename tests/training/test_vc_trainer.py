"""The CycleGAN-VC training loop: one step against a hand-written reference update,
exact resume, divergence handling, run-folder contents, resume checks."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from vc_tiny import MEL_CFG, flat_params, make_trainer

from voiceconv.audio.stats import SpeakerStats
from voiceconv.errors import CheckpointError, MelConfigMismatch, TrainingDiverged
from voiceconv.training.checkpoint import load_checkpoint
from voiceconv.training.seeding import seed_everything

torch.set_num_threads(1)


def _reference_step(model, a, b, step, lr_g=2e-4, lr_d=1e-4):
    """The papers' update written out directly: G gradients of the generator loss only
    (torch.autograd.grad w.r.t. generator parameters), one Adam step; then D gradients
    of the discriminator loss on the detached fakes, one Adam step."""
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr_d, betas=(0.5, 0.999))
    out = model.generator_step(a, b, step)
    g_params = list(model.generator_parameters())
    for p, g in zip(g_params, torch.autograd.grad(out.loss, g_params), strict=True):
        p.grad = g
    opt_g.step()
    d_loss, _ = model.discriminator_loss(a, b, out)
    d_params = list(model.discriminator_parameters())
    for p, g in zip(d_params, torch.autograd.grad(d_loss, d_params), strict=True):
        p.grad = g
    opt_d.step()


@pytest.mark.parametrize("model_name", ["maskcyclegan_vc_small", "cyclegan_vc2_small"])
def test_one_step_equals_reference_update(tmp_path, model_name):
    trainer = make_trainer(tmp_path / "run", max_steps=1, model_name=model_name)
    reference = copy.deepcopy(trainer.model)
    before = flat_params(trainer.model)
    a, b = trainer.sampler.batch_at(0)

    torch.manual_seed(123)  # the masks of MaskCycleGAN-VC come from torch's generator
    _reference_step(reference, a, b, step=0)
    torch.manual_seed(123)
    logs = trainer.train_step().logs

    assert trainer.step == 1
    assert all(torch.isfinite(v).all() for v in logs.values())
    g_new = torch.cat([p.detach().reshape(-1) for p in trainer.model.generator_parameters()])
    d_new = torch.cat([p.detach().reshape(-1) for p in trainer.model.discriminator_parameters()])
    g_ref = torch.cat([p.detach().reshape(-1) for p in reference.generator_parameters()])
    d_ref = torch.cat([p.detach().reshape(-1) for p in reference.discriminator_parameters()])
    torch.testing.assert_close(g_new, g_ref, rtol=0, atol=1e-7)
    torch.testing.assert_close(d_new, d_ref, rtol=0, atol=1e-7)
    assert not torch.equal(flat_params(trainer.model), before)  # something was learnt
    # after the step every discriminator parameter is trainable again
    assert all(p.requires_grad for p in trainer.model.discriminator_parameters())


def test_resume_continues_the_same_trajectory(tmp_path):
    full = make_trainer(tmp_path / "full", max_steps=4, ckpt_every=2)
    full.fit()

    first = make_trainer(tmp_path / "part", max_steps=2, ckpt_every=2)
    first.fit()
    del first  # "killed" after its step-2 checkpoint
    seed_everything(999)  # disturb every global random stream
    # a different seed builds different weights and a different sampler: all must be restored
    resumed = make_trainer(tmp_path / "part", max_steps=4, ckpt_every=2, seed=7)
    result = resumed.fit()

    assert result.step == 4
    torch.testing.assert_close(flat_params(resumed.model), flat_params(full.model), rtol=0, atol=1e-7)
    for opt_r, opt_f in ((resumed.opt_g, full.opt_g), (resumed.opt_d, full.opt_d)):
        assert opt_r.param_groups[0]["lr"] == opt_f.param_groups[0]["lr"]
    assert load_checkpoint(tmp_path / "part" / "checkpoints" / "last.ckpt")["step"] == 4


def test_stop_checkpoints_the_current_step_and_resume_continues(tmp_path):
    """``fit(stop=...)`` (the web app's Stop button) writes the step it stopped at, off the
    ``ckpt_every`` grid, and a plain ``fit()`` later continues the uninterrupted trajectory."""
    full = make_trainer(tmp_path / "full", max_steps=5, ckpt_every=100)
    full.fit()

    seen: list[tuple[int, set[str]]] = []
    part = make_trainer(tmp_path / "part", max_steps=5, ckpt_every=100)
    result = part.fit(stop=lambda: len(seen) >= 3, on_step=lambda s, logs: seen.append((s, set(logs))))
    assert result.stopped and result.step == 3
    assert [s for s, _ in seen] == [1, 2, 3]
    assert {"g_total", "d_total"} <= seen[0][1]
    assert load_checkpoint(tmp_path / "part" / "checkpoints" / "last.ckpt")["step"] == 3
    assert (tmp_path / "part" / "checkpoints" / "step_0000003.ckpt").is_file()

    resumed = make_trainer(tmp_path / "part", max_steps=5, ckpt_every=100, seed=7)
    again = resumed.fit()
    assert not again.stopped and again.step == 5
    torch.testing.assert_close(flat_params(resumed.model), flat_params(full.model), rtol=0, atol=1e-7)


def test_stop_before_any_step_writes_nothing(tmp_path):
    trainer = make_trainer(tmp_path / "run", max_steps=3)
    result = trainer.fit(stop=lambda: True)
    assert result.stopped and result.step == 0 and result.last_checkpoint is None
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_fresh_run_with_other_seed_differs(tmp_path):
    """Control for the resume test: a different seed really gives another trajectory."""
    a = make_trainer(tmp_path / "a", max_steps=2)
    a.fit()
    b = make_trainer(tmp_path / "b", max_steps=2, seed=7)
    b.fit()
    assert not torch.allclose(flat_params(a.model), flat_params(b.model))


@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch, which):
    run = tmp_path / "run"
    make_trainer(run, max_steps=2, ckpt_every=2).fit()
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    trainer = make_trainer(run, max_steps=4, ckpt_every=1)
    if which == "generator":
        original = trainer.model.generator_step

        def broken(a, b, step, *rest):
            out = original(a, b, step, *rest)
            out.loss = out.loss * float("nan")
            return out

        monkeypatch.setattr(trainer.model, "generator_step", broken)
    else:
        original_d = trainer.model.discriminator_loss

        def broken_d(a, b, out):
            loss, logs = original_d(a, b, out)
            return loss + float("inf"), logs

        monkeypatch.setattr(trainer.model, "discriminator_loss", broken_d)

    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "step 3" in message and which in message and "\n" not in message
    assert last.read_bytes() == before
    assert load_checkpoint(last)["step"] == 2
    assert not (run / "checkpoints" / "step_0000003.ckpt").exists()


def test_run_folder_contents(tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer(run, max_steps=3, ckpt_every=2, keep_last=1)
    trainer.fit()
    assert json.loads((run / "mel_config.json").read_text()) == MEL_CFG.to_dict()
    for role in ("A", "B"):
        saved = SpeakerStats.load(run / "stats" / f"{role}.json")
        assert saved.mean.tolist() == trainer.info.stats[role].mean.tolist()
    assert json.loads((run / "stats" / "speakers.json").read_text()) == {"A": "spk_a", "B": "spk_b"}
    assert "tiny test run" in (run / "config.yaml").read_text()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step_0000003.ckpt"]  # keep_last=1; a final checkpoint at 3
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["speakers"] == {"A": "spk_a", "B": "spk_b"}
    assert ckpt["mel_config"] == MEL_CFG.to_dict()
    assert set(ckpt["model"]["state_dict"]) == set(trainer.model.state_dict())


def test_resume_refuses_other_speakers_and_mel_config(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, max_steps=1, ckpt_every=1).fit()

    other = make_trainer(run, max_steps=2)
    other.info.speakers = {"A": "someone", "B": "else"}
    with pytest.raises(CheckpointError, match="last.ckpt"):
        other.fit()

    other = make_trainer(run, max_steps=2)
    other.info.mel_config = type(MEL_CFG)(**{**MEL_CFG.to_dict(), "hop_length": 32})
    with pytest.raises(MelConfigMismatch, match="hop_length"):
        other.fit()

    other = make_trainer(run, max_steps=2, model_overrides={"base_channels": 8})
    with pytest.raises(CheckpointError, match=r"base_channels=.*\(configured 8\)"):
        other.fit()


def test_finished_run_is_not_trained_further(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, max_steps=2, ckpt_every=2).fit()
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    result = make_trainer(run, max_steps=2, ckpt_every=2).fit()
    assert result.step == 2
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


def test_bf16_autocast_step_on_cpu(tmp_path):
    trainer = make_trainer(tmp_path / "run", max_steps=1, precision="bf16")
    before = flat_params(trainer.model)
    logs, out, _, _ = trainer.train_step()
    assert out.fake_b.dtype == torch.bfloat16  # the nets ran under autocast
    assert all(torch.isfinite(v).all() for v in logs.values())
    after = flat_params(trainer.model)
    assert after.dtype == torch.float32 and not torch.equal(after, before)  # fp32 master weights
