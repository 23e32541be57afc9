"""Progressive growing of GANs (Karras et al. 2018, "PGGAN").

Generator and discriminator hold blocks for every resolution from 4x4 up to
``max_resolution`` from the start; a *stage* ``(resolution, alpha)`` selects which
are used. Growing to a new resolution fades its block in: the generator outputs
``lerp(upsample(to_rgb_prev(h)), to_rgb_new(block_new(h)), alpha)`` and the
discriminator mirrors it with ``lerp(from_rgb_prev(avgpool(x)), block_new(from_rgb_new(x)),
alpha)``; real images are blended the same way (:meth:`ProgressiveGAN.prepare_real`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.losses import GANLoss, gradient_penalty

_SQRT2 = math.sqrt(2.0)


class EqualizedConv2d(nn.Module):
    """Conv2d with the equalised learning rate of PGGAN: weights drawn from N(0, 1) and
    scaled at run time by ``gain / sqrt(fan_in)`` (He's constant), so that Adam's
    per-parameter step size is the same for every layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 gain: float = _SQRT2) -> None:
        super().__init__()
        self.weight = Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Linear layer with the equalised learning rate (see :class:`EqualizedConv2d`)."""

    def __init__(self, in_features: int, out_features: int, gain: float = _SQRT2) -> None:
        super().__init__()
        self.weight = Parameter(torch.randn(out_features, in_features))
        self.bias = Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit mean square: ``x / sqrt(mean_c(x^2) + eps)``."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Append one feature map holding the mean (over features and pixels) of the standard
    deviation across each group of ``group_size`` examples (PGGAN section 3).

    The group is the largest divisor of the batch size that is at most ``group_size``.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, b) + 1) if b % d == 0)
        y = x.reshape(g, b // g, c, h, w)
        y = (y.var(dim=0, unbiased=False) + self.eps).sqrt()  # (b/g, c, h, w)
        y = y.mean(dim=(1, 2, 3))  # (b/g,)
        y = y.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, y], dim=1)


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)


def _resolutions(max_resolution: int) -> list[int]:
    k = int(math.log2(max_resolution)) if max_resolution > 0 else 0
    if max_resolution < 4 or 2**k != max_resolution:
        raise ConfigError(f"max_resolution must be a power of two >= 4, got {max_resolution}")
    return [2**i for i in range(2, k + 1)]


class _GBlock(nn.Module):
    """Upsample x2 (nearest) -> conv3-LReLU-PN -> conv3-LReLU-PN."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(cin, cout, 3, 1)
        self.conv2 = EqualizedConv2d(cout, cout, 3, 1)
        self.norm = PixelNorm()

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(_lrelu(self.conv1(x)))
        return self.norm(_lrelu(self.conv2(x)))


class ProgressiveGenerator(nn.Module):
    """PGGAN generator: ``z`` (pixel-normalised) -> 4x4 by a dense layer (the paper's 4x4
    transposed conv) and a 3x3 conv, then one :class:`_GBlock` per doubling; a 1x1
    ``to_rgb`` (linear) per resolution."""

    def __init__(self, latent_dim: int, channels: int, resolutions: list[int], ch: dict[int, int]) -> None:
        super().__init__()
        self.norm = PixelNorm()
        c4 = ch[4]
        self.dense = EqualizedLinear(latent_dim, c4 * 16, gain=_SQRT2 / 4)
        self.conv4 = EqualizedConv2d(c4, c4, 3, 1)
        self.blocks = nn.ModuleDict({str(r): _GBlock(ch[r // 2], ch[r]) for r in resolutions[1:]})
        self.to_rgb = nn.ModuleDict({str(r): EqualizedConv2d(ch[r], channels, 1, gain=1.0)
                                     for r in resolutions})
        self.c4 = c4

    def forward(self, z: Tensor, resolution: int, alpha: float) -> Tensor:
        h = self.norm(z.flatten(1))
        h = self.norm(_lrelu(self.dense(h).reshape(-1, self.c4, 4, 4)))
        h = self.norm(_lrelu(self.conv4(h)))
        if resolution == 4:
            return self.to_rgb["4"](h)
        r = 8
        while r < resolution:
            h = self.blocks[str(r)](h)
            r *= 2
        if alpha <= 0.0:
            return F.interpolate(self.to_rgb[str(resolution // 2)](h), scale_factor=2, mode="nearest")
        new = self.to_rgb[str(resolution)](self.blocks[str(resolution)](h))
        if alpha >= 1.0:
            return new
        old = F.interpolate(self.to_rgb[str(resolution // 2)](h), scale_factor=2, mode="nearest")
        return torch.lerp(old, new, alpha)


class _DBlock(nn.Module):
    """conv3-LReLU (ch(r)) -> conv3-LReLU (ch(r/2)) -> 2x2 average pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(cin, cin, 3, 1)
        self.conv2 = EqualizedConv2d(cin, cout, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(_lrelu(self.conv2(_lrelu(self.conv1(x)))), 2)


class ProgressiveDiscriminator(nn.Module):
    """PGGAN discriminator: 1x1 ``from_rgb`` per resolution, one :class:`_DBlock` per halving,
    and at 4x4 minibatch-stddev -> conv3 -> conv4 (valid) -> dense to one logit ``(B,)``."""

    def __init__(self, channels: int, resolutions: list[int], ch: dict[int, int], mbstd_group: int) -> None:
        super().__init__()
        self.from_rgb = nn.ModuleDict({str(r): EqualizedConv2d(channels, ch[r], 1) for r in resolutions})
        self.blocks = nn.ModuleDict({str(r): _DBlock(ch[r], ch[r // 2]) for r in resolutions[1:]})
        c4 = ch[4]
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv4 = EqualizedConv2d(c4 + 1, c4, 3, 1)
        self.conv_valid = EqualizedConv2d(c4, c4, 4, 0)
        self.out = EqualizedLinear(c4, 1, gain=1.0)

    def forward(self, x: Tensor, resolution: int, alpha: float) -> Tensor:
        if x.shape[-1] != resolution or x.shape[-2] != resolution:
            raise ValueError(f"discriminator at stage {resolution}px got images {tuple(x.shape[-2:])}")
        h = _lrelu(self.from_rgb[str(resolution)](x))
        if resolution > 4:
            h = self.blocks[str(resolution)](h)
            if alpha < 1.0:
                old = _lrelu(self.from_rgb[str(resolution // 2)](F.avg_pool2d(x, 2)))
                h = torch.lerp(old, h, alpha)
            r = resolution // 2
            while r > 4:
                h = self.blocks[str(r)](h)
                r //= 2
        h = _lrelu(self.conv4(self.mbstd(h)))
        h = _lrelu(self.conv_valid(h))
        return self.out(h.flatten(1)).flatten()


class ProgressiveGAN(SavableModule):
    """Progressive GAN (Karras et al. 2018) for square images up to ``max_resolution``.

    Faithful parts: growth 4 -> 8 -> ... with linear fade-in of each new block in G and D
    (and of the real images), nearest upsampling / average pooling, pixel-wise feature
    normalisation in G, minibatch standard deviation (group 4) before D's last block,
    equalised learning rate in every layer (N(0, 1) weights scaled by He's constant at
    run time), ``channels(res) = min(max_channels, channel_base // res)`` (512 up to
    32x32 with the defaults), and the WGAN-GP loss with the paper's ``lambda = 10`` and
    drift term ``0.001 * E[D(x)^2]``.

    Simplifications: the schedule (images per phase, learning rates, G's weight EMA) is
    left to the training loop; ``loss="nonsaturating"`` offers the plain logistic loss
    as an alternative without gradient penalty.

    The stage lives in two buffers, so a checkpoint reloads at the stage it was saved.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        channels: int = 3,
        max_resolution: int = 32,
        max_channels: int = 512,
        channel_base: int = 16384,
        loss: str = "wgan-gp",
        gp_lambda: float = 10.0,
        drift: float = 0.001,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        self.save_hparams(latent_dim=latent_dim, channels=channels, max_resolution=max_resolution,
                          max_channels=max_channels, channel_base=channel_base, loss=loss,
                          gp_lambda=gp_lambda, drift=drift, mbstd_group=mbstd_group)
        if loss not in ("wgan-gp", "nonsaturating"):
            raise ConfigError(f"ProgressiveGAN loss must be 'wgan-gp' or 'nonsaturating', got {loss!r}")
        self.resolutions = _resolutions(max_resolution)
        ch = {r: max(1, min(max_channels, channel_base // r)) for r in self.resolutions}
        self.generator = ProgressiveGenerator(latent_dim, channels, self.resolutions, ch)
        self.discriminator = ProgressiveDiscriminator(channels, self.resolutions, ch, mbstd_group)
        self.latent_dim = latent_dim
        self.max_resolution = max_resolution
        self.loss_kind = loss
        self.gp_lambda = gp_lambda
        self.drift = drift
        self._ns = GANLoss("nonsaturating")
        self.register_buffer("stage_resolution", torch.tensor(4, dtype=torch.long))
        self.register_buffer("stage_alpha", torch.tensor(1.0))

    # ---------------------------------------------------------------- stage
    @property
    def resolution(self) -> int:
        """Current output resolution in pixels."""
        return int(self.stage_resolution.item())

    @property
    def alpha(self) -> float:
        """Fade-in weight of the newest block (1 = fully in)."""
        return float(self.stage_alpha.item())

    def set_stage(self, resolution: int, alpha: float = 1.0) -> None:
        """Select the stage: output ``resolution`` and fade-in ``alpha`` in [0, 1] (ignored at 4)."""
        if resolution not in self.resolutions:
            raise ConfigError(f"resolution must be one of {self.resolutions}, got {resolution}")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
        self.stage_resolution.fill_(resolution)
        self.stage_alpha.fill_(1.0 if resolution == 4 else alpha)

    def set_alpha(self, alpha: float) -> None:
        """Change only the fade-in weight."""
        self.set_stage(self.resolution, alpha)

    def grow(self) -> int:
        """Move to twice the resolution with ``alpha = 0``; returns the new resolution."""
        if self.resolution >= self.max_resolution:
            raise ConfigError(f"already at max_resolution {self.max_resolution}")
        self.set_stage(self.resolution * 2, 0.0)
        return self.resolution

    # ------------------------------------------------------------ generation
    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z, self.resolution, self.alpha)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images at the current stage, without gradients."""
        z = torch.randn(n, self.latent_dim, device=self.stage_alpha.device, generator=generator)
        return self(z)

    def discriminate(self, images: Tensor) -> Tensor:
        """Discriminator logits ``(B,)`` for images at the current resolution."""
        return self.discriminator(images, self.resolution, self.alpha)

    def prepare_real(self, images: Tensor) -> Tensor:
        """Bring real images (square, at any power-of-two size >= the current one) to the
        current stage: average-pool down, and during a fade-in blend with their
        half-resolution version upsampled (nearest), as the paper does."""
        res, size = self.resolution, images.shape[-1]
        if images.shape[-2] != size or size < res or size % res:
            raise ValueError(f"real images {tuple(images.shape[-2:])} cannot be pooled to {res}px")
        x = F.avg_pool2d(images, size // res) if size != res else images
        if res > 4 and self.alpha < 1.0:
            low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
            x = torch.lerp(low, x, self.alpha)
        return x

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Tensor) -> Tensor:
        """``-E[D(G(z))]`` (WGAN-GP) or the non-saturating loss, on ``len(batch)`` samples."""
        z = torch.randn(batch.shape[0], self.latent_dim, device=batch.device)
        fake_logits = self.discriminate(self(z))
        if self.loss_kind == "wgan-gp":
            return -fake_logits.mean()
        return self._ns.generator_loss(fake_logits)

    def discriminator_loss(self, real: Tensor, fake: Tensor | None = None) -> Tensor:
        """Critic loss on real images (prepared by :meth:`prepare_real`) vs ``fake``
        (default: fresh detached samples). WGAN-GP: ``E[D(fake)] - E[D(real)] +
        gp_lambda * GP + drift * E[D(real)^2]``."""
        real = self.prepare_real(real)
        if fake is None:
            with torch.no_grad():
                fake = self(torch.randn(real.shape[0], self.latent_dim, device=real.device))
        fake = fake.detach().to(real.dtype)  # bf16 when drawn under autocast
        real_logits, fake_logits = self.discriminate(real), self.discriminate(fake)
        if self.loss_kind == "nonsaturating":
            return self._ns.discriminator_loss(real_logits, fake_logits)
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = torch.lerp(fake, real, eps).requires_grad_(True)
        gp = gradient_penalty(self.discriminate(mixed), mixed)
        return (fake_logits.mean() - real_logits.mean() + self.gp_lambda * gp
                + self.drift * real_logits.pow(2).mean())

    def generator_parameters(self) -> Iterator[Parameter]:
        """Parameters of the generator (all resolutions)."""
        return self.generator.parameters()

    def discriminator_parameters(self) -> Iterator[Parameter]:
        """Parameters of the discriminator (all resolutions)."""
        return self.discriminator.parameters()


__all__ = [
    "EqualizedConv2d",
    "EqualizedLinear",
    "MinibatchStdDev",
    "PixelNorm",
    "ProgressiveDiscriminator",
    "ProgressiveGAN",
    "ProgressiveGenerator",
]
