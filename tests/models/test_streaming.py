"""Causal convolutions, channel norm and streaming state (voiceconv.models.streaming)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voiceconv.errors import ConfigError
from voiceconv.models.streaming import (
    CausalConv1d,
    CausalConv2d,
    ChannelNorm,
    make_causal,
    shift_for_lookahead,
    state_frames,
    streaming,
)
from voiceconv.models.vc import build_vc_model
from voiceconv.vocoders.vocos import VocosGenerator

TINY = dict(base_channels=8, residual_channels=16, residual_hidden=16, n_residual=2, d_base_channels=4)


def test_causal_conv_is_a_left_padded_convolution():
    torch.manual_seed(0)
    ref = nn.Conv1d(3, 5, 4, stride=2, dilation=1)
    conv = make_causal(nn.Sequential(ref))[0]
    assert isinstance(conv, CausalConv1d)
    assert set(conv.state_dict()) == {"weight", "bias"}  # the same parameter names
    x = torch.randn(2, 3, 17)
    # closed form: zeros on the left, no padding on the right
    expected = torch.nn.functional.conv1d(torch.cat([torch.zeros(2, 3, 3), x], -1), ref.weight,
                                          ref.bias, stride=2)
    torch.testing.assert_close(conv(x), expected)


@pytest.mark.parametrize("stride", [1, 2])
def test_streamed_causal_conv_equals_the_whole_pass(stride):
    torch.manual_seed(1)
    conv = make_causal(nn.Sequential(nn.Conv2d(2, 4, (3, 5), stride=(1, stride), padding=(1, 2))))
    x = torch.randn(1, 2, 6, 24)
    whole = conv(x)
    with streaming(conv):
        pieces = [conv(x[..., i : i + 4]) for i in range(0, 24, 4)]
        held = state_frames(conv)
    torch.testing.assert_close(torch.cat(pieces, -1), whole)
    assert held == 4  # (kernel - 1) frames for stride 1; the unconsumed ones for stride 2
    assert isinstance(conv[0], CausalConv2d) and conv[0]._state is None  # dropped on exit


def test_channel_norm_normalises_each_position_over_channels():
    torch.manual_seed(2)
    norm = ChannelNorm(6)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    y = norm(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0)
    # a frame's output does not depend on the other frames (what instance norm breaks)
    x2 = x.clone()
    x2[..., 3:] = 100.0
    torch.testing.assert_close(norm(x2)[..., :3], y[..., :3])


def test_shift_for_lookahead_appends_copies_of_the_last_frame():
    x = torch.arange(5.0).reshape(1, 1, 5)
    y, t = shift_for_lookahead(x, 2, 4)
    assert t == 5 and y.shape[-1] == 8 and y[0, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_make_causal_refuses_transposed_convolutions():
    with pytest.raises(ConfigError, match="transposed"):
        make_causal(nn.Sequential(nn.ConvTranspose1d(2, 2, 3)))


def test_stream_generator_sees_only_lookahead_future_frames():
    torch.manual_seed(3)
    g = build_vc_model("maskcyclegan_vc_stream_small", **TINY).g_ab.eval()
    x = torch.randn(1, 80, 40)
    with torch.no_grad():
        y = g(x)
        for t in (7, 16, 25):
            x2 = x.clone()
            x2[..., t + g.lookahead + 1 :] += 5.0  # change only frames after t + lookahead
            torch.testing.assert_close(g(x2)[..., : t + 1], y[..., : t + 1])
        x3 = x.clone()
        x3[..., 20] += 5.0  # a frame inside the look-ahead of frame 16 does change it (an
        # untrained batch-norm net answers weakly; the frames before stay bit-identical)
        assert (g(x3)[..., 16] - y[..., 16]).abs().max() > 1e-7


def test_offline_generator_is_unchanged_by_the_streaming_options():
    g = build_vc_model("maskcyclegan_vc_small", **TINY).g_ab
    assert g.lookahead is None
    assert not any(isinstance(m, CausalConv1d | CausalConv2d) for m in g.modules())
    with pytest.raises(ConfigError, match="instance"):
        build_vc_model("maskcyclegan_vc_small", lookahead=2, **TINY)


def test_stream_vocos_sees_only_lookahead_future_frames():
    torch.manual_seed(4)
    g = VocosGenerator(dim=32, intermediate_dim=64, num_layers=2, lookahead=2).eval()
    x = torch.randn(1, 80, 30)
    with torch.no_grad():
        mag, _ = g.spectrum(x)
        x2 = x.clone()
        x2[..., 13:] -= 3.0
        mag2, _ = g.spectrum(x2)
    torch.testing.assert_close(mag2[..., :11], mag[..., :11])
    assert (mag2[..., 11] - mag[..., 11]).abs().max() > 1e-4


def test_streaming_state_is_bounded():
    torch.manual_seed(5)
    g = build_vc_model("maskcyclegan_vc_stream_small", **TINY).g_ab.eval()
    sizes = []
    with torch.no_grad(), streaming(g):
        for _ in range(30):
            g.body(g.prepare_input(torch.randn(1, 80, 4)))
            sizes.append(state_frames(g))
    assert len(set(sizes[3:])) == 1 and np.isfinite(sizes[-1])
