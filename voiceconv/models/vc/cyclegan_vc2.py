"""CycleGAN-VC2 (Kaneko et al., ICASSP 2019): 2-1-2D CNN generator, 2D PatchGAN
discriminator, and the two-step adversarial loss, built on :class:`~voiceconv.models.cyclegan.CycleGAN`.

Architecture (paper Fig. 4; ``h`` = mel bins, ``w`` = frames; every "GLU" is a real
gated linear unit — a second convolution computes the gate, see
:class:`~voiceconv.models.blocks.GatedConv`):

Generator ``Generator212``::

    Conv2d k(5,15) c128 s1, GLU                                   (no norm)
    Downsample2d k5 c256 s2, IN, GLU   x2  (256, 256)              h/4 x w/4
    reshape (256 * h/4, w/4) -> Conv1d k1 c256, IN                 2D -> 1D
    6 x residual block: Conv1d k3 c512 IN GLU -> Conv1d k3 c256 IN -> sum
    Conv1d k1 c(256 * h/4), IN -> reshape (256, h/4, w/4)          1D -> 2D
    Upsample2d k5 c1024 -> PixelShuffle(2) -> IN -> GLU   (128 out; 256 with gate "conv")
    Upsample2d k5 c512  -> PixelShuffle(2) -> IN -> GLU   (64 out; 128 with gate "conv")
    Conv2d k(5,15) c1                                              (no norm, linear output)

Discriminator ``PatchDiscriminator2D``::

    Conv2d k3 c128 s1, GLU                                        (no norm)
    Downsample2d k3 s2, IN, GLU: c256, c512, c1024
    Downsample2d k(1,5) s1 c1024, IN, GLU
    Conv2d k(1,3) c1                                              raw logits, no sigmoid

Sizes: ``"paper"`` is the figure's widths (base 128, residual 256 with 512 hidden,
6 residual blocks — CycleGAN-VC2 Fig. 4, kept unchanged by MaskCycleGAN-VC, which
"uses the CycleGAN-VC2 generator"); ``"small"`` divides every width by 4 for CPU
demos and tests (about 1/16 of the parameters).

The upsampling GLU (``upsample_gate``): the figure lists each convolution's width
and a "GLU" after it. For the input, downsampling and residual layers we read the
width as the value's and give the gate its own convolution of the same width (as
the public implementations do). For the two upsampling entries ("c1024 ->
PixelShuffler -> IN -> GLU", "c512 -> ...") the default ``"split"`` reads the listed
convolution as holding value AND gate, split in halves after the shuffle
(Dauphin et al.'s GLU, :func:`torch.nn.functional.glu`): 256 -> c1024 -> 128 and
128 -> c512 -> 64 channels. Its convolutions are exactly those of the public
MaskCycleGAN-VC implementation (which gates ``x * sigmoid(x)`` there instead — not a
GLU — and so keeps 256 and 128 channels), so the paper-size generator costs
1.25 TFLOP per minute of audio (22.05 kHz, hop 256) instead of 2.60 TFLOP with
``"conv"`` (a separate c1024 / c512 gate convolution, twice the upsampling cost;
our default before 2026-11-25, kept for those checkpoints). Upsampling is 78 % of the
generator's multiply-adds with ``"conv"``; ``"split"`` is what makes paper-size
conversion faster than 10x real time on two CPU cores possible
(``scripts/bench_convert.py``).

Deviations, and why:

* The paper applies its nets to fixed 128-frame (VC2) / 64-frame (VC3, Mask) crops.
  For whole utterances at conversion time the generator pads the frame axis to a
  multiple of 4 (replicate padding) and crops the output back, so any length works.
* Weight initialisation is PyTorch's default (the paper does not state one; the
  public re-implementations use the default too).
* ``lookahead`` (not in the papers; the streaming variant ``maskcyclegan_vc_stream_small``):
  every time convolution of the generator is causal and the output is read ``lookahead``
  frames late, so frame ``t`` depends on input frames ``<= t + lookahead`` (the paper's
  generator sees about +-0.9 s both ways), and its norm is one whose statistics do not depend
  on the rest of the input (``generator_norm``; batch norm, whose running statistics serve at
  inference) instead of instance norm over time. Why: a stream of 46 ms blocks with less than
  200 ms of latency (:mod:`voiceconv.conversion.streaming`). It costs quality (see
  :data:`voiceconv.models.vc.factory.STREAM_GENERATOR`).
* Discriminators return raw logits; the LSGAN loss is applied to them by
  :class:`~voiceconv.models.losses.GANLoss` (an LSGAN loss on sigmoid outputs — a
  fault of a public re-implementation — is not the paper's objective).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.blocks import (
    GATES,
    ConvNormAct,
    GatedConv,
    GatedUpsample,
    NormKind,
    ResidualBlock,
    conv_layer,
)
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.models.streaming import make_causal, shift_for_lookahead

#: frames and mel bins must be multiples of this (two stride-2 downsamplings)
DOWNSAMPLE_FACTOR = 4


@dataclass(frozen=True)
class VC2Size:
    """Channel widths of a CycleGAN-VC2-style generator and discriminator."""

    base_channels: int
    residual_channels: int
    residual_hidden: int
    n_residual: int
    d_base_channels: int


#: ``paper``: CycleGAN-VC2 Fig. 4; ``small``: every width / 4 (CPU demos and tests).
SIZES: dict[str, VC2Size] = {
    "paper": VC2Size(base_channels=128, residual_channels=256, residual_hidden=512,
                     n_residual=6, d_base_channels=128),
    "small": VC2Size(base_channels=32, residual_channels=64, residual_hidden=128,
                     n_residual=6, d_base_channels=32),
}


def resolve_size(size: str, **overrides: int | None) -> VC2Size:
    """The widths of preset ``size`` with any non-None ``overrides`` applied."""
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r} (expected one of {sorted(SIZES)})")
    values = asdict(SIZES[size])
    for key, value in overrides.items():
        if key not in values:
            raise ConfigError(f"unknown size field {key!r}")
        if value is not None:
            if int(value) < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
            values[key] = int(value)
    return VC2Size(**values)


def _gate_before_option(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """``upgrade_hparams`` of the generator and the models: checkpoints from before
    ``upsample_gate`` existed were built with ``"conv"``."""
    return {"upsample_gate": "conv", **hparams}


def _as_image(x: Tensor, what: str) -> Tensor:
    """``(B, n_mels, T)`` -> ``(B, 1, n_mels, T)``; ``(B, 1, n_mels, T)`` passes through."""
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4 and x.shape[1] == 1:
        return x
    raise ConfigError(f"{what}: expected (B, n_mels, T) or (B, 1, n_mels, T), got {tuple(x.shape)}")


class Generator212(SavableModule):
    """CycleGAN-VC2's 2-1-2D CNN generator: ``(B, n_mels, T) -> (B, n_mels, T)``.

    ``in_channels=1`` reads the mel as a one-channel image (CycleGAN-VC2);
    ``in_channels=2`` takes ``(x * mask, mask)`` (MaskCycleGAN-VC): call
    ``g(x, mask)`` with ``mask`` of ``x``'s shape (``None`` means all ones).
    See the module docstring for the layer list and deviations.
    """

    def __init__(
        self,
        n_mels: int = 80,
        in_channels: int = 1,
        base_channels: int = 128,
        residual_channels: int = 256,
        residual_hidden: int = 512,
        n_residual: int = 6,
        norm: NormKind | str = "instance",
        upsample_gate: str = "split",
        lookahead: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hparams(n_mels=n_mels, in_channels=in_channels, base_channels=base_channels,
                          residual_channels=residual_channels, residual_hidden=residual_hidden,
                          n_residual=n_residual, norm=norm, upsample_gate=upsample_gate,
                          lookahead=lookahead)
        if lookahead is not None and (int(lookahead) < 0 or norm == "instance"):
            raise ConfigError("Generator212: a streaming generator (lookahead set) needs lookahead >= 0"
                              f" and a norm other than instance norm, got {lookahead}, {norm!r}")
        if upsample_gate not in GATES:
            raise ConfigError(f"Generator212: upsample_gate must be one of {GATES}, got {upsample_gate!r}")
        if n_mels % DOWNSAMPLE_FACTOR:
            raise ConfigError(f"Generator212: n_mels must be a multiple of {DOWNSAMPLE_FACTOR}, got {n_mels}")
        if in_channels not in (1, 2):
            raise ConfigError(f"Generator212: in_channels must be 1 or 2 (mel, mask), got {in_channels}")
        self.n_mels = n_mels
        self.in_channels = in_channels
        wide = 2 * base_channels
        self.flat_channels = wide * (n_mels // DOWNSAMPLE_FACTOR)

        self.conv_in = GatedConv(in_channels, base_channels, (5, 15), dim=2, norm="none")
        self.down = nn.Sequential(
            GatedConv(base_channels, wide, 5, stride=2, padding=2, dim=2, norm=norm),
            GatedConv(wide, wide, 5, stride=2, padding=2, dim=2, norm=norm),
        )
        self.to_1d = ConvNormAct(self.flat_channels, residual_channels, 1, dim=1, norm=norm,
                                 act="none")
        self.residual = nn.Sequential(*[
            ResidualBlock(residual_channels, dim=1, norm=norm, kind="gated",
                          hidden_channels=residual_hidden)
            for _ in range(n_residual)
        ])
        self.to_2d = ConvNormAct(residual_channels, self.flat_channels, 1, dim=1, norm=norm,
                                 act="none")
        # "split": the listed widths 4 * wide (c1024) and 4 * base (c512) hold value and gate
        up1, up2 = (wide, base_channels) if upsample_gate == "conv" else (wide // 2, base_channels // 2)
        if min(up1, up2) < 1:
            raise ConfigError(f"Generator212: base_channels {base_channels} too small for upsample_gate='split'")
        self.up = nn.Sequential(
            GatedUpsample(wide, up1, 5, upscale_factor=2, dim=2, norm=norm, gate=upsample_gate),
            GatedUpsample(up1, up2, 5, upscale_factor=2, dim=2, norm=norm, gate=upsample_gate),
        )
        self.conv_out = conv_layer(up2, 1, (5, 15), dim=2)
        self.lookahead = None if lookahead is None else int(lookahead)
        if self.lookahead is not None:
            make_causal(self)

    upgrade_hparams = classmethod(_gate_before_option)

    def prepare_input(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, n_mels, T)`` (and the optional mask) -> the net's image input ``(B, C, n_mels, T)``."""
        img = _as_image(x, "Generator212")
        if img.shape[2] != self.n_mels:
            raise ConfigError(f"Generator212: built for {self.n_mels} mel bins, got {img.shape[2]}")
        if self.in_channels == 2:
            m = torch.ones_like(img) if mask is None else _as_image(mask, "Generator212 mask")
            if m.shape != img.shape:
                raise ConfigError(f"Generator212: mask shape {tuple(m.shape)} != input {tuple(img.shape)}")
            img = torch.cat([img * m.to(img.dtype), m.to(img.dtype)], dim=1)
        elif mask is not None:
            raise ConfigError("Generator212: a mask needs in_channels=2 (MaskCycleGAN-VC)")
        return img

    def body(self, img: Tensor) -> Tensor:
        """The layers on an image input whose frame count is a multiple of 4 -> ``(B, n_mels, T)``.
        A streaming generator (``lookahead`` set) runs it piece by piece inside
        :func:`~voiceconv.models.streaming.streaming`."""
        b = img.shape[0]
        h = self.down(self.conv_in(img))
        c, hq, tq = h.shape[1], h.shape[2], h.shape[3]
        h = self.to_2d(self.residual(self.to_1d(h.reshape(b, c * hq, tq))))
        return self.conv_out(self.up(h.reshape(b, c, hq, tq)))[:, 0]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Convert ``x`` ``(B, n_mels, T)``; ``mask`` (same shape, 1 = keep) only with 2 input channels.

        A streaming generator (``lookahead`` set) is causal: it reads ``lookahead`` copies of
        the last frame past the end and its output ``lookahead`` frames late, so output frame
        ``t`` depends on input frames ``<= t + lookahead`` only."""
        img = self.prepare_input(x, mask)
        t = img.shape[-1]
        if self.lookahead is not None:
            img, _ = shift_for_lookahead(img, self.lookahead, DOWNSAMPLE_FACTOR)
            return self.body(img)[..., self.lookahead : self.lookahead + t]
        pad = (-t) % DOWNSAMPLE_FACTOR
        if pad:
            img = F.pad(img, (0, pad, 0, 0), mode="replicate")
        return self.body(img)[..., :t]


class PatchDiscriminator2D(SavableModule):
    """CycleGAN-VC2's 2D PatchGAN discriminator with gated (GLU) downsampling.

    Input ``(B, n_mels, T)`` (or ``(B, 1, n_mels, T)``); output raw logits
    ``(B, 1, ceil(n_mels/8), ceil(T/8))`` — one per patch, no sigmoid.
    """

    def __init__(self, base_channels: int = 128, norm: NormKind | str = "instance") -> None:
        super().__init__()
        self.save_hparams(base_channels=base_channels, norm=norm)
        c = base_channels
        self.conv_in = GatedConv(1, c, 3, dim=2, norm="none")
        self.down = nn.Sequential(
            GatedConv(c, 2 * c, 3, stride=2, padding=1, dim=2, norm=norm),
            GatedConv(2 * c, 4 * c, 3, stride=2, padding=1, dim=2, norm=norm),
            GatedConv(4 * c, 8 * c, 3, stride=2, padding=1, dim=2, norm=norm),
            GatedConv(8 * c, 8 * c, (1, 5), stride=1, padding=(0, 2), dim=2, norm=norm),
        )
        self.conv_out = conv_layer(8 * c, 1, (1, 3), dim=2)

    def forward(self, x: Tensor) -> Tensor:
        """Patch logits for ``x``."""
        return self.conv_out(self.down(self.conv_in(_as_image(x, "PatchDiscriminator2D"))))


class CycleGANVC2(CycleGAN):
    """CycleGAN-VC2: two :class:`Generator212`, two :class:`PatchDiscriminator2D` and,
    with ``use_d2``, two more judging cycle-converted features (two-step adversarial loss).

    Built from plain arguments, so :func:`~voiceconv.models.base.save_model` /
    ``load_model`` round-trip it. ``size`` picks a preset from :data:`SIZES`; the
    width arguments, when given, override it. Loss weights follow the paper:
    ``lambda_cycle=10``, ``lambda_identity=5`` for the first ``identity_steps=10^4``
    iterations, least-squares GAN loss.
    """

    #: generator input channels (MaskCycleGAN-VC uses 2: masked mel and mask)
    generator_in_channels: ClassVar[int] = 1

    def __init__(
        self,
        n_mels: int = 80,
        size: str = "paper",
        base_channels: int | None = None,
        residual_channels: int | None = None,
        residual_hidden: int | None = None,
        n_residual: int | None = None,
        d_base_channels: int | None = None,
        norm: str = "instance",
        use_d2: bool = True,
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 5.0,
        identity_steps: int | None = 10000,
        pool_size: int = 0,
        upsample_gate: str = "split",
        lookahead: int | None = None,
        generator_norm: str | None = None,
    ) -> None:
        widths = resolve_size(size, base_channels=base_channels,
                              residual_channels=residual_channels,
                              residual_hidden=residual_hidden, n_residual=n_residual,
                              d_base_channels=d_base_channels)

        def generator() -> Generator212:
            return Generator212(n_mels, self.generator_in_channels, widths.base_channels,
                                widths.residual_channels, widths.residual_hidden,
                                widths.n_residual, generator_norm or norm, upsample_gate, lookahead)

        def discriminator() -> PatchDiscriminator2D:
            return PatchDiscriminator2D(widths.d_base_channels, norm)

        super().__init__(
            generator(), generator(), discriminator(), discriminator(),
            discriminator() if use_d2 else None, discriminator() if use_d2 else None,
            gan_mode=gan_mode, lambda_cycle=lambda_cycle, lambda_identity=lambda_identity,
            identity_steps=identity_steps, pool_size=pool_size,
        )
        self.n_mels = n_mels
        self.save_hparams(
            n_mels=n_mels, size=size, base_channels=base_channels,
            residual_channels=residual_channels, residual_hidden=residual_hidden,
            n_residual=n_residual, d_base_channels=d_base_channels, norm=norm, use_d2=use_d2,
            gan_mode=gan_mode, lambda_cycle=lambda_cycle, lambda_identity=lambda_identity,
            identity_steps=identity_steps, pool_size=pool_size, upsample_gate=upsample_gate,
            lookahead=lookahead, generator_norm=generator_norm,
        )

    upgrade_hparams = classmethod(_gate_before_option)


__all__ = [
    "DOWNSAMPLE_FACTOR",
    "SIZES",
    "CycleGANVC2",
    "Generator212",
    "PatchDiscriminator2D",
    "VC2Size",
    "resolve_size",
]
