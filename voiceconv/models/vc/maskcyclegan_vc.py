"""MaskCycleGAN-VC (Kaneko et al., ICASSP 2021): CycleGAN-VC2 trained with filling in frames (FIF).

The generator is CycleGAN-VC2's 2-1-2D CNN with a two-channel input: the mel
spectrogram with a temporal mask applied, ``x * m``, and the mask ``m`` itself.
During training the *forward* conversions ``G_ab(a)`` / ``G_ba(b)`` get a random
mask — one contiguous run of frames, all mel bins, set to zero — and the generator
has to fill the missing frames in from their surroundings while converting; the
cycle and identity passes, and conversion at inference time, get an all-ones mask.
Paper setting: 80-bin mel, 64-frame crops, mask length drawn from 0..25 frames.

Everything else (two-step adversarial loss with second discriminators, LSGAN,
``lambda_cycle=10``, ``lambda_identity=5`` for the first 10^4 iterations) is
CycleGAN-VC2's; see :mod:`voiceconv.models.vc.cyclegan_vc2` for the nets.

Choices the paper leaves open, and ours:

* The mask length is uniform over the integers ``0..max_len`` *inclusive*, drawn
  independently for each example of the batch, and its start uniform over the
  positions where it fits. ``max_len`` is either a frame count
  (``max_mask_frames``, default 25 as in the paper) or a fraction of the crop
  length (``max_mask_fraction``; 25/64 reproduces the paper at 64 frames and scales
  with other crop lengths).
* The forward pass is masked whenever :meth:`MaskCycleGANVC.translate` is asked for
  ``"forward"``, in train or eval mode; :meth:`convert` and ``forward`` (inference)
  always use an all-ones mask.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from voiceconv.errors import ConfigError
from voiceconv.models.cyclegan import TranslateKind
from voiceconv.models.vc.cyclegan_vc2 import CycleGANVC2

#: the paper's mask limit: up to 25 of 64 frames
PAPER_MAX_MASK_FRAMES = 25
PAPER_CROP_FRAMES = 64


def make_temporal_mask(
    batch: int,
    n_mels: int,
    frames: int,
    max_len: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Random FIF masks ``(batch, n_mels, frames)``: 1 = keep, 0 = masked.

    For each example a length ``L`` uniform in ``0..min(max_len, frames)`` (inclusive)
    and a start ``s`` uniform in ``0..frames - L`` are drawn (on the CPU, from
    ``generator`` if given, so masks are reproducible on any device); frames
    ``s .. s+L-1`` are zero in every mel bin.
    """
    if batch < 0 or n_mels < 1 or frames < 1:
        raise ConfigError(f"make_temporal_mask: bad shape ({batch}, {n_mels}, {frames})")
    if max_len < 0:
        raise ConfigError(f"make_temporal_mask: max_len must be >= 0, got {max_len}")
    limit = min(int(max_len), frames)
    lengths = torch.randint(0, limit + 1, (batch,), generator=generator)
    # start uniform in [0, frames - L]: floor(u * (frames - L + 1)), u ~ U[0, 1)
    u = torch.rand((batch,), generator=generator, dtype=torch.float64)
    starts = (u * (frames - lengths + 1).to(torch.float64)).floor().long()
    starts = torch.minimum(starts, frames - lengths)
    t = torch.arange(frames)
    masked = (t[None, :] >= starts[:, None]) & (t[None, :] < (starts + lengths)[:, None])
    keep = (~masked).to(dtype)
    return keep[:, None, :].expand(batch, n_mels, frames).to(device).contiguous()


class MaskCycleGANVC(CycleGANVC2):
    """MaskCycleGAN-VC: :class:`CycleGANVC2` with two-channel generators and FIF masking.

    Extra arguments: ``max_mask_frames`` (default 25, the paper's) or
    ``max_mask_fraction`` (of the crop length; give one, not both).
    ``mask_generator`` (an attribute, not saved) may be set to a
    :class:`torch.Generator` to make the training masks reproducible.
    """

    generator_in_channels = 2

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
        max_mask_frames: int | None = PAPER_MAX_MASK_FRAMES,
        max_mask_fraction: float | None = None,
        lookahead: int | None = None,
        generator_norm: str | None = None,
    ) -> None:
        if max_mask_fraction is not None:
            if max_mask_frames not in (None, PAPER_MAX_MASK_FRAMES):
                raise ConfigError("MaskCycleGANVC: give max_mask_frames or max_mask_fraction, not both")
            if not 0.0 <= max_mask_fraction <= 1.0:
                raise ConfigError(f"MaskCycleGANVC: max_mask_fraction must be in [0, 1], got {max_mask_fraction}")
            max_mask_frames = None
        elif max_mask_frames is None or max_mask_frames < 0:
            raise ConfigError(f"MaskCycleGANVC: max_mask_frames must be >= 0, got {max_mask_frames}")
        super().__init__(
            n_mels=n_mels, size=size, base_channels=base_channels,
            residual_channels=residual_channels, residual_hidden=residual_hidden,
            n_residual=n_residual, d_base_channels=d_base_channels, norm=norm, use_d2=use_d2,
            gan_mode=gan_mode, lambda_cycle=lambda_cycle, lambda_identity=lambda_identity,
            identity_steps=identity_steps, pool_size=pool_size, upsample_gate=upsample_gate,
            lookahead=lookahead, generator_norm=generator_norm,
        )
        self.max_mask_frames = max_mask_frames
        self.max_mask_fraction = max_mask_fraction
        self.mask_generator: torch.Generator | None = None
        self.save_hparams(**self.hparams, max_mask_frames=max_mask_frames,
                          max_mask_fraction=max_mask_fraction)

    def max_mask_len(self, frames: int) -> int:
        """Longest mask, in frames, for a crop of ``frames`` frames."""
        if self.max_mask_fraction is not None:
            return int(round(self.max_mask_fraction * frames))
        assert self.max_mask_frames is not None
        return min(int(self.max_mask_frames), frames)

    def translate(self, g: nn.Module, x: Tensor, kind: TranslateKind | str) -> Tensor:
        """``"forward"``: ``g(x, random FIF mask)``; ``"cycle"``/``"identity"``: all-ones mask."""
        if kind == "forward":
            b, n_mels, frames = x.shape[0], x.shape[-2], x.shape[-1]
            mask = make_temporal_mask(b, n_mels, frames, self.max_mask_len(frames),
                                      self.mask_generator, x.device, x.dtype)
            return g(x, mask.reshape(x.shape))
        if kind in ("cycle", "identity"):
            return g(x, torch.ones_like(x))
        raise ConfigError(f"unknown translate kind {kind!r}")

    def _convert(self, x: Tensor, direction: str) -> Tensor:
        if direction == "a2b":
            return self.g_ab(x, torch.ones_like(x))
        if direction == "b2a":
            return self.g_ba(x, torch.ones_like(x))
        raise ConfigError(f"direction must be 'a2b' or 'b2a', got {direction!r}")

    @torch.no_grad()
    def convert(self, x: Tensor, direction: str) -> Tensor:
        """Inference: translate ``x`` with an all-ones mask (nothing to fill in), no gradients."""
        return self._convert(x, direction)

    def forward(self, x: Tensor, direction: str = "a2b") -> Tensor:
        """Same as :meth:`convert` but keeps gradients."""
        return self._convert(x, direction)


__all__ = ["PAPER_CROP_FRAMES", "PAPER_MAX_MASK_FRAMES", "MaskCycleGANVC", "make_temporal_mask"]
