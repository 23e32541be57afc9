"""The web app's service layer without a browser or gradio: folder checks, override
checks, runs listing, conversion and its error messages, the one-training-at-a-time
job with Stop (the training itself faked, so this runs in a second)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from app_tiny import TINY_MEL, speech_like, write_run, write_wav

from voiceconv.app.runs import OutsideAllowedFolders, RunIndex, resolve_inside
from voiceconv.app.service import AppService, TrainingBusy, TrainingJob, check_overrides
from voiceconv.errors import AudioError, ConfigError


@pytest.fixture
def service(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "tiny")
    return AppService(runs, tmp_path / "work", data_dirs=[tmp_path / "data"])


def test_resolve_inside_refuses_paths_outside_and_links_out(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert resolve_inside(root / "a", [root]) == (root / "a").resolve()
    assert resolve_inside(str(root / "a" / ".." / "a"), [root]) == (root / "a").resolve()
    with pytest.raises(OutsideAllowedFolders, match="outside the folders"):
        resolve_inside(root / ".." / "elsewhere", [root])
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(OutsideAllowedFolders):
        resolve_inside(root / "link", [root])
    with pytest.raises(ConfigError, match="empty"):
        resolve_inside("  ", [root])


def test_overrides_allow_settings_and_refuse_paths():
    ok = check_overrides("model=cyclegan_vc2_small\ntrainer.batch_size=2\n# comment\n\nmel.n_mels=40\n"
                         "data.crop_frames=32\nseed=3")
    assert ok == ["model=cyclegan_vc2_small", "trainer.batch_size=2", "mel.n_mels=40", "data.crop_frames=32",
                  "seed=3"]
    for bad in ("out_dir=/tmp/x", "data.a_dir=/etc", "data.cache_dir=/tmp", "hydra.run.dir=/tmp",
                "experiment=vcc2018", "trainer.batch_size", "+data.root=/"):
        with pytest.raises(ConfigError, match="override"):
            check_overrides(bad)


def test_runs_listing_speakers_steps_vocoders_and_scores(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "group" / "r1", speakers=("rms", "slt"))
    write_run(runs / ".hidden" / "r2")
    (runs / "broken" / "checkpoints").mkdir(parents=True)
    (runs / "broken" / "checkpoints" / "last.ckpt").write_bytes(b"junk")
    report = runs / "group" / "r1" / "eval" / "a2b-1" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"means": {"mcd": 7.25, "speaker_accuracy": 1.0}}))
    index = RunIndex(runs)
    [run] = index.runs()
    assert run.name == "group/r1" and run.speakers == {"A": "rms", "B": "slt"}
    assert run.label("a2b") == "rms -> slt" and run.label("b2a") == "slt -> rms"
    assert run.mel_config == TINY_MEL and run.step == 0 and run.model == "maskcyclegan_vc_small"
    assert run.scores == {"MCD": 7.25, "speaker acc.": 1.0}
    row = run.row()
    assert row[0] == "group/r1" and "rms" in row[1] and "MCD 7.25" in row[5]
    with pytest.raises(ConfigError, match="no such run"):
        index.get("nope")


def test_convert_writes_a_wav_and_two_mel_images(service, tmp_path):
    src = write_wav(tmp_path / "data" / "in.wav", speech_like(1.2, 16000), 16000)
    res = service.convert(src, "tiny", "b2a")
    wav, sr = sf.read(res.output)
    assert sr == TINY_MEL.sample_rate and abs(len(wav) / sr - 1.2) < 0.01 and np.abs(wav).max() > 1e-3
    assert res.output.is_relative_to(service.work_dir)
    assert res.input_mel.stat().st_size > 1000 and res.output_mel.stat().st_size > 1000
    assert res.description == "high -> low" and res.seconds > 0 and abs(res.input_seconds - 1.2) < 0.01


def test_convert_errors_name_the_file(service, tmp_path):
    bad = tmp_path / "data" / "oops.wav"
    bad.parent.mkdir(parents=True)
    bad.write_text("hello")
    with pytest.raises(AudioError, match=r"^oops\.wav: "):
        service.convert(bad, "tiny", "a2b")
    with pytest.raises(OutsideAllowedFolders):
        service.convert(tmp_path / "elsewhere.wav", "tiny", "a2b")
    with pytest.raises(ConfigError, match="direction"):
        service.convert(bad, "tiny", "sideways")
    with pytest.raises(ConfigError, match="no audio given"):
        service.convert(None, "tiny", "a2b")


def test_one_training_at_a_time_and_stop(service, tmp_path, monkeypatch):
    """The job logic around ``train_vc`` (faked: steps until stopped)."""
    from voiceconv.training import vc_run
    from voiceconv.training.vc_trainer import TrainResult

    started = threading.Event()

    def fake_run(cfg, stop=None, on_step=None):
        step = 0
        while not stop() and step < int(cfg.trainer.max_steps):
            step += 1
            on_step(step, {"g_total": 1.0 / step, "d_total": 0.5})
            started.set()
            time.sleep(0.01)
        return TrainResult(step, None, {}, stopped=stop())

    monkeypatch.setattr(vc_run, "train_vc", fake_run)
    for name in ("a", "b"):
        write_wav(tmp_path / "data" / name / "x.wav", speech_like(0.5, 8000), 8000)
    job = service.start_training("fake", str(tmp_path / "data" / "a"), str(tmp_path / "data" / "b"),
                                 steps=100000)
    assert started.wait(30)
    with pytest.raises(TrainingBusy, match="one at a time"):
        service.start_training("fake2", str(tmp_path / "data" / "a"), str(tmp_path / "data" / "b"))
    service.stop_training(wait_s=30)
    assert job.state == "stopped" and 1 <= job.step < 100000
    assert "stopped before the first step" in job.message  # the fake wrote no checkpoint
    table = job.loss_table()
    assert set(table["loss"]) == {"g_total", "d_total"} and len(table["step"]) == 2 * len(job.losses)
    assert service.stop_training() == "no training is running"


def test_job_summary_shows_rate_eta_and_losses():
    job = TrainingJob("r", run_dir=None, max_steps=100)  # type: ignore[arg-type]
    for step in range(1, 11):
        job.on_step(step, {"g_total": 2.0, "d_total": 0.25})
        time.sleep(0.002)
    text = job.summary()
    assert "training" in text and "step 10/100" in text and "steps/s" in text and "ETA" in text
    assert "g_total 2.000" in text and "d_total 0.250" in text
