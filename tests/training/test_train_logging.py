"""TensorBoard logging: scalars, mel figures and vocoded audio land in the event file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from vc_tiny import make_trainer

from voiceconv.training.logging import TrainLogger, mel_figure

torch.set_num_threads(1)


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "audio": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_scalars_images_and_audio_are_written(tmp_path):
    sr = 8000

    def vocode(log_mel: np.ndarray) -> np.ndarray:  # a known signal: 1 s of 440 Hz
        assert log_mel.shape == (16, 20)
        return 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)

    logger = TrainLogger(tmp_path / "tb", vocode=vocode, sample_rate=sr)
    logger.scalars(3, {"loss/g": 1.5, "loss/d": torch.tensor(0.25)})
    logger.scalars(4, {"loss/g": 1.0})
    mel = np.random.default_rng(0).normal(size=(16, 20))
    logger.mel_images(4, "mels/A2B", {"source": mel, "converted": mel + 1, "cycled": torch.tensor(mel)})
    logger.audio(4, "audio/A2B", mel)
    logger.close()

    acc = _events(tmp_path / "tb")
    assert [(e.step, e.value) for e in acc.Scalars("loss/g")] == [(3, 1.5), (4, 1.0)]
    assert acc.Scalars("loss/d")[0].value == pytest.approx(0.25)
    assert "mels/A2B" in acc.Tags()["images"]
    clip = acc.Audio("audio/A2B")[0]
    assert clip.sample_rate == sr and clip.length_frames == sr


def test_disabled_logger_writes_nothing(tmp_path):
    logger = TrainLogger(tmp_path / "tb", enabled=False, vocode=lambda m: m.ravel())
    logger.scalars(1, {"x": 1.0})
    logger.mel_images(1, "m", {"a": np.zeros((4, 4))})
    logger.audio(1, "a", np.zeros((4, 4)))
    logger.close()
    assert not (tmp_path / "tb").exists()


def test_mel_figure_has_one_panel_per_mel():
    fig = mel_figure({"source": np.zeros((8, 10)), "converted": np.ones((8, 10))})
    images = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in images] == ["source", "converted"]


def test_trainer_logs_losses_learning_rates_and_examples(tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer(run, max_steps=2, log_every=1, image_every=2, decay_start=0, total_steps=4)
    trainer.fit()
    acc = _events(run / "tb")
    lr_g = [e.value for e in acc.Scalars("lr/generator")]
    lr_d = [e.value for e in acc.Scalars("lr/discriminator")]
    assert lr_g == pytest.approx([2e-4 * 3 / 4, 2e-4 * 2 / 4])
    assert lr_d == pytest.approx([1e-4 * 3 / 4, 1e-4 * 2 / 4])
    tags = acc.Tags()
    assert {"loss/g_total", "loss/d_total", "loss/cycle", "speed/steps_per_s"} <= set(tags["scalars"])
    assert {"mels/A2B", "mels/B2A"} <= set(tags["images"])


def test_step_rate_and_train_scalars(monkeypatch):
    from voiceconv.training import logging as tl

    clock = iter([10.0, 12.0, 13.0])
    monkeypatch.setattr(tl.time, "perf_counter", lambda: next(clock))
    rate = tl.StepRate(100)                 # t = 10 s at step 100
    assert rate(150) == pytest.approx(25.0)  # 50 steps in 2 s
    assert rate(160) == pytest.approx(10.0)  # 10 steps in 1 s since the previous call
    w = torch.nn.Parameter(torch.zeros(1))
    opt_g, opt_d = torch.optim.SGD([w], lr=0.1), torch.optim.SGD([w], lr=0.2)
    assert tl.train_scalars({"g": 1.5}, opt_g, opt_d, 3.0) == {
        "loss/g": 1.5, "lr/generator": 0.1, "lr/discriminator": 0.2, "speed/steps_per_s": 3.0}
