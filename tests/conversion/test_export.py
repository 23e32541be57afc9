"""ONNX export: the graph matches PyTorch's own forward at any length, equals the
converter's torch stages, runs as a conversion backend, records its MelConfig, and
refuses what it cannot export or check (nothing written then)."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from conversion_tiny import (
    TINY_MEL,
    TINY_MODEL,
    speech_like,
    write_checkpoint,
    write_hifigan,
    write_vocos,
    write_wav,
)

from voiceconv.audio.mel import log_mel
from voiceconv.conversion import export as ex
from voiceconv.conversion.converter import VoiceConverter
from voiceconv.conversion.onnx_backend import OnnxMelToWave
from voiceconv.errors import ConfigError, ExportParityError, MelConfigMismatch, OutputExists
from voiceconv.models.vc import build_vc_model
from voiceconv.training.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
SR = TINY_MEL.sample_rate
TOL = ex.PARITY_TOLERANCE


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    return {"dir": d, "ckpt": write_checkpoint(d / "tiny.ckpt"), "vocos": write_vocos(d / "vocos.pt")}


@pytest.fixture(scope="module")
def exported(files):
    """One export shared by the tests (Vocos with the integrated phase, a2b)."""
    return ex.export_onnx(files["ckpt"], "a2b", files["vocos"], files["dir"] / "tiny_a2b.onnx")


@pytest.fixture(scope="module")
def torch_vc(files):
    return VoiceConverter.from_checkpoint(files["ckpt"], vocoder=files["vocos"], precision="fp32")


def _mel(vc: VoiceConverter, seconds: float, seed: int = 0) -> torch.Tensor:
    return vc.analyse(vc.prepare_for_model(speech_like(seconds, seed=seed)).wav)


@pytest.mark.slow
def test_export_reports_parity_at_two_lengths(exported):
    assert exported.path.is_file() and exported.size_bytes == exported.path.stat().st_size
    assert exported.max_abs_diff <= TOL
    assert len(exported.parity_frames) == 2
    a, b = exported.parity_frames
    assert a % 4 != b % 4  # the dynamic axis, padded inside the graph, at two remainders
    assert "synthetic" in exported.parity_input and "parity" in exported.summary()
    assert not [p for p in exported.path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [0.37, 1.9])
def test_graph_equals_the_converters_torch_stages(exported, torch_vc, seconds):
    """PyTorch's own forward is the reference: convert_mel, then the vocoder, on the same mel."""
    mel = _mel(torch_vc, seconds, seed=3)
    with torch.inference_mode():
        ref = torch_vc.vocoder(torch_vc.convert_mel(mel, "a2b")[None])[0].numpy()
    graph = OnnxMelToWave(exported.path, threads=1)
    got = graph(mel.numpy())
    assert got.shape == (mel.shape[-1] * TINY_MEL.hop_length,) == ref.shape
    assert np.abs(got - ref).max() <= TOL
    assert np.abs(ref).max() > 0.05  # not a vacuous comparison of silence
    batch = graph(torch.stack([mel, mel + 0.1]))  # tensor in, tensor out, rows one by one
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, ref.size)
    np.testing.assert_array_equal(batch[0].numpy(), got)


@pytest.mark.slow
def test_metadata_records_what_the_graph_is(exported, files):
    model = onnx.load(str(exported.path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["voiceconv.mel_config_json"]) == TINY_MEL.to_dict()
    assert meta["voiceconv.direction"] == "a2b"
    assert json.loads(meta["voiceconv.speakers_json"]) == {"A": "low", "B": "high"}
    assert (meta["voiceconv.source_speaker"], meta["voiceconv.target_speaker"]) == ("low", "high")
    assert meta["voiceconv.checkpoint"] == str(files["ckpt"].resolve())
    assert meta["voiceconv.vocoder"] == str(files["vocos"].resolve())
    assert "natural-log mels of the source speaker" in meta["voiceconv.input"]
    assert f"(1, T * {TINY_MEL.hop_length})" in meta["voiceconv.output"]
    assert float(meta["voiceconv.parity_max_abs_diff"]) == pytest.approx(exported.max_abs_diff, rel=1e-5)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.type.tensor_type.shape.dim[2].dim_param  # a symbolic frame axis, not a fixed length
    assert out.type.tensor_type.shape.dim[1].dim_param


@pytest.mark.slow
def test_onnx_backend_matches_the_torch_backend_on_a_file(exported, files, tmp_path):
    src = write_wav(tmp_path / "in.wav", speech_like(1.4, seed=5))
    common = dict(precision="fp32", output_level="input")
    tv = VoiceConverter.from_checkpoint(files["ckpt"], vocoder=files["vocos"], **common)
    ov = VoiceConverter.from_checkpoint(files["ckpt"], backend="onnx", onnx_path=exported.path,
                                        onnx_threads=1, **common)
    a = sf.read(tv.convert_file(src, tmp_path / "torch.wav"), dtype="float32")[0]
    b = sf.read(ov.convert_file(src, tmp_path / "onnx.wav"), dtype="float32")[0]
    assert a.shape == b.shape and np.abs(a).max() > 0.05
    assert np.abs(a - b).max() <= TOL + 2.0 / 32768  # plus two steps of the 16-bit file
    wav, _ = sf.read(src, dtype="float32")
    ta, _ = tv.convert(wav, SR)
    tb, _ = ov.convert(wav, SR)
    assert np.abs(ta - tb).max() <= TOL
    results = ov.convert_files([src, src.with_name("missing.wav")], tmp_path / "many")
    assert [r.status for r in results] == ["converted", "failed"]
    np.testing.assert_allclose(sf.read(tmp_path / "many" / "in.wav", dtype="float32")[0], b, atol=1 / 32768)
    with pytest.raises(ConfigError, match="converts a2b only"):
        ov.convert(wav, SR, "b2a")


@pytest.mark.slow
def test_long_input_runs_in_bounded_windows(exported, files):
    """A long input goes through the graph window by window (chunk + 2 x context frames at
    most) and stays as close to the whole-input output as the torch path's own chunking."""
    chunk = 256
    ov = VoiceConverter.from_checkpoint(files["ckpt"], backend="onnx", onnx_path=exported.path,
                                        precision="fp32", chunk_frames=chunk)
    seen: list[int] = []
    graph = ov.mel_to_wave

    def spy(mel):
        seen.append(mel.shape[-1])
        return graph(mel)

    ov.mel_to_wave = spy  # type: ignore[assignment]
    ov.mel_to_wave.describe = graph.describe  # type: ignore[attr-defined]
    ov.mel_to_wave.direction = "a2b"  # type: ignore[attr-defined]
    wav = speech_like(9.0, seed=2)
    out, _ = ov.convert(wav, SR)
    context = ov.context_frames + ov.vocoder_context_frames
    assert len(seen) > 3 and max(seen) <= chunk + 2 * context
    assert out.shape == wav.shape and np.isfinite(out).all()
    whole = VoiceConverter.from_checkpoint(files["ckpt"], vocoder=files["vocos"], precision="fp32",
                                           chunk_frames=4096, vocoder_chunk_frames=4096)
    chunked = VoiceConverter.from_checkpoint(files["ckpt"], vocoder=files["vocos"], precision="fp32",
                                             chunk_frames=chunk, vocoder_chunk_frames=chunk)
    ref = log_mel(whole.convert(wav, SR)[0], TINY_MEL)
    onnx_err = np.abs(log_mel(out, TINY_MEL) - ref).mean()
    torch_err = np.abs(log_mel(chunked.convert(wav, SR)[0], TINY_MEL) - ref).mean()
    assert onnx_err <= 1.25 * torch_err + 0.02


@pytest.mark.slow
def test_cyclegan_vc2_with_hifigan_b2a(files):
    """The other generator (CycleGAN-VC2: no mask input), the other vocoder, the other direction."""
    torch.manual_seed(1)
    model = build_vc_model("cyclegan_vc2_small", **TINY_MODEL)
    ckpt = write_checkpoint(files["dir"] / "vc2.ckpt", model=model)
    voc = write_hifigan(files["dir"] / "hifigan.pt")
    report = ex.export_onnx(ckpt, "b2a", voc, files["dir"] / "vc2_b2a_hifigan.onnx")
    assert report.max_abs_diff <= TOL and report.direction == "b2a"
    assert report.source_speaker == "high" and report.target_speaker == "low"
    vc = VoiceConverter.from_checkpoint(ckpt, vocoder=voc, precision="fp32")
    mel = _mel(vc, 0.63, seed=9)
    with torch.inference_mode():
        ref = vc.vocoder(vc.convert_mel(mel, "b2a")[None])[0].numpy()
    assert np.abs(OnnxMelToWave(report.path)(mel.numpy()) - ref).max() <= TOL


@pytest.mark.parametrize("spec", ["griffinlim", "griffinlim:16", "GriffinLim:8:10"])
def test_griffinlim_refused(files, tmp_path, spec):
    out = tmp_path / "gl.onnx"
    with pytest.raises(ConfigError, match="Griffin-Lim cannot be exported") as info:
        ex.export_onnx(files["ckpt"], "a2b", spec, out)
    assert "\n" not in str(info.value) and not out.exists()


def test_hifigan_with_griffinlim_source_refused(files, tmp_path):
    voc = write_hifigan(tmp_path / "gl_hifigan.pt", source="griffinlim")
    out = tmp_path / "x.onnx"
    with pytest.raises(ConfigError, match="runs Griffin-Lim for its source"):
        ex.export_onnx(files["ckpt"], "a2b", voc, out)
    assert not out.exists()


@pytest.mark.parametrize("phase,refine_iters,match", [
    ("locked", 2, "refines its phase with 2 fast Griffin-Lim projections"),
    ("pghi", 0, "carries its phase frame by frame"),
], ids=["projections", "pghi-frame-loop"])
def test_vocos_whose_phase_does_not_export_is_refused(files, tmp_path, phase, refine_iters, match):
    voc = write_vocos(tmp_path / "vocos.pt", phase=phase, refine_iters=refine_iters)
    out = tmp_path / "x.onnx"
    with pytest.raises(ConfigError, match=match):
        ex.export_onnx(files["ckpt"], "a2b", voc, out)
    assert not out.exists()


def test_the_vocoders_that_export_say_so(tmp_path):
    """The exported kinds (plain HiFi-GAN, Vocos with a direct or integrated phase and no
    projections) have no export blocker; the refused kinds above do."""
    from voiceconv.models.base import load_model

    def net(path):
        return load_model(path)

    assert net(write_hifigan(tmp_path / "h.pt")).export_blocker is None
    assert net(write_hifigan(tmp_path / "hg.pt", source="griffinlim")).export_blocker
    for phase in ("direct", "integrated"):
        assert net(write_vocos(tmp_path / f"{phase}.pt", phase=phase)).export_blocker is None
    assert net(write_vocos(tmp_path / "p.pt", phase="pghi")).export_blocker


@pytest.mark.slow
def test_mismatched_mel_config_refused_naming_the_field(exported, files, tmp_path):
    other = dataclasses.replace(TINY_MEL, fmax=3000.0)
    with pytest.raises(MelConfigMismatch, match=r"fmax=4000\.0 \(expected 3000\.0\)"):
        OnnxMelToWave(exported.path, mel_config=other)
    ckpt = write_checkpoint(tmp_path / "other_mel.ckpt", mel_config=other)
    with pytest.raises(MelConfigMismatch, match="fmax") as info:
        VoiceConverter.from_checkpoint(ckpt, backend="onnx", onnx_path=exported.path)
    assert str(exported.path) in str(info.value)


@pytest.mark.slow
def test_graph_of_other_speakers_or_statistics_refused(exported, files, tmp_path):
    state = load_checkpoint(files["ckpt"])
    state["speakers"] = {"A": "slt", "B": "bdl"}
    renamed = save_checkpoint(state, tmp_path / "renamed.ckpt")
    with pytest.raises(ConfigError, match="exported for speakers"):
        VoiceConverter.from_checkpoint(renamed, backend="onnx", onnx_path=exported.path)
    state = load_checkpoint(files["ckpt"])
    state["stats"]["A"], state["stats"]["B"] = state["stats"]["B"], state["stats"]["A"]
    swapped = save_checkpoint(state, tmp_path / "swapped.ckpt")
    with pytest.raises(ConfigError, match="other speaker statistics"):
        VoiceConverter.from_checkpoint(swapped, backend="onnx", onnx_path=exported.path)


@pytest.mark.slow
def test_nothing_written_when_parity_fails(exported, files, tmp_path, monkeypatch):
    """Simulated: the cached graph of the shared export, and a PyTorch reference 1e-3 off."""
    cached = onnx.load(str(exported.path))
    monkeypatch.setattr(ex, "export_program", lambda module, example, opset=ex.DEFAULT_OPSET: cached)
    real = ex.torch_mel_to_wave
    monkeypatch.setattr(ex, "torch_mel_to_wave", lambda vc, mel, d: real(vc, mel, d) + np.float32(1e-3))
    out = tmp_path / "sub" / "bad.onnx"
    with pytest.raises(ExportParityError, match="differ by 0.001") as info:
        ex.export_onnx(files["ckpt"], "a2b", files["vocos"], out)
    assert info.value.max_abs_diff == pytest.approx(1e-3, rel=0.05)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no temp file either


def test_existing_output_kept_and_bad_options(files, tmp_path):
    out = tmp_path / "exists.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExists, match="exists already"):
        ex.export_onnx(files["ckpt"], "a2b", files["vocos"], out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(ConfigError, match="opset"):
        ex.export_onnx(files["ckpt"], "a2b", files["vocos"], tmp_path / "a.onnx", opset=11)
    with pytest.raises(ConfigError, match="direction"):
        ex.export_onnx(files["ckpt"], "x2y", files["vocos"], tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_missing_onnxruntime_names_the_extra(files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ConfigError, match=r"pip install voiceconv\[onnx\]") as info:
        VoiceConverter.from_checkpoint(files["ckpt"], backend="onnx", onnx_path=tmp_path / "m.onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"onnxruntime is not installed.*voiceconv\[onnx\]"):
        ex.export_onnx(files["ckpt"], "a2b", files["vocos"], tmp_path / "m.onnx")


def test_backend_options_checked(files):
    with pytest.raises(ConfigError, match="needs onnx_path"):
        VoiceConverter.from_checkpoint(files["ckpt"], backend="onnx")
    with pytest.raises(ConfigError, match="backend must be one of"):
        VoiceConverter.from_checkpoint(files["ckpt"], backend="tensorrt")
    with pytest.raises(ConfigError, match="need backend='onnx'"):
        VoiceConverter.from_checkpoint(files["ckpt"], onnx_path="m.onnx")
    with pytest.raises(ConfigError, match="statistics_only needs backend='torch'"):
        VoiceConverter.from_checkpoint(files["ckpt"], statistics_only=True, backend="onnx", onnx_path="m.onnx")


def test_parity_mel_is_the_converters_analysis_capped(files, torch_vc, tmp_path):
    """--check-audio is loaded, prepared and analysed as the converter does; the check uses
    its first check_frames frames (never more than the converter's one-window pass)."""
    wav = speech_like(2.0, seed=7) * 0.3
    src = write_wav(tmp_path / "check.wav", wav)
    mel, what = ex.parity_mel(torch_vc, src, max_frames=100)
    assert what == str(src) and mel.shape == (TINY_MEL.n_mels, 100)
    loaded = sf.read(src, dtype="float32")[0]
    full = torch_vc.analyse(torch_vc.prepare_for_model(loaded).wav)
    torch.testing.assert_close(mel, full[:, :100], rtol=0, atol=0)
    assert ex.parity_mel(torch_vc, src, max_frames=10**6)[0].shape[-1] == full.shape[-1]
    with pytest.raises(ConfigError, match="check_frames"):
        ex.export_onnx(files["ckpt"], "a2b", files["vocos"], tmp_path / "a.onnx", check_frames=3)
