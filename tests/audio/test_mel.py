"""Log-mel front end against librosa (the independent reference).

Reference: ``np.log(np.maximum(librosa.feature.melspectrogram(...), log_floor))``
computed in float64. Tolerances (measured, see ``LogMel``'s docstring):

* float32 input, synthetic speech-like signals: max |log-mel error| <= 1e-4 where
  the reference mel is above ``10 * log_floor`` (measured ~1e-5).
* float32 input, real (flite) speech: <= 3e-4 (measured up to 1.3e-4 over 8 ARCTIC
  prompts, 4 voices). 1e-4 is not reachable in float32: FFT rounding error is
  relative to the *loudest* bin of a frame, and speech's spectral tilt puts the
  quietest counted bins (1e-4) ~1e4 below the frame's peak, so their relative
  error is ~1e4 x float32 epsilon. librosa itself computes the STFT in float64
  (float64 window x float32 frames) and rounds the result, so its float32 output
  is ~1e-6 accurate, at ~2x our cost; our float64 path matches to ~1e-7.
* float64 input: <= 1e-6 (measured ~1e-7; the floor of this comparison is librosa
  itself, whose mel basis is float32 by default, relative error ~6e-8).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from voiceconv.audio.mel import LogMel, MelConfig, log_mel, mel_filterbank, stft_magnitude
from voiceconv.errors import AudioError, ConfigError

TOL_F32 = 1e-4
TOL_F32_SPEECH = 3e-4
TOL_F64 = 1e-6

CONFIGS = {
    "default": MelConfig(),
    "htk": MelConfig(mel_scale="htk"),
    "no_norm": MelConfig(mel_norm=None),
    "power2": MelConfig(power=2.0),
    "no_center": MelConfig(center=False),
    "constant_pad": MelConfig(pad_mode="constant"),
    "16k": MelConfig(
        sample_rate=16000, n_fft=512, hop_length=160, win_length=400, fmin=20.0, fmax=None
    ),
    "short_window": MelConfig(win_length=800, fmin=80.0, fmax=7600.0, n_mels=64),
}


def speech_like(n: int, sr: int, seed: int = 0) -> np.ndarray:
    """Harmonic source with vibrato + a chirp + noise, amplitude-modulated (float64)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 110.0 + 40.0 * seed + 50.0 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = 0.2 * sum(np.sin(k * phase) / k for k in range(1, 25))
    y += 0.05 * np.sin(2 * np.pi * (200.0 * t + 1500.0 * t**2))
    y += 0.01 * rng.standard_normal(n)
    y *= 0.55 + 0.45 * np.sin(2 * np.pi * 2.0 * t + seed)
    return y


def librosa_log_mel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=cfg.center,
        pad_mode=cfg.pad_mode,
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
    )
    return np.log(np.maximum(mel, cfg.log_floor))


def max_err_above_floor(ours: np.ndarray, ref: np.ndarray, cfg: MelConfig) -> float:
    mask = ref > np.log(10 * cfg.log_floor)
    assert mask.mean() > 0.5, "test signal too quiet to say anything"
    return float(np.abs(ours.astype(np.float64) - ref)[mask].max())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_filterbank_matches_librosa(name: str) -> None:
    cfg = CONFIGS[name]
    ref = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
        dtype=np.float64,
    )
    ours = mel_filterbank(cfg, dtype=torch.float64).numpy()
    assert ours.shape == (cfg.n_mels, cfg.n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12 * ref.max())
    fb32 = mel_filterbank(cfg)
    assert fb32.dtype == torch.float32


def run(module: LogMel, y: torch.Tensor, path: str) -> torch.Tensor:
    """Run ``module`` on one of its two code paths (see LogMel's docstring)."""
    if path == "autograd":  # one torch.stft for the batch, differentiable
        return module(y.clone().requires_grad_()).detach()
    with torch.no_grad():  # blocked CPU path
        return module(y)


@pytest.mark.parametrize("path", ["blocked", "autograd"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seconds", [0.3, 1.37])
def test_log_mel_float32_matches_librosa(name: str, seconds: float, path: str) -> None:
    cfg = CONFIGS[name]
    n = int(seconds * cfg.sample_rate) + 7  # not a multiple of the hop
    y = speech_like(n, cfg.sample_rate)
    ref = librosa_log_mel(y, cfg)
    ours = run(LogMel(cfg), torch.from_numpy(y.astype(np.float32)), path)
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == ref.shape == (cfg.n_mels, cfg.frames(n))
    assert max_err_above_floor(ours.numpy(), ref, cfg) <= TOL_F32


def test_log_mel_float32_on_flite_speech(arctic_prompts_path: Path, tmp_path: Path) -> None:
    if shutil.which("flite") is None:
        pytest.skip("flite not installed")
    cfg = MelConfig()
    module = LogMel(cfg)
    prompts = [ln.split('"')[1] for ln in arctic_prompts_path.read_text().splitlines()[:4]]
    for voice, text in zip(["slt", "rms", "awb", "kal16"], prompts, strict=True):
        wav = tmp_path / f"{voice}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True)
        y, sr = sf.read(wav, dtype="float64")
        y = librosa.resample(y, orig_sr=sr, target_sr=cfg.sample_rate)
        ref = librosa_log_mel(y, cfg)
        for path in ["blocked", "autograd"]:
            ours = run(module, torch.from_numpy(y.astype(np.float32)), path)
            assert max_err_above_floor(ours.numpy(), ref, cfg) <= TOL_F32_SPEECH
        ours64 = run(module, torch.from_numpy(y), "blocked")
        assert max_err_above_floor(ours64.numpy(), ref, cfg) <= TOL_F64


@pytest.mark.parametrize("block_frames", [1, 7, 40, 100_000])
def test_block_sizes_match_librosa(block_frames: int) -> None:
    # 3 items x 34 frames: blocks inside an item, ragged last blocks, several items
    # per block, and one block for everything.
    cfg = MelConfig(n_mels=40)
    n = 8500
    ys = np.stack([speech_like(n, cfg.sample_rate, seed=s) for s in range(3)])
    module = LogMel(cfg, block_frames=block_frames)
    with torch.no_grad():
        out = module(torch.from_numpy(ys.astype(np.float32)))
    assert tuple(out.shape) == (3, 40, cfg.frames(n))
    for i in range(3):
        assert max_err_above_floor(out[i].numpy(), librosa_log_mel(ys[i], cfg), cfg) <= TOL_F32


@pytest.mark.parametrize("path", ["blocked", "autograd"])
@pytest.mark.parametrize("name", ["default", "htk", "power2", "no_center", "16k"])
def test_log_mel_float64_matches_librosa(name: str, path: str) -> None:
    cfg = CONFIGS[name]
    y = speech_like(cfg.sample_rate // 2 + 31, cfg.sample_rate, seed=1)
    ours = run(LogMel(cfg), torch.from_numpy(y), path)
    assert ours.dtype == torch.float64
    assert max_err_above_floor(ours.numpy(), librosa_log_mel(y, cfg), cfg) <= TOL_F64


def test_batch_of_three_equals_items_and_librosa() -> None:
    cfg = MelConfig()
    n = 20000
    ys = np.stack([speech_like(n, cfg.sample_rate, seed=s) for s in range(3)]).astype(np.float32)
    module = LogMel(cfg)
    batch = module(torch.from_numpy(ys))
    assert tuple(batch.shape) == (3, cfg.n_mels, cfg.frames(n))
    for i in range(3):
        single = module(torch.from_numpy(ys[i]))
        np.testing.assert_allclose(batch[i].numpy(), single.numpy(), rtol=0, atol=1e-5)
        ref = librosa_log_mel(ys[i].astype(np.float64), cfg)
        assert max_err_above_floor(batch[i].numpy(), ref, cfg) <= TOL_F32
    # Extra leading dims are kept.
    nested = module(torch.from_numpy(ys[:2]).reshape(2, 1, n))
    assert tuple(nested.shape) == (2, 1, cfg.n_mels, cfg.frames(n))
    np.testing.assert_allclose(nested[:, 0].numpy(), batch[:2].numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("center", [True, False])
def test_frame_count_matches_config_and_librosa(center: bool) -> None:
    cfg = MelConfig(center=center, n_mels=16)
    module = LogMel(cfg)
    for n in [1024, 1025, 1279, 1280, 1281, 5000]:
        y = speech_like(n, cfg.sample_rate)
        n_ref = librosa.feature.melspectrogram(
            y=y, sr=cfg.sample_rate, n_fft=1024, hop_length=256, center=center, n_mels=16
        ).shape[-1]
        out = module(torch.from_numpy(y.astype(np.float32)))
        assert out.shape[-1] == cfg.frames(n) == n_ref


def test_silence_is_log_floor() -> None:
    cfg = MelConfig(log_floor=1e-4)
    out = LogMel(cfg)(torch.zeros(2, 4000))
    np.testing.assert_allclose(out.numpy(), np.log(1e-4), rtol=1e-6)


def test_log_mel_numpy_in_numpy_out() -> None:
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, fmax=None)
    y = speech_like(9000, 16000)
    out = log_mel(y, cfg)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (cfg.n_mels, cfg.frames(9000))
    assert max_err_above_floor(out, librosa_log_mel(y, cfg), cfg) <= TOL_F32


def test_log_mel_tensor_in_tensor_out_and_differentiable() -> None:
    cfg = MelConfig(n_mels=20)
    y = torch.from_numpy(speech_like(6000, cfg.sample_rate).astype(np.float32)).requires_grad_()
    out = log_mel(y, cfg)
    assert isinstance(out, torch.Tensor) and out.shape == (20, cfg.frames(6000))
    out.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_gradient_finite_on_digital_silence() -> None:
    # |X| has a 0 subgradient at an exact zero bin; sqrt(re^2 + im^2) would give NaN.
    y = torch.zeros(2, 3000, requires_grad=True)
    LogMel(MelConfig(log_floor=1e-12))(y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_gradient_matches_finite_differences() -> None:
    cfg = MelConfig(sample_rate=8000, n_fft=64, hop_length=16, win_length=48, n_mels=8, fmax=None)
    module = LogMel(cfg)
    y = torch.from_numpy(speech_like(100, 8000)).requires_grad_()
    assert torch.autograd.gradcheck(module, (y,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_stft_magnitude_matches_librosa() -> None:
    cfg = MelConfig(power=2.0)
    y = speech_like(7000, cfg.sample_rate)
    ref = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, window="hann", pad_mode="reflect"))
    ours = stft_magnitude(torch.from_numpy(y), cfg).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref**2, rtol=1e-7, atol=1e-9 * (ref**2).max())


def test_buffers_follow_module_and_stay_out_of_state_dict() -> None:
    module = LogMel()
    names = {name for name, _ in module.named_buffers()}
    assert {"window", "filterbank"} <= names
    assert not ({"window", "filterbank"} & set(module.state_dict()))
    assert module.mel_config == MelConfig()


@pytest.mark.gpu
def test_cuda_matches_librosa() -> None:
    cfg = MelConfig()
    ys = np.stack([speech_like(30000, cfg.sample_rate, seed=s) for s in range(3)])
    module = LogMel(cfg).to("cuda")
    out = module(torch.from_numpy(ys.astype(np.float32)).cuda())
    assert out.device.type == "cuda"
    for i in range(3):
        assert (
            max_err_above_floor(out[i].cpu().numpy(), librosa_log_mel(ys[i], cfg), cfg) <= TOL_F32
        )


def test_bad_input_raises_audio_error() -> None:
    cfg = MelConfig()
    with pytest.raises(AudioError, match="floating point"):
        log_mel(np.zeros(4000, dtype=np.int16), cfg)
    with pytest.raises(AudioError, match="NaN or Inf"):
        log_mel(np.full(4000, np.nan, dtype=np.float32), cfg)
    with pytest.raises(AudioError, match="shorter"):
        LogMel(cfg)(torch.zeros(100))
    with pytest.raises(AudioError, match="floating point"):
        LogMel(cfg)(torch.zeros(4000, dtype=torch.int32))


def test_bad_config_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="mel_scale"):
        LogMel(dataclasses.replace(MelConfig(), mel_scale="bark"))
    with pytest.raises(ConfigError, match="mel_norm"):
        mel_filterbank(dataclasses.replace(MelConfig(), mel_norm="l2"))
