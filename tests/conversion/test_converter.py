"""VoiceConverter: loading from a checkpoint alone, the conversion pipeline against
closed forms and librosa, bad inputs, safe file writing, and batched file conversion."""

from __future__ import annotations

import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from conversion_tiny import (
    TINY_MEL,
    FrameVocoder,
    speech_like,
    tiny_model,
    write_checkpoint,
    write_wav,
)

from voiceconv.audio.mel import log_mel
from voiceconv.conversion import FileResult, OutputExists, VoiceConverter
from voiceconv.errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    FileProblem,
    MelConfigMismatch,
)
from voiceconv.models.base import model_payload
from voiceconv.training.checkpoint import load_checkpoint, save_checkpoint
from voiceconv.vocoders.griffinlim import GriffinLim

torch.set_num_threads(1)
SR = TINY_MEL.sample_rate


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture
def vc(ckpt: Path) -> VoiceConverter:
    return VoiceConverter.from_checkpoint(ckpt)


def identity(vc: VoiceConverter) -> VoiceConverter:
    """Replace the generator by the identity, so the rest of the pipeline is checkable."""
    vc.model.convert = lambda x, direction: x  # type: ignore[method-assign]
    return vc


def librosa_log_mel(wav: np.ndarray) -> np.ndarray:
    cfg = TINY_MEL
    mel = librosa.feature.melspectrogram(
        y=wav.astype(np.float64), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, power=cfg.power,
        center=True, pad_mode="reflect", htk=False, norm="slaney",
    )
    return np.log(np.maximum(mel, cfg.log_floor)).astype(np.float32)


# ---------------------------------------------------------------- loading


def test_from_checkpoint_needs_nothing_else(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "only.ckpt", tiny_model(seed=4))
    vc = VoiceConverter.from_checkpoint(path)
    assert vc.mel_config == TINY_MEL and vc.sample_rate == SR
    assert vc.describe_direction("a2b") == "low -> high"
    assert not vc.model.training
    # the saved weights, not a fresh initialisation
    ref = tiny_model(seed=4)
    for (name, p), q in zip(vc.model.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    wav = speech_like(1.5)
    out, sr = vc.convert(wav, SR)
    assert sr == SR and out.shape == wav.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max() > 1e-3


def test_checkpoint_problems_name_the_file(tmp_path: Path, ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint") as info:
        VoiceConverter.from_checkpoint(tmp_path / "missing.ckpt")
    assert "missing.ckpt" in str(info.value)

    state = load_checkpoint(ckpt)
    no_b = dict(state, stats={"A": state["stats"]["A"]})
    with pytest.raises(CheckpointError, match=r"role\(s\) \['B'\]"):
        VoiceConverter.from_checkpoint(save_checkpoint(no_b, tmp_path / "no_b.ckpt"))

    other = dict(state, model=model_payload(tiny_model(base_channels=6)))
    other["model"]["state_dict"] = state["model"]["state_dict"]
    with pytest.raises(CheckpointError, match="weights do not fit"):
        VoiceConverter.from_checkpoint(save_checkpoint(other, tmp_path / "other.ckpt"))


def test_vocoder_with_other_mel_config_is_refused(tmp_path: Path, ckpt: Path) -> None:
    from voiceconv.models.cyclegan import ResnetGenerator

    other = TINY_MEL.__class__(**{**TINY_MEL.to_dict(), "fmax": 3000.0})
    voc = ResnetGenerator(TINY_MEL.n_mels, 1, base_channels=2, n_blocks=1, dim=1, n_downsampling=0)
    path = tmp_path / "voc.ckpt"
    torch.save({"model": model_payload(voc), "mel_config": other.to_dict()}, path)
    with pytest.raises(MelConfigMismatch, match="fmax=3000.0") as info:
        VoiceConverter.from_checkpoint(ckpt, vocoder=path)
    assert str(path) in str(info.value)
    # a vocoder object made for other mels is refused too
    with pytest.raises(MelConfigMismatch):
        VoiceConverter(tiny_model(), TINY_MEL, VoiceConverter.from_checkpoint(ckpt).stats,
                       vocoder=GriffinLim(other))


# --------------------------------------------------------------- pipeline


def test_source_and_target_statistics_closed_form(vc: VoiceConverter) -> None:
    """With an identity generator, a2b is (x - mean_A) / std_A * std_B + mean_B per bin."""
    identity(vc)
    a, b = vc.stats["A"], vc.stats["B"]
    x = librosa_log_mel(speech_like(1.0))
    for direction, src, tgt in (("a2b", a, b), ("b2a", b, a)):
        want = (x - src.mean[:, None]) / src.std[:, None] * tgt.std[:, None] + tgt.mean[:, None]
        got = vc.convert_mel(x, direction)
        assert isinstance(got, np.ndarray) and got.shape == x.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    batch = torch.from_numpy(np.stack([x, x[:, ::-1].copy()]))
    got_b = vc.convert_mel(batch, "a2b")
    assert isinstance(got_b, torch.Tensor) and got_b.shape == batch.shape


def test_convert_resamples_and_vocodes_like_the_references(vc: VoiceConverter) -> None:
    """Identity generator and equal statistics: convert() must be librosa's resampling
    and log-mel followed by Griffin-Lim. Tolerance 1 % of the peak: our mels match
    librosa's to ~1e-5 in log, and 32 Griffin-Lim iterations with momentum 0.99
    amplify such differences to ~0.2 % of the peak (measured)."""
    identity(vc)
    vc.stats["B"] = vc.stats["A"]
    wav16 = speech_like(2.0, sr=16000, seed=3)
    out, sr = vc.convert(wav16, 16000)
    ref_wav = librosa.resample(wav16.astype(np.float64), orig_sr=16000, target_sr=SR, res_type="soxr_hq")
    ref = GriffinLim(TINY_MEL)(torch.from_numpy(librosa_log_mel(ref_wav)), length=ref_wav.size).numpy()
    assert sr == SR and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=0.01 * np.abs(ref).max())


def test_stereo_input_is_downmixed(vc: VoiceConverter) -> None:
    identity(vc)
    mono = speech_like(1.0)
    stereo = np.stack([mono, mono])
    np.testing.assert_allclose(vc.convert(stereo, SR)[0], vc.convert(mono, SR)[0], atol=1e-6)


def test_bf16_changes_little_but_is_applied(ckpt: Path) -> None:
    """bf16 keeps 8 significant bits (rounding 2^-9 per operation); through the ~20
    layers of the generator the relative change of the converted mels stays within a
    few percent (measured 2-3 %), so 10 % is the bound. It must not be 0: then autocast
    did not run."""
    x = librosa_log_mel(speech_like(2.0))
    y32 = VoiceConverter.from_checkpoint(ckpt, precision="fp32").convert_mel(x, "a2b")
    y16 = VoiceConverter.from_checkpoint(ckpt, precision="bf16").convert_mel(x, "a2b")
    spread = np.linalg.norm(y32 - y32.mean(axis=1, keepdims=True))
    rel = np.linalg.norm(y16 - y32) / spread
    assert 1e-4 < rel < 0.1


def test_bad_settings(ckpt: Path, vc: VoiceConverter) -> None:
    with pytest.raises(ConfigError, match="precision"):
        VoiceConverter.from_checkpoint(ckpt, precision="fp8")
    with pytest.raises(ConfigError, match="direction"):
        vc.convert(speech_like(1.0), SR, direction="a2c")
    with pytest.raises(ConfigError, match="multiple of 4"):
        VoiceConverter.from_checkpoint(ckpt, chunk_frames=30)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda w: np.where(np.arange(w.size) == 5, np.nan, w).astype(np.float32), "non-finite"),
        (lambda w: np.where(np.arange(w.size) == 5, np.inf, w).astype(np.float32), "non-finite"),
        (lambda w: np.zeros_like(w), "silent"),
        (lambda w: (w * 32767).astype(np.int16), "float samples"),
        (lambda w: w[:100], "too short"),
        (lambda w: w[None, None], "shaped"),
    ],
)
def test_bad_arrays(vc: VoiceConverter, make, problem: str) -> None:
    with pytest.raises(AudioError, match=problem) as info:
        vc.convert(make(speech_like(0.5)), SR)
    assert str(info.value).startswith("<array>: ") and "\n" not in str(info.value)


def test_bad_sample_rate(vc: VoiceConverter) -> None:
    with pytest.raises(AudioError, match="sample rate"):
        vc.convert(speech_like(0.5), 0)


# ------------------------------------------------------------ file output


def test_convert_file_writes_and_never_overwrites_its_input(vc: VoiceConverter, tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", speech_like(1.0))
    before = src.read_bytes()
    with pytest.raises(FileProblem, match="input file itself"):
        vc.convert_file(src, src, overwrite=True)
    link = tmp_path / "link.wav"
    link.symlink_to(src)
    with pytest.raises(FileProblem, match="input file itself"):
        vc.convert_file(src, link, overwrite=True)
    assert src.read_bytes() == before

    dst = vc.convert_file(src, tmp_path / "out" / "in.wav")
    data, sr = sf.read(dst)
    assert sr == SR and data.shape == (SR,)


def test_existing_output_is_kept_unless_overwrite(vc: VoiceConverter, tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", speech_like(1.0))
    dst = tmp_path / "out.wav"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExists, match="exists already"):
        vc.convert_file(src, dst)
    assert dst.read_bytes() == b"precious"
    vc.convert_file(src, dst, overwrite=True)
    assert sf.read(dst)[0].shape == (SR,)


def test_unwritable_extension_is_refused_before_converting(vc: VoiceConverter, tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", speech_like(1.0))
    with pytest.raises(FileProblem, match="cannot write '.mp3'"):
        vc.convert_file(src, tmp_path / "out.mp3")


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_no_partial_file(vc, tmp_path: Path, monkeypatch, exc) -> None:
    src = write_wav(tmp_path / "in.wav", speech_like(1.0))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    old = out_dir / "old.wav"
    old.write_bytes(b"old content")
    real_write = sf.SoundFile.write

    def write_half_then_fail(self, data):
        real_write(self, data[: len(data) // 2])
        raise exc("interrupted mid-write")

    monkeypatch.setattr(sf.SoundFile, "write", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt if exc is KeyboardInterrupt else AudioError):
        vc.convert_file(src, out_dir / "new.wav")
    with pytest.raises(KeyboardInterrupt if exc is KeyboardInterrupt else AudioError):
        vc.convert_file(src, old, overwrite=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["old.wav"]  # no temp file, no new.wav
    assert old.read_bytes() == b"old content"


# ------------------------------------------------------------ many files


def bad_inputs(folder: Path) -> dict[str, str]:
    """One file per kind of bad input -> the words its error line must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("hello, not audio\n")
    sf.write(folder / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(folder / "short.wav", speech_like(0.01), SR)
    nan = speech_like(0.5)
    nan[10] = np.nan
    sf.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    return {
        "missing.wav": "not found",
        "empty.wav": "empty",
        "text.wav": "not an audio file",
        "silent.wav": "silent",
        "short.wav": "too short",
        "nan.wav": "NaN",
    }


def test_convert_files_reports_each_failure_and_goes_on(vc: VoiceConverter, tmp_path: Path) -> None:
    ins = tmp_path / "in"
    expected = bad_inputs(ins)
    good = [write_wav(ins / f"good{i}.wav", speech_like(1.0 + 0.1 * i, seed=i)) for i in range(3)]
    long = write_wav(ins / "long.wav", speech_like(12.0, seed=9))  # > chunk_frames below
    vc.chunk_frames = 512
    paths = [good[0], *(ins / name for name in expected), good[1], long, good[2]]
    seen: list[FileResult] = []
    results = vc.convert_files(paths, tmp_path / "out", batch_size=2, on_result=seen.append)
    assert [r.source for r in results] == paths and len(seen) == len(paths)
    by_name = {r.source.name: r for r in results}
    for name, words in expected.items():
        r = by_name[name]
        assert r.status == "failed" and not r.ok
        assert r.message.startswith(str(ins / name) + ": ") and words in r.message
        assert "\n" not in r.message
        assert not (tmp_path / "out" / name).exists()
    for src in (*good, long):
        r = by_name[src.name]
        assert r.status == "converted" and r.output == tmp_path / "out" / src.name
        data, sr = sf.read(r.output)
        assert sr == SR and data.shape[0] == sf.info(src).frames


def test_outputs_never_overwrite_inputs_and_names_do_not_collide(vc, tmp_path: Path) -> None:
    a = write_wav(tmp_path / "a" / "x.wav", speech_like(1.0))
    b = write_wav(tmp_path / "b" / "x.wav", speech_like(1.0, seed=2))
    before = a.read_bytes()
    res = vc.convert_files([a, b], tmp_path / "a", overwrite=True)
    assert res[0].status == "failed" and "would overwrite input" in res[0].message
    assert res[1].status == "failed" and "would overwrite input" in res[1].message
    assert a.read_bytes() == before
    res = vc.convert_files([a, b], tmp_path / "out")
    assert res[0].status == "converted"
    assert res[1].status == "failed" and "same file name" in res[1].message


def test_existing_outputs_are_skipped(vc: VoiceConverter, tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in" / "x.wav", speech_like(1.0))
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.wav").write_bytes(b"keep me")
    (r,) = vc.convert_files([src], out)
    assert r.status == "skipped" and r.ok and (out / "x.wav").read_bytes() == b"keep me"
    (r,) = vc.convert_files([src], out, overwrite=True)
    assert r.status == "converted" and sf.read(out / "x.wav")[0].shape == (SR,)


def _failing(real, when):
    """``real`` (a converter step), but raising RuntimeError when ``when(*args)`` holds."""

    def step(*args, **kwargs):
        if when(*args, **kwargs):
            raise RuntimeError("bad broke this step\nsecond line")
        return real(*args, **kwargs)

    return step


def _names_bad(*args, **kwargs) -> bool:
    return "bad.wav" in repr(args) + repr(kwargs)


@pytest.mark.parametrize("step", ["load", "analyse", "generator", "vocode", "write"])
def test_an_exception_in_any_step_costs_only_its_file(
    ckpt: Path, tmp_path: Path, monkeypatch, step: str
) -> None:
    """Three files in one batch; any step raising an unexpected exception for the
    middle one gives it one failed line naming it, and the other two are converted."""
    import voiceconv.conversion.converter as conv

    vc = VoiceConverter.from_checkpoint(ckpt, vocoder=FrameVocoder())
    srcs = [write_wav(tmp_path / "in" / f"{n}.wav", speech_like(1.0 + 0.01 * i, seed=i))
            for i, n in enumerate(["a", "bad", "c"])]
    bad_frames = vc.analyse(vc._load(srcs[1])).shape[-1]  # waveforms and mels do not name their file
    if step == "load":
        monkeypatch.setattr(vc, "_load", _failing(vc._load, _names_bad))
    elif step == "analyse":
        monkeypatch.setattr(vc, "analyse", _failing(vc.analyse, lambda w: vc.mel_config.frames(w.size) == bad_frames))
    elif step == "generator":  # fails for any batch that holds bad's mel
        monkeypatch.setattr(vc, "_generate", _failing(
            vc._generate, lambda mels, d: any(m.shape[-1] == bad_frames for m in mels)))
    elif step == "vocode":
        monkeypatch.setattr(vc, "vocode", _failing(vc.vocode, _names_bad))
    else:
        monkeypatch.setattr(conv, "save_audio", _failing(conv.save_audio, _names_bad))
    calls: list[int] = []
    generate = vc._generate
    monkeypatch.setattr(vc, "_generate", lambda mels, d: calls.append(len(mels)) or generate(mels, d))
    results = vc.convert_files(srcs, tmp_path / "out", batch_size=3, max_pad_fraction=0.5)
    assert [r.status for r in results] == ["converted", "failed", "converted"]
    assert results[1].message == f"{srcs[1]}: unexpected RuntimeError: bad broke this step"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "c.wav"]
    if step in ("vocode", "write"):
        assert calls == [3]  # the generator still ran the three together
    if step == "generator":
        assert calls == [3, 1, 1, 1]  # the failed batch retried one by one


def test_cli_vocoder_failing_for_one_of_three(ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from voiceconv.cli.convert import main

    srcs = [write_wav(tmp_path / "in" / f"{n}.wav", speech_like(1.0, seed=i))
            for i, n in enumerate(["a", "bad", "c"])]
    monkeypatch.setattr(VoiceConverter, "vocode", _failing(VoiceConverter.vocode, _names_bad))
    out = tmp_path / "out"
    rc = main(["--checkpoint", str(ckpt), "--direction", "a2b", str(tmp_path / "in"), "--out-dir", str(out),
               "--batch-size", "3"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert [ln for ln in err if "bad" in ln] == [f"{srcs[1]}: unexpected RuntimeError: bad broke this step"]
    assert err[-1] == "2 converted, 0 skipped, 1 failed"
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "c.wav"]


def test_output_appearing_while_converting_is_not_clobbered(
    ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    """An output created by someone else after planning (here: while vocoding) is kept
    and the file reported skipped; with ``overwrite`` it is replaced."""
    vc = VoiceConverter.from_checkpoint(ckpt, vocoder=FrameVocoder())
    srcs = [write_wav(tmp_path / "in" / f"{n}.wav", speech_like(1.0, seed=i)) for i, n in enumerate("ab")]
    out = tmp_path / "out"
    real = vc.vocode

    def vocode_while_someone_writes(log_mel, n_samples, source=None):
        if source is not None and source.name == "a.wav":
            out.mkdir(exist_ok=True)
            (out / "a.wav").write_bytes(b"someone else's")
        return real(log_mel, n_samples, source)

    monkeypatch.setattr(vc, "vocode", vocode_while_someone_writes)
    results = vc.convert_files(srcs, out, batch_size=2)
    assert [r.status for r in results] == ["skipped", "converted"]
    assert "appeared while converting" in results[0].message and str(out / "a.wav") in results[0].message
    assert (out / "a.wav").read_bytes() == b"someone else's"
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav"]  # no temp file left
    with pytest.raises(OutputExists):
        vc.convert_file(srcs[0], out / "a.wav")
    results = vc.convert_files(srcs, out, batch_size=2, overwrite=True)
    assert [r.status for r in results] == ["converted", "converted"]
    assert sf.read(out / "a.wav")[0].shape == (SR,)


def test_batching_equal_lengths_equals_one_by_one(ckpt: Path, tmp_path: Path) -> None:
    """Equal lengths need no padding, so a batch computes what single files do, up to
    the float rounding of a batched convolution (~1e-6 in the mels). A deterministic
    stand-in vocoder keeps it that small (Griffin-Lim would amplify it to ~1 % of the
    peak); 16-bit files then agree to 1 LSB. Padding the batch instead (what this
    guards against) changes the instance-norm statistics and the output by percents."""
    vc = VoiceConverter.from_checkpoint(ckpt, vocoder=FrameVocoder())
    srcs = [write_wav(tmp_path / "in" / f"s{i}.wav", speech_like(1.2, seed=i, f0=100 + 30 * i)) for i in range(4)]
    vc.convert_files(srcs, tmp_path / "batch", batch_size=4)
    for src in srcs:
        vc.convert_file(src, tmp_path / "single" / src.name)
        one, _ = sf.read(tmp_path / "single" / src.name, dtype="int16")
        many, _ = sf.read(tmp_path / "batch" / src.name, dtype="int16")
        assert np.abs(one.astype(int) - many.astype(int)).max() <= 1


def test_batched_padding_is_cropped_per_item(ckpt: Path, tmp_path: Path) -> None:
    """Different lengths in one batch: with an identity generator the padding cannot
    leak into the outputs, so each must equal its one-by-one conversion (1 LSB)."""
    vc = identity(VoiceConverter.from_checkpoint(ckpt, vocoder=FrameVocoder()))
    srcs = [write_wav(tmp_path / "in" / f"s{i}.wav", speech_like(1.0 + 0.05 * i, seed=i)) for i in range(3)]
    results = vc.convert_files(srcs, tmp_path / "batch", batch_size=3, max_pad_fraction=0.5)
    assert all(r.status == "converted" for r in results)
    for src in srcs:
        vc.convert_file(src, tmp_path / "single" / src.name)
        one, _ = sf.read(tmp_path / "single" / src.name, dtype="int16")
        many, _ = sf.read(tmp_path / "batch" / src.name, dtype="int16")
        assert one.shape == many.shape and np.abs(one.astype(int) - many.astype(int)).max() <= 1


def test_api_example_script_runs(ckpt: Path, tmp_path: Path, capsys) -> None:
    import runpy

    script = Path(__file__).resolve().parents[2] / "scripts" / "convert.py"
    main = runpy.run_path(str(script))["main"]
    src = write_wav(tmp_path / "in.wav", speech_like(1.0))
    dst = tmp_path / "out.wav"
    assert main([str(ckpt), str(src), str(dst), "--direction", "b2a"]) == 0
    assert sf.read(dst)[0].shape == (SR,)
    assert "high -> low" in capsys.readouterr().out
    assert main([str(tmp_path / "nope.ckpt"), str(src), str(dst)]) == 1
    assert os.path.exists(dst)


@pytest.mark.gpu
def test_cuda_matches_cpu(ckpt: Path) -> None:
    """Same conversion on the GPU. cuDNN may run the convolutions in TF32 (10-bit
    mantissa, relative rounding ~5e-4 per operation), so the converted mels agree to
    about 1e-3 of their spread; 1e-2 is the bound."""
    x = librosa_log_mel(speech_like(2.0))
    cpu = VoiceConverter.from_checkpoint(ckpt).convert_mel(x, "a2b")
    gpu_vc = VoiceConverter.from_checkpoint(ckpt, device="cuda", precision="bf16")
    fp32_gpu = VoiceConverter.from_checkpoint(ckpt, device="cuda").convert_mel(x, "a2b")
    spread = np.linalg.norm(cpu - cpu.mean(axis=1, keepdims=True))
    assert np.linalg.norm(fp32_gpu - cpu) / spread < 1e-2
    out, sr = gpu_vc.convert(speech_like(2.0), SR)
    assert sr == SR and out.shape == (2 * SR,) and np.isfinite(out).all()


@pytest.mark.parametrize("kind", [dict(phase="integrated"),
                                  dict(phase="locked", prior_nnls_iter=3, refine_iters=2)],
                         ids=["integrated", "locked-refined"])
def test_a_vocos_checkpoint_vocodes_the_conversion(tmp_path: Path, ckpt: Path, kind: dict) -> None:
    """A Vocos generator saved as the vocoder trainer saves it (payload under "model" plus the
    MelConfig) is picked by path; its output equals the generator's own on the converted mel.
    Both CPU kinds: vocos_small_integrated's and vocos_small's (locked phase, projections)."""
    from voiceconv.vocoders.vocos import VocosGenerator

    torch.manual_seed(0)
    gen = VocosGenerator(TINY_MEL.to_dict(), dim=8, intermediate_dim=16, num_layers=1,
                         magnitude_prior=True, **kind).eval()
    path = tmp_path / "vocos.ckpt"
    torch.save({"model": model_payload(gen), "mel_config": TINY_MEL.to_dict()}, path)
    vc = VoiceConverter.from_checkpoint(ckpt, vocoder=path)
    wav = speech_like(0.5)
    out, rate = vc.convert(wav, SR)
    assert rate == SR and abs(out.shape[-1] - wav.size) <= TINY_MEL.hop_length
    assert np.isfinite(out).all() and np.abs(out).max() > 0
    mel = torch.as_tensor(log_mel(wav, TINY_MEL))
    n = mel.shape[-1] * TINY_MEL.hop_length
    with torch.no_grad():
        ref = gen(mel).numpy()
    np.testing.assert_allclose(vc.vocode(mel, n), ref[:n], atol=1e-5)
    other = TINY_MEL.__class__(**{**TINY_MEL.to_dict(), "n_mels": 20})
    torch.save({"model": model_payload(VocosGenerator(other.to_dict(), dim=8, intermediate_dim=16, num_layers=1)),
                "mel_config": other.to_dict()}, tmp_path / "other.ckpt")
    with pytest.raises(MelConfigMismatch, match="n_mels=20"):
        VoiceConverter.from_checkpoint(ckpt, vocoder=tmp_path / "other.ckpt")
