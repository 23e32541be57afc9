"""voiceconv-stream end to end with a fake streaming converter (and a fake sounddevice
for the live mode): files written as gain * input, one line per bad input, the
summary and JSON report, option checks, device errors before the model is loaded."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conversion"))
from stream_fakes import DelayConverter, FakeSounddevice  # noqa: E402

from voiceconv.cli.stream import main  # noqa: E402
from voiceconv.conversion import live, stream_runner  # noqa: E402
from voiceconv.errors import CheckpointError  # noqa: E402

SR = 8000
REPO = Path(__file__).resolve().parents[2]


def wav(path: Path, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.4 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
    return path


@pytest.fixture
def loaded(monkeypatch) -> dict:
    """Replace the checkpoint loader with a delay-line fake; records what it was asked."""
    seen: dict = {}

    def load(checkpoint, **kwargs):
        seen.update(kwargs, checkpoint=checkpoint)
        seen["converter"] = DelayConverter(SR, 80, 200, gain=0.5)
        return seen["converter"]

    monkeypatch.setattr(stream_runner, "load_converter", load)
    return seen


def test_file_mode_end_to_end(loaded: dict, tmp_path: Path, capsys) -> None:
    a, b = wav(tmp_path / "in" / "a.wav", 0.4, 1), wav(tmp_path / "in" / "b.wav", 0.3, 2)
    bad = tmp_path / "in" / "bad.wav"
    bad.write_text("not audio\n")
    out, report = tmp_path / "out", tmp_path / "rep" / "stream.json"
    rc = main(["--checkpoint", "m.ckpt", "--direction", "b2a", "--vocoder", "hifigan.ckpt",
               "--block-ms", "46", "--mode", "window", "--gain", "auto", "--threads", "2",
               "--input", str(a), str(bad), str(b), "--out", str(out), "--min-seconds", "2",
               "--report-json", str(report)])
    cap = capsys.readouterr()
    assert rc == 1  # one input failed, the others were written
    assert {k: v for k, v in loaded.items() if k != "converter"} == {
        "checkpoint": "m.ckpt", "direction": "b2a", "vocoder": "hifigan.ckpt", "block_ms": 46.0,
        "mode": "window", "threads": 2}  # gain auto: per file, by the runner
    assert f"{a} -> {out / 'a.wav'}" in cap.out and f"{b} -> {out / 'b.wav'}" in cap.out
    bad_lines = [ln for ln in cap.err.splitlines() if str(bad) in ln]
    assert len(bad_lines) == 1 and "not an audio file" in bad_lines[0]
    for src in (a, b):  # each input brought to peak 0.95 (gain auto), through the fake's gain 0.5,
        got, _ = sf.read(out / src.name, dtype="float32")  # and back at the input's level
        x = sf.read(src, dtype="float32")[0]
        np.testing.assert_allclose(got, 0.5 * x, atol=1 / 32768 + 1e-6)
    for words in ("compute per block: median", "p99", "real-time factor", "deadline misses",
                  "algorithmic latency: 25.0 ms", "resident memory", "2 written"):
        assert words in cap.out, words
    data = json.loads(report.read_text())
    assert data["mode"] == "file" and data["passes"] >= 3 and data["seconds_streamed"] >= 2.0
    assert len(data["input_gains"]) == 2 and data["input_gains"][0] > 1
    assert loaded["converter"].resets == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav"]


def test_input_list_and_measure_only(loaded: dict, tmp_path: Path, capsys) -> None:
    wav(tmp_path / "data" / "x.wav", 0.2, 3)
    wav(tmp_path / "y.wav", 0.2, 4)
    lst = tmp_path / "data" / "list.txt"
    lst.write_text("# inputs\nx.wav\n\n../y.wav\n")
    assert main(["--checkpoint", "m.ckpt", "--direction", "a2b", "--input-list", str(lst)]) == 0
    cap = capsys.readouterr()
    assert "measuring only" in cap.err and "2 input(s) streamed" in cap.out
    assert loaded["converter"].pushed == round(0.4 * SR)
    assert sorted(p.name for p in tmp_path.rglob("*.wav")) == ["x.wav", "y.wav"]  # nothing written
    missing = str(tmp_path / "nope.txt")
    assert main(["--checkpoint", "m.ckpt", "--direction", "a2b", "--input-list", missing]) == 2
    assert "cannot read the input list" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--direction", "a2b", "--input", "a.wav"], "--checkpoint is required"),
    (["--checkpoint", "m", "--input", "a.wav"], "--direction is required"),
    (["--input", "a.wav", "--seconds", "3"], "--seconds goes with --live"),
    (["--live", "--out", "o"], "--out goes with --input"),
    (["--live", "--min-seconds", "5"], "--min-seconds goes with --input"),
    (["--input", "a.wav", "--threads", "0"], "--threads must be >= 1"),
    (["--input", "a.wav", "--block-ms", "-4"], "--block-ms must be > 0"),
    (["--live", "--seconds", "0"], "--seconds must be > 0"),
    (["--live", "--gain", "auto"], "--gain auto needs whole files"),
    (["--input", "a.wav", "--gain", "-1"], "--gain must be a positive number"),
])
def test_option_problems_exit_2(args: list[str], words: str, capsys) -> None:
    if "is required" not in words:
        args = ["--checkpoint", "m", "--direction", "a2b", *args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"voiceconv-stream: {err.split(': ', 1)[1]}" and words in err


def test_argparse_rejects_bad_values_and_two_sources() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--checkpoint", "m", "--direction", "a2b", "--input", "a.wav", "--gain", "loud"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--checkpoint", "m", "--direction", "a2b", "--input", "a.wav", "--live"])


def test_a_bad_checkpoint_is_one_line(monkeypatch, tmp_path: Path, capsys) -> None:
    def load(checkpoint, **kwargs):
        raise CheckpointError(checkpoint, "not a voiceconv checkpoint")

    monkeypatch.setattr(stream_runner, "load_converter", load)
    src = wav(tmp_path / "a.wav", 0.2, 1)
    assert main(["--checkpoint", "junk.ckpt", "--direction", "a2b", "--input", str(src)]) == 2
    assert capsys.readouterr().err.strip().endswith("voiceconv-stream: junk.ckpt: not a voiceconv checkpoint")


def test_live_mode_with_a_fake_device(loaded: dict, monkeypatch, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    fake = FakeSounddevice([rng.uniform(0.2, 0.4, 80).astype(np.float32) for _ in range(30)])
    monkeypatch.setattr(live, "import_sounddevice", lambda: fake)
    report = tmp_path / "live.json"
    rc = main(["--checkpoint", "m.ckpt", "--direction", "a2b", "--live", "--input-device", "mic",
               "--output-device", "speaker", "--gain", "2", "--seconds", "0.2", "--report-json", str(report)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert loaded["gain"] == 2.0
    assert fake.opened["device"] == (0, 1) and len(fake.played) == 20  # 0.2 s of 10 ms blocks
    assert "output underruns: 0 of 20 callbacks" in cap.out and "deadline misses" in cap.out
    data = json.loads(report.read_text())
    assert data["mode"] == "live" and data["callbacks"] == 20 and data["underruns"] == 0


def test_live_device_problems_are_one_line_before_loading(loaded: dict, monkeypatch, capsys) -> None:
    monkeypatch.setattr(live, "import_sounddevice", lambda: FakeSounddevice(devices=[]))
    assert main(["--checkpoint", "m.ckpt", "--direction", "a2b", "--live"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("voiceconv-stream: no audio input device found")
    assert "voiceconv-stream --input FILE" in err[0]
    assert "converter" not in loaded  # failed before the model was loaded
    monkeypatch.setattr(live, "import_sounddevice", lambda: FakeSounddevice())
    assert main(["--checkpoint", "m.ckpt", "--direction", "a2b", "--live", "--output-device", "hdmi"]) == 2
    assert "audio output device 'hdmi'" in capsys.readouterr().err


def test_live_without_sounddevice(loaded: dict, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    assert main(["--checkpoint", "m.ckpt", "--direction", "a2b", "--live"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["voiceconv-stream: live mode needs the 'live' extra: pip install voiceconv[live] "
                   "(or use file mode: voiceconv-stream --input FILE ...)"]


def test_list_devices(monkeypatch, capsys) -> None:
    monkeypatch.setattr(live, "import_sounddevice", lambda: FakeSounddevice())
    assert main(["--list-devices"]) == 0  # no checkpoint needed
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "fake mic" in out[0] and "fake speaker" in out[1]
    monkeypatch.setattr(live, "import_sounddevice", lambda: FakeSounddevice(devices=[]))
    assert main(["--list-devices"]) == 0
    assert "no audio devices found" in capsys.readouterr().err


def test_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["voiceconv-stream"] == "voiceconv.cli.stream:main"


def test_file_mode_with_the_real_streaming_converter(tmp_path: Path, capsys) -> None:
    """A tiny streaming checkpoint and Vocos through the real chain: the written file is
    as long as its input and equals the offline conversion of the level-set input."""
    import torch
    from conversion_tiny import TINY_MEL, TINY_MODEL, speech_like, write_checkpoint

    from voiceconv.audio.mel import LogMel
    from voiceconv.conversion.streaming import StreamingConverter
    from voiceconv.models.base import model_payload
    from voiceconv.models.vc import build_vc_model
    from voiceconv.vocoders.vocos import VocosGenerator

    torch.manual_seed(0)
    model = build_vc_model("maskcyclegan_vc_stream_small", **TINY_MODEL).eval()
    ckpt = write_checkpoint(tmp_path / "vc.ckpt", model=model)
    vocos = VocosGenerator(TINY_MEL.to_dict(), dim=16, intermediate_dim=32, num_layers=2,
                           magnitude_prior=True, phase="integrated", lookahead=2).eval()
    torch.save(model_payload(vocos), tmp_path / "vocos.ckpt")
    x = speech_like(1.0, seed=3)
    src = tmp_path / "in" / "x.wav"
    src.parent.mkdir()
    sf.write(src, x, TINY_MEL.sample_rate, subtype="FLOAT")
    rc = main(["--checkpoint", str(ckpt), "--direction", "a2b", "--vocoder", str(tmp_path / "vocos.ckpt"),
               "--threads", "1", "--gain", "0.5", "--input", str(src), "--out", str(tmp_path / "out")])
    assert rc == 0
    cap = capsys.readouterr()
    assert "mode exact" in cap.out + cap.err
    y, sr = sf.read(tmp_path / "out" / "x.wav", dtype="float32")
    assert sr == TINY_MEL.sample_rate and y.shape == x.shape
    sc = StreamingConverter.from_checkpoint(ckpt, vocoder=tmp_path / "vocos.ckpt")
    with torch.inference_mode():
        mel = LogMel(TINY_MEL)(torch.from_numpy(x * 0.5))[None]
        conv = sc._tgt.denormalize(model.g_ab(sc._src.normalize(mel), torch.ones_like(mel)))
        ref = np.clip(vocos(conv)[0].numpy()[: x.shape[0]] / 0.5, -1, 1)  # at the input level
    assert np.abs(y - ref).max() < 1e-3 * np.abs(ref).max() + 2 / 32768  # the file is 16-bit or float
