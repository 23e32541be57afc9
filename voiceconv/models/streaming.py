"""Nets that stream: causal time convolutions with carried state, and a per-position norm.

A convolutional net runs on a stream, one piece of frames at a time, with exactly the
numbers of a whole-input pass when three things hold:

1. every convolution is *causal* along time (all its padding on the left, zeros), so an
   output frame never needs a frame that has not arrived;
2. every normalisation uses statistics that do not depend on the rest of the input
   (batch norm at inference, with its running statistics; :class:`ChannelNorm`, over the
   channels at each position; instance norm over the time axis does not qualify);
3. each convolution remembers its last ``(kernel - 1) * dilation`` input frames (and, for a
   strided one, the frames not yet consumed) between pieces: :class:`CausalConv1d` /
   :class:`CausalConv2d` inside :func:`streaming`.

A net that should see ``lookahead`` future frames is made causal and its output read
``lookahead`` frames late (:func:`shift_for_lookahead` offline; a stream simply drops its
first ``lookahead`` outputs and feeds ``lookahead`` copies of the last frame at the end).
The state of a stream is a fixed number of frames per layer: memory does not grow with
the stream's length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.errors import ConfigError


class _CausalConv:
    """Shared body of the causal convolutions (time = the last axis)."""

    _state: Tensor | None
    _streaming: bool

    def _init_causal(self) -> None:
        conv = self  # type: ignore[assignment]
        if conv.padding_mode != "zeros":  # type: ignore[attr-defined]
            raise ConfigError("a causal convolution pads time with zeros; padding_mode must be 'zeros'")
        pads = tuple(conv.padding)  # type: ignore[attr-defined]
        if pads[-1] != 0:
            raise ConfigError(f"a causal convolution takes its time padding itself; got padding {pads}")
        self.context = (conv.kernel_size[-1] - 1) * conv.dilation[-1]  # type: ignore[attr-defined]
        self.time_stride = int(conv.stride[-1])  # type: ignore[attr-defined]
        self._state = None
        self._streaming = False

    def _causal_forward(self, x: Tensor, conv: nn.Module) -> Tensor:
        if not self._streaming:
            return conv(F.pad(x, (self.context, 0)))
        if self._state is None:  # a stream starts with the zeros a whole pass pads with
            self._state = x.new_zeros(*x.shape[:-1], self.context)
        buf = torch.cat([self._state, x], dim=-1)
        span = self.context + 1
        n_out = (buf.shape[-1] - span) // self.time_stride + 1 if buf.shape[-1] >= span else 0
        if n_out <= 0:
            raise ConfigError(f"streaming: a piece of {x.shape[-1]} frames is too short for a stride-"
                              f"{self.time_stride} layer; push multiples of the net's time stride")
        y = conv(buf[..., : (n_out - 1) * self.time_stride + span])
        self._state = buf[..., n_out * self.time_stride :]
        return y


class CausalConv1d(nn.Conv1d, _CausalConv):
    """``nn.Conv1d`` padded on the left only along time; carries state inside :func:`streaming`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._init_causal()

    def forward(self, x: Tensor) -> Tensor:
        return self._causal_forward(x, super().forward)  # type: ignore[arg-type]


class CausalConv2d(nn.Conv2d, _CausalConv):
    """``nn.Conv2d`` (``(B, C, H, T)``) padded on the left only along time (the last axis);
    the other axis keeps its own padding. Carries state inside :func:`streaming`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._init_causal()

    def forward(self, x: Tensor) -> Tensor:
        return self._causal_forward(x, super().forward)  # type: ignore[arg-type]


def _causal_copy(conv: nn.Conv1d | nn.Conv2d) -> nn.Module:
    cls = CausalConv1d if isinstance(conv, nn.Conv1d) else CausalConv2d
    padding = tuple(conv.padding)[:-1] + (0,)
    if isinstance(conv.padding, str):
        raise ConfigError("make_causal: string padding is not supported")
    new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
              padding=padding, dilation=conv.dilation, groups=conv.groups,
              bias=conv.bias is not None)
    new.load_state_dict(conv.state_dict())
    return new


def make_causal(module: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.Conv1d``/``nn.Conv2d`` inside ``module`` by its causal
    version (same parameters and parameter names, time padding moved to the left).
    Returns ``module``. Transposed convolutions are refused (none of our streaming nets
    use them: upsampling is by pixel shuffle, which is frame-local)."""
    for name, child in module.named_children():
        if isinstance(child, nn.ConvTranspose1d | nn.ConvTranspose2d):
            raise ConfigError("make_causal: transposed convolutions do not stream here")
        if isinstance(child, _CausalConv):
            continue
        if type(child) in (nn.Conv1d, nn.Conv2d):
            setattr(module, name, _causal_copy(child))
        else:
            make_causal(child)
    return module


@contextlib.contextmanager
def streaming(module: nn.Module) -> Iterator[None]:
    """Inside: every causal convolution of ``module`` carries state from call to call
    (a new stream starts empty). Outside again, the state is dropped."""
    convs = [m for m in module.modules() if isinstance(m, _CausalConv)]
    for m in convs:
        m._streaming, m._state = True, None
    try:
        yield
    finally:
        for m in convs:
            m._streaming, m._state = False, None


def state_frames(module: nn.Module) -> int:
    """Frames held by the causal convolutions of ``module`` now (a bounded number)."""
    return sum(int(m._state.shape[-1]) for m in module.modules()
               if isinstance(m, _CausalConv) and m._state is not None)


class ChannelNorm(nn.Module):
    """Normalise over the channels at each position (time, and frequency for 2-D input),
    with a per-channel scale and shift: layer norm over channels, as ConvNeXt and Vocos do.

    Unlike instance norm (statistics over the whole time axis) it gives a frame the same
    numbers whatever else is in the input, so a net built with it streams exactly.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).square().mean(dim=1, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return y * self.weight.view(shape) + self.bias.view(shape)


def shift_for_lookahead(x: Tensor, lookahead: int, multiple: int = 1) -> tuple[Tensor, int]:
    """The input of a causal net that should see ``lookahead`` future frames: ``x`` with
    ``lookahead`` copies of its last frame appended, then padded (copies again) to a
    multiple of ``multiple``. Returns it and the original length; the caller keeps output
    frames ``lookahead : lookahead + length``."""
    t = x.shape[-1]
    extra = int(lookahead) + (-(t + int(lookahead))) % int(multiple)
    if extra:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], extra)], dim=-1)
    return x, t


__all__ = ["CausalConv1d", "CausalConv2d", "ChannelNorm", "make_causal", "shift_for_lookahead",
           "state_frames", "streaming"]
