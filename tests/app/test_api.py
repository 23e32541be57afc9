"""The web app's API through ``gradio_client`` against a running ``voiceconv-app``:
convert both directions, bad uploads and vocoders as messages (and the app keeps
serving), several files as a zip, a tiny training to completion, one training at a
time, Stop and Resume, evaluation, folders outside the allowed ones refused."""

from __future__ import annotations

import os
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from app_tiny import TINY_MEL, TINY_TRAIN, speech_like, write_wav

from voiceconv.models.base import model_payload
from voiceconv.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # the client's telemetry too: no network
TINY_OVERRIDES = "\n".join(TINY_TRAIN)


@pytest.fixture
def client(served, tmp_path):
    from gradio_client import Client

    return Client(served.url, verbose=False, download_files=str(tmp_path / "downloads"),
                  analytics_enabled=False)


def _app_error(call):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        call()
    return str(info.value)


def _train(client, name: str, steps: int, served, submit: bool = False):
    args = (name, str(served.data / "low"), str(served.data / "high"), [], [], "", "",
            "maskcyclegan_vc_small", steps, TINY_OVERRIDES)
    if submit:
        return client.submit(*args, api_name="/train")
    return client.predict(*args, api_name="/train")


def _wait_for_step(client, at_least: int, timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = client.predict(api_name="/progress")[0]
        found = re.search(r": training \| step (\d+)/", text)
        if found and int(found.group(1)) >= at_least:
            return text
        time.sleep(0.3)
    raise AssertionError(f"training did not reach step {at_least}: {text}")


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_convert_a_file_both_directions(client, served, direction):
    from gradio_client import handle_file

    src = write_wav(served.inputs / f"speech_{direction}.wav", speech_like(1.5, 16000, seed=3), 16000)
    out = client.predict(handle_file(str(src)), "tiny", direction, "griffinlim", api_name="/convert")
    wav, sr = sf.read(out)
    assert sr == TINY_MEL.sample_rate  # the run's MelConfig rate, whatever the input's
    assert abs(len(wav) / sr - 1.5) < 0.02
    assert np.sqrt(np.mean(wav ** 2)) > 1e-3 and np.all(np.isfinite(wav))
    assert Path(out).name == f"speech_{direction}_{direction}.wav"


def test_bad_upload_is_a_message_naming_the_file_and_the_app_keeps_serving(client, served):
    from gradio_client import handle_file

    bad = served.inputs / "not_speech.wav"
    bad.write_text("this is not audio")
    message = _app_error(lambda: client.predict(handle_file(str(bad)), "tiny", "a2b", "griffinlim",
                                                api_name="/convert"))
    assert "not_speech.wav" in message and "audio" in message
    assert str(served.runs) not in message  # the upload's temp folder is not shown

    short = write_wav(served.inputs / "too_short.wav", speech_like(0.01, 8000), 8000)
    message = _app_error(lambda: client.predict(handle_file(str(short)), "tiny", "a2b", "griffinlim",
                                                api_name="/convert"))
    assert "too_short.wav" in message and "too short" in message

    assert "no such run" in _app_error(lambda: client.predict(
        handle_file(str(short)), "nope", "a2b", "griffinlim", api_name="/convert"))
    good = write_wav(served.inputs / "after.wav", speech_like(1.0, 8000), 8000)
    assert sf.info(client.predict(handle_file(str(good)), "tiny", "a2b", "griffinlim",
                                  api_name="/convert")).frames == 8000


def test_simultaneous_conversions_queue_and_all_succeed(client, served):
    from gradio_client import handle_file

    srcs = [write_wav(served.inputs / f"together{i}.wav", speech_like(1.0 + 0.25 * i, 8000, seed=i), 8000)
            for i in range(4)]
    jobs = [client.submit(handle_file(str(s)), "tiny", "a2b", "griffinlim", api_name="/convert") for s in srcs]
    for i, job in enumerate(jobs):
        assert abs(sf.info(job.result(timeout=120)).duration - (1.0 + 0.25 * i)) < 0.02


def test_upload_above_the_size_limit_is_refused(client, served):
    from gradio_client import handle_file

    big = write_wav(served.inputs / "too_big.wav", speech_like(40.0, 44100), 44100)  # ~3.5 MB > 2 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size of 2097152 bytes"):
        client.predict(handle_file(str(big)), "tiny", "a2b", "griffinlim", api_name="/convert")
    import httpx  # the server refuses it too (not only the client's own check)

    with open(big, "rb") as fh:
        resp = httpx.post(f"{served.url}gradio_api/upload", files={"files": ("too_big.wav", fh)}, timeout=60)
    assert resp.status_code == 413, (resp.status_code, resp.text[:200])
    ok = write_wav(served.inputs / "small_enough.wav", speech_like(1.0, 8000), 8000)
    assert sf.info(client.predict(handle_file(str(ok)), "tiny", "a2b", "griffinlim",
                                  api_name="/convert")).frames == 8000


def test_vocoder_with_other_mel_settings_is_refused(client, served):
    """A trained vocoder whose MelConfig differs from the run's: a message naming it."""
    from gradio_client import handle_file

    from voiceconv.audio.mel import MelConfig
    from voiceconv.training.checkpoint import save_checkpoint
    from voiceconv.training.vocoder_trainer import VOCODER_CHECKPOINT_FORMAT
    from voiceconv.vocoders.hifigan import HiFiGANGenerator

    other = MelConfig(sample_rate=16000, n_fft=512, win_length=512, hop_length=128, n_mels=16, fmax=8000.0)
    net = HiFiGANGenerator(other.to_dict(), upsample_rates=(8, 16), upsample_kernel_sizes=(16, 32),
                           upsample_initial_channel=8, resblock="2", resblock_kernel_sizes=(3,),
                           resblock_dilation_sizes=((1,),))
    save_checkpoint({"format": VOCODER_CHECKPOINT_FORMAT, "step": 1, "model": model_payload(net),
                     "mel_config": other.to_dict()},
                    served.runs / "voc16k" / "checkpoints" / "last.ckpt")
    src = write_wav(served.inputs / "for_vocoder.wav", speech_like(1.0, 8000), 8000)
    message = _app_error(lambda: client.predict(handle_file(str(src)), "tiny", "a2b", "voc16k",
                                                api_name="/convert"))
    assert "voc16k" in message and "sample_rate" in message


def test_convert_many_returns_a_zip_and_a_line_per_file(client, served):
    from gradio_client import handle_file

    files = [write_wav(served.inputs / f"many{i}.wav", speech_like(0.6 + 0.2 * i, 8000, seed=i), 8000)
             for i in range(3)]
    bad = served.inputs / "broken.flac"
    bad.write_bytes(b"\x00" * 100)
    zip_path, text = client.predict([handle_file(str(f)) for f in [*files, bad]], "tiny", "b2a",
                                    "griffinlim", api_name="/convert_many")
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["many0.wav", "many1.wav", "many2.wav"]
        wav, sr = sf.read(zf.open("many2.wav"))
    assert sr == 8000 and abs(len(wav) / sr - 1.0) < 0.02 and np.abs(wav).max() > 1e-3
    assert "3 converted, 1 failed" in text and "broken.flac" in text


def test_train_tiny_run_to_completion_then_convert_with_it(client, served):
    text = _train(client, "api_done", 3, served)[0]
    assert "finished" in text and "step 3/3" in text
    ckpt = load_checkpoint(served.runs / "api_done" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 3 and ckpt["speakers"] == {"A": "low", "B": "high"}
    rows = client.predict("api_done", "api_done", "api_done", api_name="/runs")[0]["data"]
    row = next(r for r in rows if r[0] == "api_done")
    assert "low" in row[1] and "high" in row[1] and row[3] == "3"
    from gradio_client import handle_file

    src = write_wav(served.inputs / "trained.wav", speech_like(1.0, 8000), 8000)
    assert sf.info(client.predict(handle_file(str(src)), "api_done", "b2a", "griffinlim",
                                  api_name="/convert")).samplerate == 8000


def test_train_from_uploaded_recordings(client, served):
    from gradio_client import handle_file

    ups = {role: [handle_file(str(p)) for p in sorted((served.data / folder).glob("*.wav"))]
           for role, folder in (("A", "low"), ("B", "high"))}
    text = client.predict("api_uploads", "", "", ups["A"], ups["B"], "lo", "hi", "maskcyclegan_vc_small", 2,
                          TINY_OVERRIDES, api_name="/train")[0]
    assert "finished" in text
    run = served.runs / "api_uploads"
    assert sorted(p.name for p in (run / "data" / "lo").iterdir()) == ["utt0.wav", "utt1.wav", "utt2.wav"]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["speakers"] == {"A": "lo", "B": "hi"}
    assert "exists" in _app_error(lambda: client.predict(
        "api_uploads", "", "", ups["A"], ups["B"], "lo", "hi", "maskcyclegan_vc_small", 2, TINY_OVERRIDES,
        api_name="/train"))


def test_one_training_at_a_time_stop_writes_a_checkpoint_and_resume_continues(client, served):
    job = _train(client, "api_stop", 100000, served, submit=True)
    _wait_for_step(client, 2)
    busy = _app_error(lambda: _train(client, "api_other", 3, served))
    assert "one at a time" in busy and "api_stop" in busy
    assert not (served.runs / "api_other").exists()

    stopped = client.predict(api_name="/stop")
    assert "api_stop" in stopped
    final = job.result(timeout=120)[0]
    assert "stopped" in final and "Resume" in final
    step = load_checkpoint(served.runs / "api_stop" / "checkpoints" / "last.ckpt")["step"]
    assert 2 <= step < 100000
    assert f"step_{step:07d}.ckpt" in os.listdir(served.runs / "api_stop" / "checkpoints")

    resumed = client.predict("api_stop", step + 3, api_name="/resume")[0]
    assert "finished" in resumed and f"step {step + 3}/{step + 3}" in resumed
    ckpt = load_checkpoint(served.runs / "api_stop" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == step + 3 and ckpt["sampler"]["batches_drawn"] == step + 3
    assert "kind: cache" in (served.runs / "api_stop" / "config.yaml").read_text()  # recordings not reread
    assert "no training is running" in client.predict(api_name="/stop")


def test_training_refuses_folders_outside_and_path_overrides(client, served, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    msg = _app_error(lambda: client.predict("api_out", str(outside), str(served.data / "high"), [], [], "", "",
                                            "maskcyclegan_vc_small", 3, "", api_name="/train"))
    assert "outside the folders this app may use" in msg and str(outside) in msg
    msg = _app_error(lambda: client.predict("api_out", str(served.data / "low"), str(served.data / "high"),
                                            [], [], "", "", "maskcyclegan_vc_small", 3,
                                            f"data.cache_dir={tmp_path}", api_name="/train"))
    assert "data.cache_dir" in msg
    assert "run name" in _app_error(lambda: client.predict(
        "../escape", str(served.data / "low"), str(served.data / "high"), [], [], "", "",
        "maskcyclegan_vc_small", 3, "", api_name="/train"))


def test_evaluate_writes_a_report_into_the_run(client, served):
    md, plots = client.predict("tiny", "a2b", str(served.data / "held_out" / "low"),
                               str(served.data / "held_out" / "high"), False, api_name="/evaluate")
    assert "1 utterance pairs" in md and "| MCD" in md
    assert len(plots) == 1 and Path(plots[0]["image"]).stat().st_size > 1000
    reports = list((served.runs / "tiny" / "eval").glob("a2b-*/report.json"))
    assert len(reports) == 1
    rows = client.predict("tiny", "tiny", "tiny", api_name="/runs")[0]["data"]
    assert "MCD" in next(r for r in rows if r[0] == "tiny")[5]

