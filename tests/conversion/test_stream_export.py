"""ONNX stream step: the onnxruntime stream equals the PyTorch exact stream (and so the
offline chain) push for push, every state really flows through the graph, what cannot
stream is refused (nothing written), the runtime refuses a graph made for other features,
and voiceconv-stream --backend onnx writes a file as long as its input."""

from __future__ import annotations

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
    push_pieces,
    speech_like,
    tiny_stats,
    write_checkpoint,
    write_vocos,
    write_wav,
)

from voiceconv.audio.mel import LogMel
from voiceconv.cli.export_stream import main as export_main
from voiceconv.cli.stream import main as stream_main
from voiceconv.conversion import onnx_stream as ons
from voiceconv.conversion.onnx_backend import EXTRA_HINT, META_MEL_CONFIG
from voiceconv.conversion.stream_export import export_stream_onnx
from voiceconv.conversion.streaming import StreamingConverter
from voiceconv.errors import ConfigError, MelConfigMismatch
from voiceconv.models.base import model_payload
from voiceconv.models.vc import build_vc_model
from voiceconv.vocoders.vocos import VocosGenerator

torch.set_num_threads(1)
TOL = 1e-4
STATS = {"A": tiny_stats(1, 110.0), "B": tiny_stats(2, 210.0)}  # write_checkpoint's


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("stream_export")
    torch.manual_seed(0)
    model = build_vc_model("maskcyclegan_vc_stream_small", **TINY_MODEL).eval()
    torch.manual_seed(0)
    voc = VocosGenerator(TINY_MEL.to_dict(), dim=16, intermediate_dim=32, num_layers=2,
                         magnitude_prior=True, phase="integrated", lookahead=2).eval()
    torch.save(model_payload(voc), d / "vocos_stream.ckpt")
    files = {"dir": d, "model": model, "voc": voc, "ckpt": write_checkpoint(d / "stream.ckpt", model=model),
             "vocos": d / "vocos_stream.ckpt"}
    files["report"] = export_stream_onnx(files["ckpt"], "a2b", files["vocos"], d / "step.onnx")
    return files


def converter(files: dict, backend: str = "torch", **kw) -> StreamingConverter:
    extra = {"backend": "onnx", "onnx_path": files["report"].path, "onnx_threads": 1} if backend == "onnx" else {}
    return StreamingConverter.from_checkpoint(files["ckpt"], "a2b", vocoder=files["vocos"], **extra, **kw)


def push_all(sc: StreamingConverter, wav: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, list[int]]:
    out = push_pieces(sc, wav, sizes)
    return np.concatenate(out), [o.shape[0] for o in out]


def test_export_checks_parity_and_records_the_states(files):
    rep = files["report"]
    assert rep.path.is_file() and rep.max_abs_diff <= TOL and "parity" in rep.summary()
    assert not [p for p in rep.path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    meta = {p.key: p.value for p in onnx.load(rep.path).metadata_props}
    assert meta["voiceconv.format"] == ons.FORMAT and meta[ons.META_STEP_FRAMES] == "4"
    assert meta[ons.META_GEN_LOOKAHEAD] == "4" and meta[ons.META_VOC_LOOKAHEAD] == "2"
    states = json.loads(meta[ons.META_STATES])
    assert len(states) == rep.states and {"voc.phase", "voc.head_mels", "voc.last"} <= {s["name"] for s in states}
    assert {s["dtype"] for s in states if s["name"] == "voc.phase"} == {"float64"}


@pytest.mark.parametrize("seconds, seed", [(1.3, 5), (0.05, 6)])
def test_onnx_stream_equals_the_torch_stream_push_for_push(files, seconds, seed):
    wav = speech_like(seconds, seed=seed)
    sizes = [int(k) for k in np.random.default_rng(seed).integers(0, 700, 1000)]
    ref_sc, onnx_sc = converter(files, gain=0.8), converter(files, "onnx", gain=0.8)
    assert onnx_sc.latency_samples == ref_sc.latency_samples and "onnxruntime" in onnx_sc.describe()
    ref, ref_lens = push_all(ref_sc, wav, sizes)
    got, lens = push_all(onnx_sc, wav, sizes)
    assert lens == ref_lens and got.shape == wav.shape
    assert np.abs(got - ref).max() <= TOL
    # and so the offline chain (log-mel, statistics, generator, statistics, Vocos on the whole signal)
    with torch.inference_mode():
        mel = LogMel(TINY_MEL)(torch.from_numpy(wav * 0.8))[None]
        y = files["model"].g_ab(STATS["A"].normalize(mel), torch.ones_like(mel))
        offline = np.clip(files["voc"](STATS["B"].denormalize(y))[0].numpy()[: wav.shape[0]] / 0.8, -1, 1)
    assert np.abs(got - offline).max() < 5e-4 * max(np.abs(offline).max(), 1e-3)
    # reset starts a new stream: the same again
    onnx_sc.reset()
    np.testing.assert_array_equal(push_all(onnx_sc, wav, sizes)[0], got)


def test_state_really_flows_through_the_graph(files):
    graph = ons.OnnxStreamStep(files["report"].path, threads=1)
    wav = speech_like(1.0, seed=7)

    def run(step) -> np.ndarray:
        sc = converter(files)
        sc._step = ons.StepStream(step, graph.spec)  # the graph, maybe with its states replaced
        return push_all(sc, wav, [sc.block_samples] * 1000)[0]

    own = run(graph)
    zeros = {s.name: s.zeros() for s in graph.spec.states}
    amnesic = run(lambda feeds: graph({**feeds, **zeros}))  # every step starts from zero states
    assert own.shape == amnesic.shape and np.abs(own - amnesic).max() > 1e-2
    # each state input on its own changes what the step returns (none was folded to a constant)
    stream = ons.StepStream(graph, graph.spec)
    mel = torch.from_numpy(LogMel(TINY_MEL)(torch.from_numpy(wav)).numpy())
    stream.push(mel[:, :40])
    feeds = {ons.INPUT_MEL: mel[None, :, 40:44].numpy(), ons.INPUT_START: np.array([40], dtype=np.int64),
             ons.INPUT_INDEX: np.array([0, 1, 2, 3], dtype=np.int64), **stream.states}
    base = graph(feeds)
    for spec in graph.spec.states:
        assert np.abs(stream.states[spec.name]).max() > 0, spec.name
        other = graph({**feeds, spec.name: spec.zeros()})
        assert any(not np.array_equal(base[k], other[k]) for k in base), spec.name


def test_what_does_not_stream_is_refused(files, tmp_path):
    offline_ckpt = write_checkpoint(tmp_path / "offline.ckpt")  # maskcyclegan_vc_small
    out = tmp_path / "x.onnx"
    with pytest.raises(ConfigError, match="trained to stream"):
        export_stream_onnx(offline_ckpt, "a2b", files["vocos"], out)
    with pytest.raises(ConfigError, match="vocos_stream_small"):
        export_stream_onnx(files["ckpt"], "a2b", write_vocos(tmp_path / "vocos.pt"), out)  # no lookahead
    assert list(tmp_path.iterdir()) and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(ConfigError, match="exact"):
        StreamingConverter.from_checkpoint(offline_ckpt, "a2b", vocoder=files["vocos"], backend="onnx",
                                           onnx_path=files["report"].path)


def test_runtime_refuses_a_graph_for_other_features_or_direction(files, tmp_path):
    model = onnx.load(files["report"].path)
    for prop in model.metadata_props:
        if prop.key == META_MEL_CONFIG:
            prop.value = json.dumps({**json.loads(prop.value), "fmax": 3000.0})
    other = tmp_path / "other.onnx"
    onnx.save(model, other)
    with pytest.raises(MelConfigMismatch, match="fmax"):
        StreamingConverter.from_checkpoint(files["ckpt"], "a2b", vocoder=files["vocos"], backend="onnx",
                                           onnx_path=other)
    with pytest.raises(ConfigError, match="converts a2b"):
        StreamingConverter.from_checkpoint(files["ckpt"], "b2a", vocoder=files["vocos"], backend="onnx",
                                           onnx_path=files["report"].path)
    with pytest.raises(ConfigError, match="onnx_path"):
        StreamingConverter.from_checkpoint(files["ckpt"], "a2b", vocoder=files["vocos"], backend="onnx")


def test_missing_onnxruntime_names_the_extra(files, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ConfigError, match=r"onnxruntime is not installed.*voiceconv\[onnx\]"):
        converter(files, "onnx")
    src = write_wav(tmp_path / "in.wav", speech_like(0.3, seed=1))
    rc = stream_main(["--checkpoint", str(files["ckpt"]), "--direction", "a2b", "--vocoder", str(files["vocos"]),
                      "--backend", "onnx", "--onnx", str(files["report"].path), "--input", str(src)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("voiceconv-stream: onnxruntime is not installed") and EXTRA_HINT in err[-1]


def test_cli_exports_then_streams_a_file_with_the_graph(files, tmp_path, capsys):
    graph = tmp_path / "cli_step.onnx"
    args = ["--checkpoint", str(files["ckpt"]), "--direction", "a2b", "--vocoder", str(files["vocos"])]
    assert export_main([*args, "--out", str(graph), "--check-frames", "64", "--block-ms", "64"]) == 0
    assert "parity: max |onnxruntime stream - pytorch stream|" in capsys.readouterr().out
    assert export_main([*args, "--out", str(graph), "--check-frames", "64"]) == 2  # exists: kept
    assert "exists" in capsys.readouterr().err
    wav = speech_like(0.7, seed=9)
    src = write_wav(tmp_path / "in" / "speech.wav", wav)
    out = tmp_path / "out"
    rc = stream_main([*args, "--backend", "onnx", "--onnx", str(graph), "--onnx-threads", "1",
                      "--input", str(src), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    written, sr = sf.read(out / "speech.wav", dtype="float32")
    assert sr == TINY_MEL.sample_rate and written.shape == wav.shape and np.abs(written).max() > 0
    assert stream_main([*args, "--backend", "onnx", "--input", str(src)]) == 2
    assert "--backend onnx needs --onnx" in capsys.readouterr().err
