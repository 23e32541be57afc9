"""Autoregressive pixel models with a Bernoulli likelihood: a local one, the
"background" model of likelihood-ratio outlier scores (Ren et al. 2019; Schirrmeister
et al. 2020; Serra et al. 2020 use a generic compressor for the same purpose), and a
PixelCNN whose receptive field covers whole objects (the "foreground" of the same
ratio)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule


class MaskedConv2d(nn.Conv2d):
    """Convolution that sees only pixels before the centre in raster order. ``mask_type``
    "A" (PixelCNN's first layer) hides the centre pixel itself, all its channels; "B"
    (later layers, whose features at a pixel already depend only on earlier pixels) keeps
    it. ``dilation`` spaces the taps."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 mask_type: str = "A", dilation: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size,
                         padding=dilation * (kernel_size // 2), dilation=dilation)
        if mask_type not in ("A", "B"):
            raise ConfigError(f"MaskedConv2d: mask_type must be 'A' or 'B', got {mask_type!r}")
        mask = torch.zeros_like(self.weight)
        c = kernel_size // 2
        mask[:, :, :c, :] = 1
        mask[:, :, c, : c + (mask_type == "B")] = 1
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding, dilation=self.dilation)


class _BernoulliPixelModel(SavableModule):
    """Shared likelihood of the pixel models: ``forward`` gives per-pixel logits."""

    def nll(self, x: Tensor, logits: Tensor | None = None) -> Tensor:
        """Per-image negative log-likelihood in nats, ``(B,)`` (``x`` in [0, 1]; ``logits``
        from :meth:`forward` when already computed)."""
        logits = (self(x) if logits is None else logits).float()  # fp32 sum even under bf16 autocast
        return F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").flatten(1).sum(1)

    def loss(self, x: Tensor, out: Tensor | None = None) -> dict[str, Tensor]:
        """``{"loss", "recon"}``: mean NLL per image (the interface of the VAE loop)."""
        nll = self.nll(x, out).mean()
        return {"loss": nll, "recon": nll}


class LocalPixelCNN(_BernoulliPixelModel):
    """``p(x) = prod_ij p(x_ij | the pixels above and to the left within kernel_size // 2)``
    with a Bernoulli likelihood per channel (the VAEs' ``bernoulli`` likelihood, so
    negative log-likelihoods in nats are comparable).

    One masked convolution (type A) followed by 1x1 layers: its receptive field is a
    few pixels, so it learns edge and texture statistics but not whole objects, which
    is what a background model of a likelihood ratio should capture. Deviation from
    van den Oord et al.'s PixelCNN: no stack of type-B layers (that would grow the
    receptive field) and channels of a pixel are independent given its context.
    """

    def __init__(self, channels: int = 1, kernel_size: int = 5, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.save_hparams(channels=channels, kernel_size=kernel_size, hidden=hidden, layers=layers)
        if kernel_size < 3 or kernel_size % 2 == 0 or hidden < 1 or layers < 1:
            raise ConfigError("LocalPixelCNN: kernel_size must be odd and >= 3, hidden and layers >= 1")
        mods: list[nn.Module] = [MaskedConv2d(channels, hidden, kernel_size), nn.ReLU()]
        for _ in range(layers - 1):
            mods += [nn.Conv2d(hidden, hidden, 1), nn.ReLU()]
        mods.append(nn.Conv2d(hidden, channels, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, C, H, W)`` of every pixel given its causal neighbourhood."""
        return self.net(x)


class PixelCNN(_BernoulliPixelModel):
    """``p(x) = prod_ij p(x_ij | the pixels before it in raster order)`` over a receptive
    field that grows with depth (van den Oord et al. 2016), Bernoulli per channel.

    A type-A 7x7 masked convolution, then ``layers`` residual blocks ``h + convB(relu(h))``
    of 3x3 type-B masked convolutions, then two 1x1 layers. With ``dilated`` the blocks'
    dilations cycle 1, 2, 4 (six blocks see about 17 pixels up and to the left instead of
    9), so at 32x32 one pixel's context spans a whole shape. Used as the object-level
    model of the outlier experiment's likelihood ratio against :class:`LocalPixelCNN`
    (Schirrmeister et al. 2020's ratio of a specific to a general model).

    Deviations from van den Oord et al.: plain ReLU residual blocks, not the gated
    vertical/horizontal stacks of Gated PixelCNN, so the blind spot of stacked masked
    convolutions (part of the upper right is never seen) stays; dilations (not in the
    paper) to reach object size in few layers on a CPU; channels of a pixel independent
    given the context, as in :class:`LocalPixelCNN`.
    """

    def __init__(self, channels: int = 1, width: int = 32, layers: int = 6, dilated: bool = True) -> None:
        super().__init__()
        self.save_hparams(channels=channels, width=width, layers=layers, dilated=dilated)
        if width < 1 or layers < 0:
            raise ConfigError("PixelCNN: width must be >= 1 and layers >= 0")
        self.inp = MaskedConv2d(channels, width, 7)
        self.blocks = nn.ModuleList(MaskedConv2d(width, width, 3, "B", 2 ** (i % 3) if dilated else 1)
                                    for i in range(layers))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, C, H, W)`` of every pixel given the pixels before it."""
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.out(h)


class _GatedLayer(nn.Module):
    """One layer of the two stacks: ``tanh(a) * sigmoid(b)`` gates on both, the vertical
    features fed into the horizontal ones, a residual 1x1 on the horizontal stack."""

    def __init__(self, width: int, kernel: int, first: bool, in_channels: int) -> None:
        super().__init__()
        r = kernel // 2
        cin = in_channels if first else width
        self.first, self.r = first, r
        # vertical: rows i-r..i (first layer: i-r-1..i-1, by shifting the input down one row)
        self.v = nn.Conv2d(cin, 2 * width, (r + 1, kernel))
        # horizontal: row i, columns j-r..j (first layer: j-r-1..j-1, shifted right one column)
        self.h = nn.Conv2d(cin, 2 * width, (1, r + 1))
        self.v_to_h = nn.Conv2d(2 * width, 2 * width, 1)
        self.h_out = nn.Conv2d(width, width, 1)
        scale = torch.ones(1, 2 * width, 1, 1)
        scale[:, :width] = 2.0
        self.register_buffer("gate_scale", scale, persistent=False)

    def _gate(self, x: Tensor) -> Tensor:
        """``tanh(a) * sigmoid(b)`` for ``x = [a, b]``, computed as ``(2 sigmoid(2a) - 1) *
        sigmoid(b)`` (the same function): one sigmoid over the whole contiguous tensor is
        faster on a CPU than two activations over channel halves (strided under
        channels-last)."""
        a, b = torch.sigmoid(x * self.gate_scale.to(x.dtype)).chunk(2, dim=1)
        return (2.0 * a - 1.0) * b

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        r = self.r
        if self.first:  # strictly causal: the pixel itself is never seen
            v = F.pad(v, (0, 0, 1, 0))[:, :, :-1]
            h = F.pad(h, (1, 0))[:, :, :, :-1]
        v_pre = self.v(F.pad(v, (r, r, r, 0)))
        h_pre = self.h(F.pad(h, (r, 0))) + self.v_to_h(v_pre)
        h_new = self.h_out(self._gate(h_pre))
        return self._gate(v_pre), h_new if self.first else h + h_new


class GatedPixelCNN(_BernoulliPixelModel):
    """Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with
    PixelCNN Decoders"): a vertical stack that sees every row above and a horizontal stack
    that sees the row to the left, so the blind spot of stacked masked convolutions
    (:class:`PixelCNN`) is gone; ``tanh * sigmoid`` gates. ``layers`` layers of
    ``kernel`` reach ``layers * (kernel // 2) + 1`` rows up (the first layer's shift adds
    one) and ``layers * (kernel // 2)`` columns either side.
    Deviations: no conditioning vector; the first layer's receptive field is the same
    ``kernel`` as the rest (the paper's first layer is 7x7); channels of a pixel
    independent given the context, as in :class:`LocalPixelCNN`.
    """

    def __init__(self, channels: int = 1, width: int = 32, layers: int = 6, kernel: int = 5) -> None:
        super().__init__()
        self.save_hparams(channels=channels, width=width, layers=layers, kernel=kernel)
        if width < 1 or layers < 1 or kernel < 3 or kernel % 2 == 0:
            raise ConfigError("GatedPixelCNN: width and layers must be >= 1, kernel odd and >= 3")
        self.layers = nn.ModuleList(_GatedLayer(width, kernel, i == 0, channels) for i in range(layers))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, C, H, W)`` of every pixel given the pixels before it."""
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.out(h)


__all__ = ["GatedPixelCNN", "LocalPixelCNN", "MaskedConv2d", "PixelCNN"]
