"""Denoising diffusion (Ho et al. 2020): a small U-Net that predicts the added noise,
linear and cosine schedules, ancestral and DDIM sampling, optional class conditioning
with classifier-free guidance (Ho & Salimans 2021).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ancestral", "ddim")
PREDICTIONS = ("eps", "v")


def beta_schedule(kind: str, timesteps: int) -> Tensor:
    """``betas`` (float64, ``(timesteps,)``) of a noise schedule.

    ``linear``: Ho et al.'s 1e-4 ... 0.02 over 1000 steps, both ends scaled by
    ``1000 / timesteps`` for other lengths (Nichol & Dhariwal 2021).
    ``cosine``: Nichol & Dhariwal's ``alpha_bar(t) = f(t) / f(0)``,
    ``f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)``, ``s = 0.008``, betas clipped at 0.999.
    """
    if timesteps < 1:
        raise ConfigError(f"timesteps must be >= 1, got {timesteps}")
    if kind == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), timesteps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ConfigError(f"unknown schedule {kind!r} (expected one of {SCHEDULES})")


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer sinusoidal embedding of integer timesteps ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the (time [+ class]) embedding, twice; skip conv."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(SavableModule):
    """Small DDPM U-Net: ``width * channel_mults`` channels per level, ``num_res_blocks``
    residual blocks per level on the way down (one more on the way up, fed the skip),
    stride-2 convs down, nearest-neighbour + conv up, a middle of two blocks.

    Deviation from Ho et al.: no self-attention layers (the 16x16 attention is the
    dearest part on a CPU and the recipe's images are 32x32 shapes). ``num_classes > 0``
    adds a class embedding (index ``num_classes`` is the "no class" token used for
    classifier-free guidance) to the time embedding.
    """

    def __init__(self, channels: int = 1, width: int = 32, channel_mults: tuple[int, ...] | list[int] = (1, 2, 2),
                 num_res_blocks: int = 1, num_classes: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.save_hparams(channels=channels, width=width, channel_mults=list(channel_mults),
                          num_res_blocks=num_res_blocks, num_classes=num_classes, dropout=dropout)
        if width < 1 or not channel_mults or num_res_blocks < 1 or num_classes < 0:
            raise ConfigError("UNet: width, channel_mults and num_res_blocks must be positive")
        emb_dim = 4 * width
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [width]
        ch = width
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, width * mult, emb_dim, dropout))
                ch = width * mult
                skips.append(ch)
            if level < len(channel_mults) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), width * mult, emb_dim, dropout))
                ch = width * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predicted noise for ``x_t`` at integer steps ``t`` (``labels``: class or null token)."""
        emb = self.time_mlp(timestep_embedding(t, self.width))
        if self.class_emb is not None and labels is not None:
            emb = emb + self.class_emb(labels)
        h = self.inp(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], 1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(h)


class DDPM(SavableModule):
    """Denoising diffusion probabilistic model (Ho et al. 2020) over images in [-1, 1].

    Training (:meth:`loss`): ``t ~ U{0..T-1}``, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``,
    MSE between ``eps`` and the U-Net's prediction (the paper's L_simple).
    Sampling (:meth:`sample`): ``"ancestral"`` runs all ``T`` reverse steps with the
    posterior variance ``beta~_t`` and the predicted ``x_0`` clipped to [-1, 1] (Ho et al.'s
    code); ``"ddim"`` (Song et al. 2021) runs ``steps`` evenly spaced steps with noise
    scale ``eta`` (0 = deterministic).

    ``num_classes > 0`` makes it class-conditional with classifier-free guidance (Ho &
    Salimans 2021): labels are replaced by the null token with probability ``p_uncond``
    during training; sampling uses ``(1 + w) eps(x, y) - w eps(x, null)`` with guidance
    weight ``w``. ``sample(n)`` draws ``n`` images (unconditional), ``sample(labels)``
    one image per label, like the GANs of this package.

    ``prediction="v"`` (Salimans & Ho 2022; not in Ho et al., whose net predicts ``eps``)
    trains the net to predict ``v = sqrt(abar) eps - sqrt(1 - abar) x_0`` instead, and the
    samplers read ``x_0 = sqrt(abar) x_t - sqrt(1 - abar) v``. With ``eps`` the estimate
    ``x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` divides the net's error by
    ``sqrt(abar)``, 5e-5 at the cosine schedule's last step (T = 1000): the clipped ``x_0`` of the
    first sampling steps is then a random +-1 pattern that DDIM carries into the image (at
    ``size=small``, 1500 steps of training, 28 of 64 samples shown stayed noise). With ``v``
    the net predicts ``x_0`` itself at zero signal-to-noise ratio.
    """

    def __init__(self, channels: int = 1, image_size: int = 32, width: int = 32,
                 channel_mults: tuple[int, ...] | list[int] = (1, 2, 2), num_res_blocks: int = 1,
                 timesteps: int = 1000, schedule: str = "linear", num_classes: int = 0,
                 p_uncond: float = 0.1, dropout: float = 0.0, prediction: str = "eps") -> None:
        super().__init__()
        self.save_hparams(channels=channels, image_size=image_size, width=width,
                          channel_mults=list(channel_mults), num_res_blocks=num_res_blocks,
                          timesteps=timesteps, schedule=schedule, num_classes=num_classes,
                          p_uncond=p_uncond, dropout=dropout, prediction=prediction)
        if prediction not in PREDICTIONS:
            raise ConfigError(f"DDPM: prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ConfigError(f"DDPM: image_size {image_size} must be divisible by 2**{len(channel_mults) - 1}")
        if not 0.0 <= p_uncond < 1.0:
            raise ConfigError(f"DDPM: p_uncond must be in [0, 1), got {p_uncond}")
        self.channels, self.image_size, self.timesteps = channels, image_size, timesteps
        self.num_classes, self.p_uncond = num_classes, p_uncond
        self.net = UNet(channels, width, channel_mults, num_res_blocks, num_classes, dropout)
        betas = beta_schedule(schedule, timesteps)
        abar = torch.cumprod(1 - betas, 0)
        abar_prev = torch.cat([betas.new_ones(1), abar[:-1]])
        post_var = betas * (1 - abar_prev) / (1 - abar)
        for name, val in {
            "betas": betas, "alphas_cumprod": abar, "alphas_cumprod_prev": abar_prev,
            "posterior_log_variance": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
            "posterior_coef_x0": betas * abar_prev.sqrt() / (1 - abar),
            "posterior_coef_xt": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
        }.items():
            self.register_buffer(name, val.float(), persistent=False)

    @staticmethod
    def _at(buf: Tensor, t: Tensor) -> Tensor:
        return buf[t][:, None, None, None]

    def _device(self) -> torch.device:
        return self.betas.device

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` in closed form."""
        noise = torch.randn_like(x0) if noise is None else noise
        abar = self._at(self.alphas_cumprod, t)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def _labels_for_training(self, labels: Tensor | None, n: int) -> Tensor | None:
        if self.num_classes == 0:
            return None
        if labels is None:
            return torch.full((n,), self.num_classes, dtype=torch.long, device=self._device())
        labels = labels.long()
        drop = torch.rand(n, device=labels.device) < self.p_uncond
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def loss(self, x0: Tensor, labels: Tensor | None = None) -> Tensor:
        """L_simple: mean squared error of the noise (or ``v``) prediction at a uniform random step."""
        t = torch.randint(0, self.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        pred = self.net(self.q_sample(x0, t, noise), t, self._labels_for_training(labels, x0.shape[0]))
        if self.prediction == "eps":
            return F.mse_loss(pred, noise)
        abar = self._at(self.alphas_cumprod, t)
        return F.mse_loss(pred, abar.sqrt() * noise - (1 - abar).sqrt() * x0)

    def forward(self, x0: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.loss(x0, labels)

    def _guided(self, x: Tensor, t: Tensor, labels: Tensor | None, guidance: float) -> Tensor:
        """The net's output (``eps`` or ``v``); with labels and ``guidance != 0`` the guided
        combination ``(1 + w) out(x, y) - w out(x, null)``."""
        if self.num_classes == 0 or labels is None:
            null = None if self.num_classes == 0 else torch.full_like(t, self.num_classes)
            return self.net(x, t, null)
        out_c = self.net(x, t, labels)
        if guidance == 0.0:
            return out_c
        out_u = self.net(x, t, torch.full_like(labels, self.num_classes))
        return (1 + guidance) * out_c - guidance * out_u

    def predict_noise(self, x: Tensor, t: Tensor, labels: Tensor | None = None, guidance: float = 0.0) -> Tensor:
        """``eps(x_t, t[, y])``; with labels and ``guidance != 0`` the guided combination."""
        out = self._guided(x, t, labels, guidance)
        if self.prediction == "eps":
            return out
        abar = self._at(self.alphas_cumprod, t)
        return (1 - abar).sqrt() * x + abar.sqrt() * out

    def predict_x0(self, x: Tensor, t: Tensor, labels: Tensor | None = None, guidance: float = 0.0) -> Tensor:
        """The clean image the net sees in ``x_t``, clipped to [-1, 1]."""
        out = self._guided(x, t, labels, guidance)
        abar = self._at(self.alphas_cumprod, t)
        if self.prediction == "eps":
            x0 = (x - (1 - abar).sqrt() * out) / abar.sqrt()
        else:
            x0 = abar.sqrt() * x - (1 - abar).sqrt() * out
        return x0.clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n_or_labels: int | Tensor, method: str = "ddim", steps: int = 50, eta: float = 0.0,
               guidance: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1]: ``sample(n)`` or ``sample(labels)`` (call ``eval()`` first).

        ``method="ancestral"`` ignores ``steps`` and ``eta`` and runs all ``T`` steps."""
        if method not in SAMPLERS:
            raise ConfigError(f"unknown sampler {method!r} (expected one of {SAMPLERS})")
        dev = self._device()
        labels = n_or_labels.to(dev).long() if isinstance(n_or_labels, Tensor) else None
        n = labels.shape[0] if labels is not None else int(n_or_labels)
        if labels is not None and self.num_classes == 0:
            raise ValueError("sample(labels) needs a class-conditional DDPM (num_classes > 0)")
        x = torch.randn(n, self.channels, self.image_size, self.image_size, device=dev, generator=generator)

        def noise() -> Tensor:
            return torch.randn(x.shape, device=dev, generator=generator)

        if method == "ancestral":
            for i in reversed(range(self.timesteps)):
                t = torch.full((n,), i, device=dev, dtype=torch.long)
                x0 = self.predict_x0(x, t, labels, guidance)
                mean = self._at(self.posterior_coef_x0, t) * x0 + self._at(self.posterior_coef_xt, t) * x
                x = mean + (0.5 * self._at(self.posterior_log_variance, t)).exp() * noise() if i > 0 else mean
            return x
        ts = torch.linspace(self.timesteps - 1, 0, max(1, min(steps, self.timesteps))).round().long().unique_consecutive()
        for k, i in enumerate(ts.tolist()):
            t = torch.full((n,), i, device=dev, dtype=torch.long)
            x0 = self.predict_x0(x, t, labels, guidance)
            abar = self.alphas_cumprod[i]
            abar_prev = self.alphas_cumprod[ts[k + 1]] if k + 1 < len(ts) else abar.new_tensor(1.0)
            eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # consistent with the clipped x0
            sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
            x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
            if eta > 0 and k + 1 < len(ts):
                x = x + sigma * noise()
        return x


__all__ = ["DDPM", "PREDICTIONS", "SAMPLERS", "SCHEDULES", "UNet", "beta_schedule", "timestep_embedding"]
