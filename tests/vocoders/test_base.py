"""Vocoder selection: Griffin-Lim specs, neural vocoder checkpoints in both layouts,
and refusal of a vocoder made for another MelConfig."""

from __future__ import annotations

import dataclasses
import fractions

import pytest
import torch

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import CheckpointError, ConfigError, MelConfigMismatch
from voiceconv.models.base import model_payload, save_model
from voiceconv.models.cyclegan import ResnetGenerator
from voiceconv.vocoders import GriffinLim, NeuralVocoder, Vocoder, describe_vocoder, load_vocoder

MEL = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16, fmax=4000.0)


def stand_in_net() -> ResnetGenerator:
    """A voiceconv SavableModule mapping (B, n_mels, T) -> (B, 1, T), standing in for a
    neural vocoder network (only loading is tested with it, not audio quality)."""
    torch.manual_seed(0)
    return ResnetGenerator(MEL.n_mels, 1, base_channels=4, n_blocks=1, dim=1, n_downsampling=0,
                           output_activation="tanh")


def trainer_style(path, mel: MelConfig, key: str = "model"):
    torch.save({"step": 3, key: model_payload(stand_in_net()), "mel_config": mel.to_dict()}, path)
    return path


@pytest.mark.parametrize(("spec", "iters", "nnls"),
                         [("griffinlim", 32, 100), ("griffinlim:7", 7, 100), ("GriffinLim:0:5", 0, 5)])
def test_griffinlim_spec(spec: str, iters: int, nnls: int) -> None:
    voc = load_vocoder(spec, MEL)
    assert isinstance(voc, GriffinLim) and isinstance(voc, Vocoder)
    assert (voc.n_iter, voc.nnls_iter) == (iters, nnls)
    assert describe_vocoder(voc) == f"griffinlim:{iters}:{nnls}"
    assert voc.mel_config == MEL
    wav = voc(torch.full((2, MEL.n_mels, 10), -3.0))
    assert wav.shape == (2, 9 * MEL.hop_length) and torch.isfinite(wav).all()


@pytest.mark.parametrize("spec", ["griffinlim:", "griffinlim:many", "griffinlim:-1", "griffinlim:8:x",
                                  "griffinlim:1:2:3"])
def test_bad_griffinlim_spec(spec: str) -> None:
    with pytest.raises(ConfigError, match="griffinlim"):
        load_vocoder(spec, MEL)


@pytest.mark.parametrize("key", ["model", "generator"])
def test_trainer_checkpoint_loads_and_runs(tmp_path, key: str) -> None:
    path = trainer_style(tmp_path / "voc.ckpt", MEL, key)
    voc = load_vocoder(path, MEL)
    assert isinstance(voc, NeuralVocoder) and voc.mel_config == MEL
    ref = stand_in_net().eval()
    x = torch.randn(2, MEL.n_mels, 12)
    out = voc(x)
    assert out.shape == (2, 12)  # the (B, 1, T) output squeezed to (B, samples)
    torch.testing.assert_close(out, ref(x)[:, 0])  # the saved weights, not fresh ones
    assert not voc.net.training


def test_bare_payload_without_mel_config_is_refused(tmp_path) -> None:
    path = tmp_path / "bare.pt"
    save_model(stand_in_net(), path)
    with pytest.raises(CheckpointError, match="MelConfig") as info:
        load_vocoder(path, MEL)
    assert str(path) in str(info.value)


def test_other_mel_config_is_refused_naming_file_and_fields(tmp_path) -> None:
    other = dataclasses.replace(MEL, hop_length=80, fmax=3800.0)
    path = trainer_style(tmp_path / "other.ckpt", other)
    with pytest.raises(MelConfigMismatch) as info:
        load_vocoder(path, MEL)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "hop_length=80" in msg and "fmax=3800.0" in msg
    assert "n_fft" not in msg  # only the fields that differ


def test_hifigan_with_mel_config_in_hparams(tmp_path) -> None:
    hifigan = pytest.importorskip("voiceconv.vocoders.hifigan")
    torch.manual_seed(0)
    net = hifigan.HiFiGANGenerator(MEL.to_dict(), upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16),
                                   upsample_initial_channel=8, resblock="2",
                                   resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1,),))
    path = tmp_path / "hifigan.pt"
    save_model(net, path)  # bare payload: the MelConfig is in the hparams
    voc = load_vocoder(path, MEL)
    assert voc.mel_config == MEL
    x = torch.randn(1, MEL.n_mels, 10)
    torch.testing.assert_close(voc(x), net.eval()(x), rtol=1e-4, atol=1e-5)
    assert voc(x).shape == (1, 10 * MEL.hop_length)
    with pytest.raises(MelConfigMismatch, match="n_mels=16 \\(expected 20\\)"):
        load_vocoder(path, dataclasses.replace(MEL, n_mels=20))


def test_missing_corrupt_and_foreign_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such vocoder checkpoint") as info:
        load_vocoder(tmp_path / "nope.ckpt", MEL)
    assert "nope.ckpt" in str(info.value)

    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_vocoder(junk, MEL)

    # arbitrary pickled objects are refused by weights_only loading
    evil = tmp_path / "evil.ckpt"
    torch.save({"model": fractions.Fraction(1, 3)}, evil)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_vocoder(evil, MEL)

    outside = tmp_path / "outside.ckpt"
    torch.save({"class": "torch.nn.Linear", "hparams": {"in_features": 1, "out_features": 1},
                "state_dict": {}, "mel_config": MEL.to_dict()}, outside)
    with pytest.raises(CheckpointError, match="outside voiceconv"):
        load_vocoder(outside, MEL)

    no_payload = tmp_path / "dict.ckpt"
    torch.save({"step": 1}, no_payload)
    with pytest.raises(CheckpointError, match="not a vocoder checkpoint"):
        load_vocoder(no_payload, MEL)


def test_weights_that_do_not_fit(tmp_path) -> None:
    payload = model_payload(stand_in_net())
    payload["state_dict"] = {k: v[..., :1] for k, v in payload["state_dict"].items()}
    path = tmp_path / "wrong.ckpt"
    torch.save({"model": payload, "mel_config": MEL.to_dict()}, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_vocoder(path, MEL)
