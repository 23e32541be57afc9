"""StreamingConverter: the stream equals the offline chain, in any block sizes, with bounded state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conversion_tiny import (
    TINY_MEL,
    TINY_MODEL,
    push_pieces,
    speech_like,
    tiny_stats,
    write_checkpoint,
)

from voiceconv.audio.mel import LogMel, MelConfig, log_mel
from voiceconv.audio.mel_stream import StreamingLogMel
from voiceconv.conversion.streaming import StreamingConverter
from voiceconv.errors import ConfigError, MelConfigMismatch
from voiceconv.models.base import model_payload
from voiceconv.models.vc import build_vc_model
from voiceconv.vocoders.vocos import VocosGenerator, VocosStream

STATS = {"A": tiny_stats(1, 110.0), "B": tiny_stats(2, 210.0)}


def stream_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_vc_model("maskcyclegan_vc_stream_small", **TINY_MODEL).eval()


def stream_vocos(seed: int = 0, lookahead: int | None = 2, mel: MelConfig = TINY_MEL) -> VocosGenerator:
    torch.manual_seed(seed)
    return VocosGenerator(mel.to_dict(), dim=16, intermediate_dim=32, num_layers=2,
                          magnitude_prior=True, phase="integrated", lookahead=lookahead).eval()


def push_all(sc: StreamingConverter, wav: np.ndarray, sizes) -> np.ndarray:
    return np.concatenate(push_pieces(sc, wav, sizes))


def offline(model, vocoder, wav: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The offline chain, written out: log-mel, statistics, generator, statistics, Vocos."""
    with torch.inference_mode():
        mel = LogMel(TINY_MEL)(torch.from_numpy(wav * gain))[None]
        y = model.g_ab(STATS["A"].normalize(mel), torch.ones_like(mel))
        # back at the input's level, as the stream (and offline conversion) does by default
        return np.clip(vocoder(STATS["B"].denormalize(y))[0].numpy()[: wav.shape[0]] / gain, -1, 1)


def test_streaming_log_mel_equals_the_whole_signal():
    wav = speech_like(1.3, seed=3)
    rng = np.random.default_rng(0)
    sm = StreamingLogMel(TINY_MEL)
    parts, i = [], 0
    while i < wav.shape[0]:
        k = int(rng.integers(1, 400))
        parts.append(sm.push(wav[i : i + k]))
        i += k
    parts.append(sm.flush())
    torch.testing.assert_close(torch.cat(parts, -1), torch.from_numpy(log_mel(wav, TINY_MEL)), atol=1e-5, rtol=0)


def test_vocos_stream_equals_the_whole_pass():
    voc = stream_vocos(1)
    mel = torch.from_numpy(log_mel(speech_like(1.0, seed=4), TINY_MEL))[None]
    with torch.inference_mode():
        whole = voc(mel)[0]
    vs = VocosStream(voc)
    pieces = [vs.push(mel[0, :, i : i + 3]) for i in range(0, mel.shape[-1], 3)] + [vs.flush()]
    streamed = torch.cat(pieces)
    assert streamed.shape == whole.shape
    assert float((streamed - whole).abs().max()) < 1e-4 * float(whole.abs().max())


def test_exact_mode_equals_offline_conversion():
    model, voc = stream_model(), stream_vocos()
    wav = speech_like(1.2, seed=5)
    sc = StreamingConverter(model, TINY_MEL, STATS, voc, "a2b", gain=0.8)
    assert sc.mode == "exact"
    out = push_all(sc, wav, [sc.block_samples] * 10_000)
    ref = offline(model, voc, wav, gain=0.8)
    assert out.shape == wav.shape
    # to float rounding: the offline pass sums the phase in float32 without wrapping it
    assert np.abs(out - ref).max() < 5e-4 * max(np.abs(ref).max(), 1e-3)


@pytest.mark.parametrize("mode", ["exact", "window"])
def test_random_push_sizes_equal_fixed_blocks(mode):
    model = stream_model() if mode == "exact" else build_vc_model("maskcyclegan_vc_small", **TINY_MODEL).eval()
    voc = stream_vocos()
    wav = speech_like(0.8, seed=6)
    fixed = push_all(StreamingConverter(model, TINY_MEL, STATS, voc, mode=mode), wav, [256] * 1000)
    rng = np.random.default_rng(7)
    sizes = [int(k) for k in rng.integers(0, 700, 1000)]
    random = push_all(StreamingConverter(model, TINY_MEL, STATS, voc, mode=mode), wav, sizes)
    np.testing.assert_array_equal(random, fixed)
    assert random.shape == wav.shape


def test_output_comes_within_the_stated_latency():
    sc = StreamingConverter(stream_model(), TINY_MEL, STATS, stream_vocos(), block_ms=32)
    wav = speech_like(1.0, seed=8)
    rng = np.random.default_rng(9)
    n_in = n_out = 0
    while n_in < wav.shape[0]:
        k = int(rng.integers(1, 300))
        n_out += sc.push(wav[n_in : n_in + k]).shape[0]
        n_in = min(n_in + k, wav.shape[0])
        # every input sample older than the latency has come out
        assert n_out >= n_in - sc.latency_samples
    # the look-ahead stages add up: block + analysis window + generator and vocoder look-ahead
    hop = TINY_MEL.hop_length
    assert sc.latency_samples >= sc.block_samples + (4 + 2) * hop + TINY_MEL.n_fft // 2


def test_state_stays_bounded_over_a_long_stream():
    sc = StreamingConverter(stream_model(), TINY_MEL, STATS, stream_vocos(), block_ms=128)
    wav = speech_like(0.5, seed=10)
    sizes = []
    for _ in range(10):  # 5 s of stream
        for i in range(0, wav.shape[0], 700):
            sc.push(wav[i : i + 700])
        sizes.append(sc.state_size())
    assert max(sizes[1:]) <= sizes[0] + sc.block_samples


def test_stream_does_not_depend_on_where_it_started():
    """Started a whole number of blocks later, the converted frames agree once past the
    generator's receptive field (the streaming variant has no utterance statistics)."""
    model, voc = stream_model(), stream_vocos()
    wav = speech_like(2.2, seed=11)
    frames = {}
    for start in (0, 8 * 256):
        sc = StreamingConverter(model, TINY_MEL, STATS, voc, block_ms=128)
        got = []
        original = sc._voc.push
        sc._voc.push = lambda y, original=original, got=got: (got.append(y), original(y))[1]
        push_all(sc, wav[start:], [1024] * 1000)
        frames[start] = torch.cat(got, -1)
    late = frames[8 * 256]
    early = frames[0][:, 8 * 256 // TINY_MEL.hop_length :]
    skip = 200  # > the tiny causal generator's history (about 110 frames)
    torch.testing.assert_close(late[:, skip:-10], early[:, skip : late.shape[-1] - 10], atol=1e-4, rtol=0)
    # the start itself does differ (weakly: an untrained batch-norm generator answers weakly)
    assert (late[:, :20] - early[:, :20]).abs().max() > 1e-5


def test_window_mode_streams_an_offline_model():
    model = build_vc_model("maskcyclegan_vc_small", **TINY_MODEL).eval()
    voc = stream_vocos()
    wav = speech_like(1.2, seed=12)
    sc = StreamingConverter(model, TINY_MEL, STATS, voc, context=32, lookahead=4, crossfade=2)
    assert sc.mode == "window"
    out = push_all(sc, wav, [sc.block_samples] * 1000)
    ref = offline(model, voc, wav)
    assert out.shape == wav.shape
    # not exact (instance norm over a window), but close to the offline conversion in log-mel
    diff = np.abs(log_mel(out, TINY_MEL) - log_mel(ref, TINY_MEL)).mean()
    assert diff < 0.5 * log_mel(ref, TINY_MEL).std()


def test_refuses_what_cannot_stream(tmp_path: Path):
    model = stream_model()
    with pytest.raises(ConfigError, match="vocos_stream_small"):
        StreamingConverter(model, TINY_MEL, STATS, stream_vocos(lookahead=None))
    other = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16, fmax=3000.0)
    with pytest.raises(MelConfigMismatch, match="fmax"):
        StreamingConverter(model, TINY_MEL, STATS, stream_vocos(mel=other))
    with pytest.raises(ConfigError, match="exact"):
        StreamingConverter(build_vc_model("maskcyclegan_vc_small", **TINY_MODEL), TINY_MEL, STATS,
                           stream_vocos(), mode="exact")
    ckpt = write_checkpoint(tmp_path / "vc.ckpt", model=model)
    with pytest.raises(ConfigError, match="vocoder"):
        StreamingConverter.from_checkpoint(ckpt, vocoder=None)
    with pytest.raises(ConfigError, match="Vocos"):
        StreamingConverter.from_checkpoint(ckpt, vocoder="griffinlim")


def test_from_checkpoint_streams_a_saved_model(tmp_path: Path):
    model, voc = stream_model(3), stream_vocos(3)
    ckpt = write_checkpoint(tmp_path / "vc.ckpt", model=model)
    voc_path = tmp_path / "vocos.ckpt"
    torch.save(model_payload(voc), voc_path)
    sc = StreamingConverter.from_checkpoint(ckpt, "a2b", vocoder=voc_path, gain=0.5)
    wav = speech_like(1.0, seed=13)
    out = push_all(sc, wav, [1000] * 100)
    assert "mode exact" in sc.describe() and "latency" in sc.describe()
    np.testing.assert_allclose(out, offline(model, voc, wav, gain=0.5), atol=5e-4 * max(np.abs(out).max(), 1e-3))
