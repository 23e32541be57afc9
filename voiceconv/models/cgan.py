"""Class-conditional GAN: a generator with class-conditional batch norm and a
projection discriminator."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.blocks import maybe_spectral_norm
from voiceconv.models.gan import DCGANDiscriminator, DCGANGenerator, _n_ups
from voiceconv.models.init import init_weights
from voiceconv.models.losses import GANLoss

G_NORMS = ("conditional_batch", "batch")
G_ARCHS = ("dcgan", "placed")


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017;
    Miyato & Koyama 2018): ``gamma[y] * BN(x) + beta[y]``, gamma starting at 1, beta at 0."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return self.gamma(labels)[:, :, None, None] * self.bn(x) + self.beta(labels)[:, :, None, None]


def _cbn_up_stack(latent_dim: int, widths: list[int], num_classes: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The generators' upsampling stack: a 4x4 transposed convolution from ``z`` to
    ``widths[0]`` channels, then one 2x transposed convolution per further width, each
    followed by class-conditional batch norm (see :func:`_run_cbn_stack`)."""
    convs = nn.ModuleList([nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False)])
    norms = nn.ModuleList([ConditionalBatchNorm2d(widths[0], num_classes)])
    for c_in, c_out in zip(widths, widths[1:], strict=False):
        convs.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False))
        norms.append(ConditionalBatchNorm2d(c_out, num_classes))
    return convs, norms


def _run_cbn_stack(h: Tensor, convs: nn.ModuleList, norms: nn.ModuleList, labels: Tensor) -> Tensor:
    """``relu(CBN(conv(h), labels))`` through every stage of :func:`_cbn_up_stack`."""
    for conv, norm in zip(convs, norms, strict=True):
        h = torch.relu(norm(conv(h), labels))
    return h


class ConditionalDCGANGenerator(nn.Module):
    """The DCGAN generator (same layers and widths as
    :class:`~voiceconv.models.gan.DCGANGenerator`) with every batch norm made
    class-conditional, so the label acts at every resolution, not only at the input.

    ``out_conv=True`` (not in DCGAN) makes the last 2x stage a feature stage (transposed
    conv to ``base_channels`` channels, conditional batch norm, ReLU) followed by a 3x3
    convolution to the image at full resolution, instead of the transposed conv drawing
    the image directly from the half-resolution features."""

    def __init__(self, latent_dim: int, num_classes: int, out_channels: int, image_size: int,
                 base_channels: int, out_conv: bool = False) -> None:
        super().__init__()
        n = _n_ups(image_size)
        widths = [base_channels * 2 ** (n - 1 - i) for i in range(n)] + ([base_channels] if out_conv else [])
        self.convs, self.norms = _cbn_up_stack(latent_dim, widths, num_classes)
        if out_conv:
            self.out: nn.Module = nn.Conv2d(base_channels, out_channels, 3, 1, 1, bias=False)
        else:
            self.out = nn.ConvTranspose2d(base_channels, out_channels, 4, 2, 1, bias=False)
        for m in (*self.convs, self.out):
            init_weights(m)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        h = z[:, :, None, None] if z.dim() == 2 else z
        return torch.tanh(self.out(_run_cbn_stack(h, self.convs, self.norms, labels)))


class PlacedObjectGenerator(nn.Module):
    """A class-conditional generator that draws the object in a canonical frame and then
    places it: the layered, transformed foreground of LR-GAN (Yang et al. 2017) through a
    spatial transformer's differentiable sampler (Jaderberg et al. 2015).

    The canonical drawing is a DCGAN stack with class-conditional batch norm (4x4 to the
    canvas size, the width halving at each 2x stage down to ``base_channels``: ``8, 4, 2,
    1 x base_channels`` for a 32x32 canvas; then a 3x3 convolution to logits), so
    the object can fill the canvas and its outline gets the canvas's resolution
    (``canvas_size``, by default the image size; the object is shown at ``1 / zoom`` of
    the image, so a canvas of half the image size still has more than one canvas pixel
    per image pixel, at a third of the cost). A
    similarity transform (zoom, rotation, shift) predicted from ``z`` maps it into the
    image: four entries of ``z`` drive the pose directly (so poses vary from the first
    step) and a small MLP learns corrections. The warp acts on the logits and ``tanh``
    comes after it, so edges stay sharp. Zoom is ``zoom * exp(+-0.35)`` (the canvas shown
    at 1/zoom of its size), rotation any angle, shift up to ``max_shift`` of the half-width.
    Deviation from LR-GAN: one layer, no background generator or mask (the background is
    the canonical frame's own, extended at the border), no recurrence."""

    def __init__(self, latent_dim: int, num_classes: int, out_channels: int, image_size: int,
                 base_channels: int, zoom: float = 2.5, max_shift: float = 0.75,
                 canvas_size: int | None = None) -> None:
        super().__init__()
        if latent_dim < 4 or zoom <= 0 or not 0 <= max_shift <= 1:
            raise ConfigError("PlacedObjectGenerator: latent_dim >= 4, zoom > 0 and max_shift in [0, 1]")
        n = _n_ups(canvas_size or image_size)
        self.convs, self.norms = _cbn_up_stack(latent_dim, [base_channels * 2 ** (n - i) for i in range(n + 1)],
                                               num_classes)
        self.out = nn.Conv2d(base_channels, out_channels, 3, 1, 1)
        for m in (*self.convs, self.out):
            init_weights(m)
        self.pose = nn.Sequential(nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, 4))
        nn.init.zeros_(self.pose[2].weight)
        nn.init.zeros_(self.pose[2].bias)
        self.image_size, self.zoom, self.max_shift = image_size, float(zoom), float(max_shift)

    def canonical(self, z: Tensor, labels: Tensor) -> Tensor:
        """The object's logits in its canonical frame, ``(B, C, H, W)``."""
        return self.out(_run_cbn_stack(z[:, :, None, None], self.convs, self.norms, labels)) * 4.0 - 2.0  # starts dark (tanh(-2) = -0.96) with visible structure

    def placement(self, z: Tensor) -> Tensor:
        """``(B, 2, 3)`` affine matrices (output -> canonical coordinates, ``affine_grid``'s
        convention) of zoom, rotation and shift."""
        p = self.pose(z) + z[:, :4] * torch.tensor([1.0, 1.0, 0.6, 0.6], device=z.device, dtype=z.dtype)
        s = self.zoom * torch.exp(0.35 * torch.tanh(p[:, 0]))
        th = math.pi * torch.tanh(p[:, 1])
        tx, ty = self.max_shift * torch.tanh(p[:, 2]), self.max_shift * torch.tanh(p[:, 3])
        cos, sin = s * torch.cos(th), s * torch.sin(th)
        return torch.stack([torch.stack([cos, -sin, -tx * s], 1), torch.stack([sin, cos, -ty * s], 1)], 1)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        logits = self.canonical(z, labels)
        b, c = logits.shape[:2]
        grid = F.affine_grid(self.placement(z), [b, c, self.image_size, self.image_size], align_corners=False)
        return torch.tanh(F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False))


class ConditionalGAN(SavableModule):
    """Class-conditional GAN over images (Mirza & Osindero 2014; Miyato & Koyama 2018).

    Generator: with ``g_norm="conditional_batch"`` (default) the DCGAN generator takes
    ``z`` alone and every batch norm a per-class scale and shift (conditional batch
    norm, as in Miyato & Koyama's generator). ``g_norm="batch"`` is the plain
    :class:`~voiceconv.models.gan.DCGANGenerator` fed ``z`` concatenated with a learned
    label embedding (``embed_dim``), the label entering only at the input: the pre-2026-12
    model, which collapsed (in a batch of mixed classes the embedding dominates the
    first batch norm's statistics, and ``z`` is all but normalised away).

    ``g_arch="placed"`` swaps the generator for :class:`PlacedObjectGenerator`: the same
    conditional-batch-norm stack draws the object in a canonical frame, and a zoom,
    rotation and shift predicted from ``z`` place it (LR-GAN's transformed foreground;
    ``placement_zoom`` is the canvas-to-object size ratio, 2.5 for the shapes, whose
    objects span 0.2-0.45 of the image; ``placement_canvas`` the canonical frame's size,
    by default the image's). Deviation, and why: the DCGAN generator drew
    blobs of about the right size that a classifier could not place (class accuracy
    0.60-0.65 at ``size=small``), since it had to learn every outline at every pose and
    position; drawn once in a canonical frame at the canvas's resolution and then
    placed, the outlines come out right (recipe README, eighth pass).

    Discriminator: the *projection* discriminator of Miyato & Koyama, not label maps
    concatenated as input channels: with ``phi(x)`` the DCGAN trunk features after
    LeakyReLU, summed over space (``h``, shape ``(B, C)``),
    ``D(x, y) = psi(h) + <V[y], h>`` where ``psi`` is linear and ``V`` a class embedding.
    ``d_norm`` is the trunk's normalisation (default ``"batch"``, DCGAN's);
    ``spectral_norm`` wraps every D weight (default off). Deviation: Miyato & Koyama use
    spectral norm without batch norm in D and ResNet nets; at the small widths of CPU
    runs that D let the generator collapse within each class, while DCGAN's batch-norm
    D did not (``recipes/images/README.md``). The default loss is hinge.

    ``mismatch_weight`` (default 1, not in Miyato & Koyama): the discriminator also learns
    to reject real images paired with a wrong label (Reed et al. 2016's matching-aware
    discriminator). Without it the discriminator told real from fake without using the
    label at all (its label term stayed near zero) and the generator never learned the
    class. ``init_projection`` draws ``V`` from N(0, 0.02) instead of PyTorch's N(0, 1).

    ``aux_weight`` (default 0: off) adds an auxiliary classifier to D (AC-GAN, Odena et
    al. 2017), a linear layer on the same pooled features ``h`` giving class logits
    (:meth:`classify`), next to the projection term (as in later projection + classifier
    hybrids). D adds ``aux_weight * CE(classify(real), y)``; G adds ``g_aux_weight *
    CE(classify(G(z, y)), y)`` (default ``g_aux_weight = aux_weight``). Deviation from
    Odena et al.: by default D's classifier learns on *real* images only
    (``aux_fake=False``); trained on fakes too (the paper's loss) D's classifier learned
    the generator's own cues (0.98 accuracy on fakes, 0.47 on real images, at
    ``size=small``) and G learned to satisfy it without drawing the class. Note: D's batch
    norm keeps running statistics of real and fake batches mixed, so :meth:`classify` is
    only meaningful in train mode (batch statistics).
    """

    def __init__(
        self,
        num_classes: int,
        latent_dim: int = 64,
        channels: int = 1,
        image_size: int = 32,
        base_channels: int = 64,
        embed_dim: int = 32,
        gan_mode: str = "hinge",
        spectral_norm: bool = False,
        g_norm: str = "conditional_batch",
        d_norm: str = "batch",
        d_base_channels: int | None = None,
        init_projection: bool = True,
        mismatch_weight: float = 1.0,
        aux_weight: float = 0.0,
        g_aux_weight: float | None = None,
        aux_fake: bool = False,
        g_out_conv: bool = False,
        g_arch: str = "dcgan",
        placement_zoom: float = 2.5,
        placement_canvas: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hparams(num_classes=num_classes, latent_dim=latent_dim, channels=channels,
                          image_size=image_size, base_channels=base_channels, embed_dim=embed_dim,
                          gan_mode=gan_mode, spectral_norm=spectral_norm, g_norm=g_norm,
                          d_norm=d_norm, d_base_channels=d_base_channels, init_projection=init_projection,
                          mismatch_weight=mismatch_weight, aux_weight=aux_weight,
                          g_aux_weight=g_aux_weight, aux_fake=aux_fake, g_out_conv=g_out_conv,
                          g_arch=g_arch, placement_zoom=placement_zoom, placement_canvas=placement_canvas)
        if num_classes < 1:
            raise ConfigError(f"ConditionalGAN needs num_classes >= 1, got {num_classes}")
        if g_norm not in G_NORMS:
            raise ConfigError(f"ConditionalGAN: g_norm must be one of {G_NORMS}, got {g_norm!r}")
        if g_arch not in G_ARCHS or (g_arch == "placed" and g_norm != "conditional_batch"):
            raise ConfigError(f"ConditionalGAN: g_arch must be one of {G_ARCHS} ('placed' with "
                              f"conditional_batch norm), got {g_arch!r} with {g_norm!r}")
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.mismatch_weight = float(mismatch_weight)
        self.aux_weight = float(aux_weight)
        self.g_aux_weight = self.aux_weight if g_aux_weight is None else float(g_aux_weight)
        self.aux_fake = bool(aux_fake)
        self.generator: nn.Module
        self.conditional_norm = g_norm == "conditional_batch"
        self.label_embedding = None if self.conditional_norm else nn.Embedding(num_classes, embed_dim)
        if g_arch == "placed":
            self.generator = PlacedObjectGenerator(latent_dim, num_classes, channels, image_size,
                                                   base_channels, zoom=placement_zoom,
                                                   canvas_size=placement_canvas)
        elif self.conditional_norm:
            self.generator = ConditionalDCGANGenerator(latent_dim, num_classes, channels, image_size,
                                                       base_channels, out_conv=g_out_conv)
        else:
            self.generator = DCGANGenerator(latent_dim + embed_dim, channels, image_size, base_channels)
        self.d_net = DCGANDiscriminator(channels, image_size, d_base_channels or base_channels, d_norm,
                                        spectral_norm, head=False)
        feat = self.d_net.feature_channels
        self.d_act = nn.LeakyReLU(0.2)
        projection = nn.Embedding(num_classes, feat)
        if init_projection:  # N(0, 0.02) like every other D weight; PyTorch's N(0, 1) gave
            nn.init.normal_(projection.weight, 0.0, 0.02)  # logits of +-60 at the start
        self.d_linear = init_weights(maybe_spectral_norm(nn.Linear(feat, 1), spectral_norm))
        self.d_projection = maybe_spectral_norm(projection, spectral_norm)
        # auxiliary classifier (AC-GAN): class logits from the same pooled trunk features
        self.d_aux = (init_weights(maybe_spectral_norm(nn.Linear(feat, num_classes), spectral_norm))
                      if self.aux_weight > 0 else None)
        self.gan_loss = GANLoss(gan_mode)

    @classmethod
    def upgrade_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Models saved before ``g_norm``/``d_norm`` existed: plain-BN generator, no D norm,
        spectral norm on (the then defaults)."""
        if "g_norm" not in hparams:
            hparams = {"spectral_norm": True, **hparams, "g_norm": "batch", "d_norm": "none",
                       "init_projection": False, "mismatch_weight": 0.0}
        return {"aux_weight": 0.0, **hparams}

    def _check_labels(self, labels: Tensor) -> Tensor:
        labels = labels.long()
        if labels.dim() != 1:
            raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        return labels

    def generate(self, z: Tensor, labels: Tensor) -> Tensor:
        """``G(z, y)`` with gradients: ``z`` is ``(B, latent_dim)``, ``labels`` ``(B,)``."""
        labels = self._check_labels(labels)
        if self.label_embedding is None:
            return self.generator(z, labels)
        return self.generator(torch.cat([z, self.label_embedding(labels)], dim=1))

    def _pooled(self, x: Tensor) -> Tensor:
        return self.d_act(self.d_net.features(x)).sum(dim=(2, 3))

    def _logit(self, h: Tensor, labels: Tensor) -> Tensor:
        return self.d_linear(h).squeeze(1) + (self.d_projection(labels) * h).sum(dim=1)

    def discriminate(self, x: Tensor, labels: Tensor) -> Tensor:
        """Projection-discriminator logits ``(B,)`` for images ``x`` with ``labels``."""
        return self._logit(self._pooled(x), self._check_labels(labels))

    def classify(self, x: Tensor) -> Tensor:
        """The auxiliary classifier's class logits ``(B, num_classes)`` (needs ``aux_weight > 0``)."""
        if self.d_aux is None:
            raise ConfigError("ConditionalGAN.classify needs aux_weight > 0 (no auxiliary classifier)")
        return self.d_aux(self._pooled(x))

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.generate(z, labels)

    @torch.no_grad()
    def sample(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per label, ``z ~ N(0, I)``, without gradients (call ``eval()`` first)."""
        device = next(self.parameters()).device
        z = torch.randn(labels.shape[0], self.latent_dim, device=device, generator=generator)
        return self.generate(z, labels.to(device))

    def generator_loss(self, labels: Tensor) -> Tensor:
        """Generator loss on fresh samples of the given ``labels``."""
        labels = self._check_labels(labels)
        z = torch.randn(labels.shape[0], self.latent_dim, device=labels.device)
        h = self._pooled(self.generate(z, labels))
        loss = self.gan_loss.generator_loss(self._logit(h, labels))
        if self.d_aux is not None:
            loss = loss + self.g_aux_weight * F.cross_entropy(self.d_aux(h), labels)
        return loss

    def discriminator_loss(self, real: Tensor, labels: Tensor, fake: Tensor | None = None) -> Tensor:
        """Loss on ``(real, labels)`` vs ``(fake, labels)``; ``fake`` defaults to fresh detached
        samples of the same labels."""
        if fake is None:
            with torch.no_grad():
                z = torch.randn(labels.shape[0], self.latent_dim, device=labels.device)
                fake = self.generate(z, labels)
        labels = self._check_labels(labels)
        h_real, h_fake = self._pooled(real), self._pooled(fake.detach())
        loss = self.gan_loss.discriminator_loss(self._logit(h_real, labels), self._logit(h_fake, labels))
        if self.d_aux is not None:  # Odena et al.: D's classifier learns the class of real and fake
            ce = F.cross_entropy(self.d_aux(h_real), labels)
            if self.aux_fake:
                ce = ce + F.cross_entropy(self.d_aux(h_fake), labels)
            loss = loss + self.aux_weight * ce
        if self.mismatch_weight > 0 and self.num_classes > 1:
            wrong = (labels + torch.randint_like(labels, 1, self.num_classes)) % self.num_classes
            # the same real features under wrong labels (one trunk pass serves both terms)
            loss = loss + self.mismatch_weight * self.gan_loss.loss(self._logit(h_real, wrong), False)
        return loss

    def generator_parameters(self) -> Iterator[Parameter]:
        """Generator (and its label embedding, without conditional batch norm)."""
        if self.label_embedding is not None:
            yield from self.label_embedding.parameters()
        yield from self.generator.parameters()

    def discriminator_parameters(self) -> Iterator[Parameter]:
        """Trunk, ``psi`` and projection embedding."""
        for m in (self.d_net, self.d_linear, self.d_projection, self.d_aux):
            if m is not None:
                yield from m.parameters()


__all__ = ["ConditionalBatchNorm2d", "ConditionalDCGANGenerator", "ConditionalGAN", "PlacedObjectGenerator"]
