"""Chunked processing of long inputs: window plans, exactness away from (and at) the
seams, and bounded memory."""

from __future__ import annotations

import re
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from conversion_tiny import TINY_MEL, FrameVocoder, speech_like, tiny_model, tiny_stats
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceconv.audio.mel import LogMel
from voiceconv.conversion.chunking import (
    log_mel_chunked,
    map_frames_chunked,
    plan_windows,
    vocode_chunked,
)
from voiceconv.errors import ConfigError
from voiceconv.vocoders.griffinlim import GriffinLim

torch.set_num_threads(1)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), chunk_units=st.integers(1, 64), ctx_units=st.integers(0, 16),
       multiple=st.sampled_from([1, 2, 4]))
def test_windows_tile_the_input(n: int, chunk_units: int, ctx_units: int, multiple: int) -> None:
    chunk, ctx = chunk_units * multiple, ctx_units * multiple
    wins = plan_windows(n, chunk, ctx, multiple)
    assert wins[0].keep_start == 0 and wins[-1].keep_stop == n
    for a, b in zip(wins, wins[1:], strict=False):
        assert a.keep_stop == b.keep_start  # no gap, no overlap
    for w in wins:
        assert 0 < w.keep_stop - w.keep_start <= chunk
        assert w.start % multiple == 0  # same stride-2 grid as a whole-input pass
        assert w.start == max(0, w.keep_start - ctx) and w.stop == min(n, w.keep_stop + ctx)
    if n <= chunk:
        assert len(wins) == 1


def test_bad_window_settings() -> None:
    with pytest.raises(ConfigError):
        plan_windows(100, 30, 8, 4)  # chunk not a multiple of 4
    with pytest.raises(ConfigError):
        plan_windows(0, 32, 8)


def receptive_radius(g, n_mels: int, frames: int = 400) -> int:
    """Receptive-field radius of a (norm-free) generator, measured by gradient: the
    farthest input frame that changes a middle output frame."""
    x = torch.randn(1, n_mels, frames, requires_grad=True)
    y = g(x, torch.ones_like(x))
    radius = 0
    for t in range(frames // 2, frames // 2 + 4):  # all four phases of the stride-4 grid
        (grad,) = torch.autograd.grad(y[0, :, t].sum(), x, retain_graph=True)
        hit = (grad[0].abs().sum(0) > 0).nonzero().flatten()
        radius = max(radius, t - int(hit.min()), int(hit.max()) - t)
    return radius


def test_purely_convolutional_generator_chunked_equals_whole() -> None:
    """norm='none' makes the generator purely convolutional: with context >= its
    receptive-field radius every frame, seams included, sees the input of a whole pass.

    Tolerance: float32 convolutions over windows of other widths may sum in another
    order (oneDNN blocks by width), i.e. rounding at float32 epsilon times the depth;
    torch's float32 defaults (rtol 1.3e-6, atol 1e-5) allow that and nothing more.
    """
    model = tiny_model(norm="none").eval()
    radius = receptive_radius(model.g_ab, TINY_MEL.n_mels)
    ctx = -(-radius // 4) * 4
    mel = torch.from_numpy(tiny_stats(3, 150.0).normalize(_mel_of(speech_like(12.0, seed=3))))[None]

    def gen(x: torch.Tensor) -> torch.Tensor:
        return model.convert(x, "a2b")

    with torch.inference_mode():
        whole = gen(mel)
        chunked = map_frames_chunked(gen, mel, chunk_frames=128, context_frames=ctx, multiple=4)
        too_little = map_frames_chunked(gen, mel, chunk_frames=128, context_frames=8, multiple=4)
    assert mel.shape[-1] > 6 * 128  # several seams
    torch.testing.assert_close(chunked, whole)
    # the context is what makes it exact: without enough of it the seams differ
    assert (too_little - whole).abs().max() > 1e3 * (chunked - whole).abs().max().clamp_min(1e-7)


def test_instance_norm_generator_single_window_is_exact() -> None:
    """An input that fits one window is converted in one pass (the paper's inference)."""
    model = tiny_model().eval()
    x = torch.randn(1, TINY_MEL.n_mels, 300)
    with torch.inference_mode():
        whole = model.convert(x, "b2a")
        one = map_frames_chunked(lambda t: model.convert(t, "b2a"), x, chunk_frames=300 // 4 * 4 + 4,
                                 context_frames=96, multiple=4)
    torch.testing.assert_close(one, whole, rtol=0, atol=0)


def _mel_of(wav: np.ndarray) -> np.ndarray:
    return LogMel(TINY_MEL)(torch.from_numpy(wav)).numpy()


@pytest.mark.parametrize("n_samples", [64 * 700, 64 * 700 + 37])
def test_chunked_log_mel_matches_librosa(n_samples: int) -> None:
    wav = speech_like(n_samples / TINY_MEL.sample_rate + 0.01, seed=5)[:n_samples]
    cfg = TINY_MEL
    got = log_mel_chunked(LogMel(cfg), torch.from_numpy(wav), chunk_frames=100).numpy()
    mel = librosa.feature.melspectrogram(
        y=wav.astype(np.float64), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, power=cfg.power, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        center=True, pad_mode="reflect", htk=False, norm="slaney",
    )
    ref = np.log(np.maximum(mel, cfg.log_floor))
    assert got.shape == ref.shape == (cfg.n_mels, cfg.frames(n_samples))
    loud = mel > 10 * cfg.log_floor  # where float32 FFT rounding is negligible (see LogMel)
    np.testing.assert_allclose(got[loud], ref[loud], atol=1e-4)
    # and it is the whole-signal front end, segment seams included
    np.testing.assert_allclose(got, _mel_of(wav), atol=1e-5)


def test_chunked_vocoding_places_and_weights_samples_exactly() -> None:
    mel = torch.from_numpy(_mel_of(speech_like(10.0, seed=7)))
    n = (mel.shape[-1] - 1) * TINY_MEL.hop_length + 13
    frame_vocoder = FrameVocoder()  # deterministic: misplaced or mis-weighted samples show
    whole = frame_vocoder(mel[None])[0]
    whole = torch.nn.functional.pad(whole, (0, max(0, n - whole.shape[0])))[:n]
    for xf in (0, 2 * TINY_MEL.hop_length, 6 * TINY_MEL.hop_length):
        got = vocode_chunked(frame_vocoder, mel, n, TINY_MEL.hop_length, chunk_frames=150,
                             context_frames=8, crossfade=xf)
        torch.testing.assert_close(got, whole)  # the fade weights of a seam sum to one


def test_chunked_griffin_lim_matches_whole_away_from_seams() -> None:
    """Griffin-Lim restarts from random phase in every window, so chunked and whole
    outputs differ sample by sample; their spectra must agree.

    Reference: the log-mel of the input itself. Away from seams the chunked output
    reconstructs it as well as a whole pass does: the mean log-mel error of chunked
    frames (more than 4 frames from a seam) is within 10 % of the whole pass's (both
    are Griffin-Lim estimates of the same magnitudes; 10 % covers the run-to-run
    spread of random starts, which we measured at 2-6 %).
    """
    wav = speech_like(16.0, seed=11)
    mel = torch.from_numpy(_mel_of(wav))
    gl = GriffinLim(TINY_MEL, n_iter=16)
    n = wav.shape[0]
    with torch.inference_mode():
        whole = gl(mel[None], length=n)[0]
        chunked = vocode_chunked(gl, mel, n, TINY_MEL.hop_length, chunk_frames=400, context_frames=16)
    front = LogMel(TINY_MEL)
    err_whole = (front(whole) - mel).abs().mean(0)
    err_chunk = (front(chunked) - mel).abs().mean(0)
    seams = [w.keep_start for w in plan_windows(mel.shape[-1], 400, 16)[1:]]
    assert len(seams) >= 3
    away = torch.ones_like(err_chunk, dtype=torch.bool)
    for s in seams:
        away[max(0, s - 4) : s + 4] = False
    assert err_chunk[away].mean() <= 1.1 * err_whole[away].mean()
    assert torch.isfinite(chunked).all() and chunked.abs().max() > 0


def _peak_rss_mb(fn) -> float:
    """Peak resident memory (MB) that ``fn()`` adds above the RSS before it (Linux VmHWM)."""
    status = Path("/proc/self/status")

    def field(name: str) -> float:
        return int(re.search(rf"{name}:\s+(\d+)", status.read_text()).group(1)) / 1024

    before = field("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    fn()
    return field("VmHWM") - before


@pytest.mark.slow
def test_memory_stays_bounded_for_long_inputs() -> None:
    """Generator and vocoder passes over 4x more frames must not need ~4x the memory.

    A whole pass's activations grow with the input (the first layer alone is
    channels x n_mels x frames floats); chunked passes hold one window at a time, and
    only the (small) mel input/output and waveform grow. Measured as the extra peak
    RSS over the RSS before each call. The whole pass serves as the yardstick (and
    shows that the measurement sees growth at all): its peak must grow by > 3x from
    1x to 4x input, while the chunked peak may grow by at most a quarter of the
    whole pass's growth and stay below a quarter of its 4x peak.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    n_mels = TINY_MEL.n_mels
    model = tiny_model(base_channels=16).eval()
    gl = GriffinLim(TINY_MEL, n_iter=2, nnls_iter=2)

    def chunked(frames: int) -> None:
        x = torch.randn(1, n_mels, frames)
        with torch.inference_mode():
            y = map_frames_chunked(lambda t: model.convert(t, "a2b"), x, 512, 52, 4)
            vocode_chunked(gl, y[0], frames * TINY_MEL.hop_length, TINY_MEL.hop_length, 512, 8)

    def whole(frames: int) -> None:
        x = torch.randn(1, n_mels, frames)
        with torch.inference_mode():
            gl(model.convert(x, "a2b"))

    frames = 4096
    chunked(frames)  # warm-up: allocator pools, one-off buffers
    small, large = _peak_rss_mb(lambda: chunked(frames)), _peak_rss_mb(lambda: chunked(4 * frames))
    w_small, w_large = _peak_rss_mb(lambda: whole(frames)), _peak_rss_mb(lambda: whole(4 * frames))
    assert w_large > 3.0 * w_small  # a whole pass grows with the input, and we see it
    assert large - small < 0.25 * (w_large - w_small)
    assert large < 0.25 * w_large
