"""HiFi-GAN's discriminators and losses (Kong, Kim & Bae, NeurIPS 2020).

* :class:`MultiPeriodDiscriminator` (MPD): one sub-discriminator per period ``p``
  (2, 3, 5, 7, 11). Each reflect-pads the waveform to a multiple of ``p``, folds it
  to a ``(B, 1, T / p, p)`` image and applies 2-D convolutions with ``(k, 1)`` kernels,
  so every column sees the samples ``p`` apart. Channels 32, 128, 512, 1024, 1024,
  kernel 5, stride 3 (the last one 1), then a ``(3, 1)`` output conv; weight norm.
* :class:`MultiScaleDiscriminator` (MSD, from MelGAN): three 1-D sub-discriminators on
  the raw waveform and on x2 and x4 average-pooled copies; grouped strided
  convolutions; the first (raw audio) uses spectral norm, the others weight norm.
* :class:`MultiResolutionDiscriminator` (MRD, UnivNet's; Vocos pairs it with the MPD):
  2-D convolutions over linear magnitude spectrograms at three STFT resolutions.

Both return ``(logits, feature_maps)``: ``logits`` is a list with one tensor per
sub-discriminator (raw, no sigmoid), ``feature_maps`` a list (per sub-discriminator)
of lists of the activations of every layer, the output layer included, as the
reference implementation collects them for the feature-matching loss.

The losses follow the paper: LSGAN adversarial terms through the shared
:class:`~voiceconv.models.losses.GANLoss` (``mode="lsgan"``: ``(D(x) - 1)^2 + D(G(s))^2``
for D, ``(D(G(s)) - 1)^2`` for G, each averaged over a sub-discriminator's logits and
summed over sub-discriminators), the feature-matching loss
:func:`feature_matching_loss` (mean absolute difference per layer, summed over layers
and sub-discriminators) and the mel-spectrogram L1 loss :func:`mel_l1_loss`; the
generator's total is ``L_adv + 2 L_fm + 45 L_mel`` (:func:`generator_total`).

Deviation, for CPU-sized experiments only: the channel widths and groups of both
discriminators are constructor arguments (defaults: the paper's). The small vocoder
configuration narrows them; the shape of the networks (layers, kernels, strides,
periods, scales, norms) stays the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.models.losses import GANLoss
from voiceconv.vocoders.hifigan import LRELU_SLOPE, positive_ints

FeatureMaps = list[list[Tensor]]
DiscOutput = tuple[list[Tensor], FeatureMaps]

#: the paper's loss weights
LAMBDA_FM = 2.0
LAMBDA_MEL = 45.0

MPD_CHANNELS = (32, 128, 512, 1024, 1024)
MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)


def _judge(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """A sub-discriminator's stack: LReLU after every conv, a linear ``conv_post``;
    returns the flattened logits and every layer's output (the feature maps)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


def _as_waveform(x: Tensor) -> Tensor:
    """``(B, T)`` or ``(B, 1, T)`` -> ``(B, 1, T)``."""
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3 and x.shape[1] == 1:
        return x
    raise ConfigError(f"discriminator input must be (B, T) or (B, 1, T), got {tuple(x.shape)}")


def _judge_all(discriminators: nn.ModuleList, x: Tensor) -> DiscOutput:
    """Every sub-discriminator on the same input: ``(logits, feature_maps)``, one entry each."""
    logits, fmaps = [], []
    for d in discriminators:
        logit, fmap = d(x)
        logits.append(logit)
        fmaps.append(fmap)
    return logits, fmaps


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator for period ``period`` (2-D convs on the folded signal)."""

    def __init__(self, period: int, channels: Sequence[int] = MPD_CHANNELS,
                 kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = int(period)
        pad = (kernel_size - 1) // 2  # the reference's get_padding(5, 1) = 2
        layers = []
        c_in = 1
        for i, c_out in enumerate(channels):
            s = stride if i < len(channels) - 1 else 1
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (s, 1), padding=(pad, 0))))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        rest = (-t) % self.period
        if rest:
            # reflect needs rest < t; a segment shorter than its period would be unusable anyway
            x = F.pad(x, (0, rest), mode="reflect")
        x = x.view(b, c, (t + rest) // self.period, self.period)
        return _judge(self.convs, self.conv_post, x)


class MultiPeriodDiscriminator(SavableModule):
    """HiFi-GAN's MPD: ``forward(wav (B, T) or (B, 1, T)) -> (logits, feature_maps)``.

    Args:
        periods: one sub-discriminator per period (paper: 2, 3, 5, 7, 11 — primes, to
            overlap as little as possible).
        channels: output channels of the strided convolutions (paper: 32, 128, 512,
            1024, 1024); the output conv maps the last to 1.
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = MPD_CHANNELS) -> None:
        super().__init__()
        periods_t = positive_ints(periods, "MultiPeriodDiscriminator periods")
        channels_t = positive_ints(channels, "MultiPeriodDiscriminator channels")
        self.save_hparams(periods=list(periods_t), channels=list(channels_t))
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels_t) for p in periods_t)

    def forward(self, wav: Tensor) -> DiscOutput:
        return _judge_all(self.discriminators, _as_waveform(wav))


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator (MelGAN's): grouped strided 1-D convolutions."""

    KERNELS = (15, 41, 41, 41, 41, 41, 5)
    STRIDES = (1, 2, 2, 4, 4, 1, 1)

    def __init__(self, channels: Sequence[int] = MSD_CHANNELS, groups: Sequence[int] = MSD_GROUPS,
                 use_spectral_norm: bool = False) -> None:
        super().__init__()
        if len(channels) != len(self.KERNELS) or len(groups) != len(self.KERNELS):
            raise ConfigError(
                f"MultiScaleDiscriminator needs {len(self.KERNELS)} channels and groups,"
                f" got {len(channels)} and {len(groups)}"
            )
        norm = spectral_norm if use_spectral_norm else weight_norm
        layers = []
        c_in = 1
        for c_out, g, k, s in zip(channels, groups, self.KERNELS, self.STRIDES, strict=True):
            if c_in % g or c_out % g:
                raise ConfigError(
                    f"MultiScaleDiscriminator: groups {g} must divide channels {c_in} -> {c_out}"
                )
            layers.append(norm(nn.Conv1d(c_in, c_out, k, s, groups=g, padding=(k - 1) // 2)))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.conv_post = norm(nn.Conv1d(c_in, 1, 3, 1, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _judge(self.convs, self.conv_post, x)


class MultiScaleDiscriminator(SavableModule):
    """HiFi-GAN's MSD: ``forward(wav (B, T) or (B, 1, T)) -> (logits, feature_maps)``.

    Sub-discriminator ``i`` sees the waveform average-pooled ``i`` times with
    ``AvgPool1d(4, 2, padding=2)`` (raw, x2, x4). The first uses spectral norm, the
    others weight norm (paper, Sec. 2.3).

    Args:
        n_scales: number of sub-discriminators (paper: 3).
        channels, groups: per layer of each sub-discriminator (paper: 128, 128, 256,
            512, 1024, 1024, 1024 with groups 1, 4, 16, 16, 16, 16, 1).
    """

    def __init__(self, n_scales: int = 3, channels: Sequence[int] = MSD_CHANNELS,
                 groups: Sequence[int] = MSD_GROUPS) -> None:
        super().__init__()
        if int(n_scales) < 1:
            raise ConfigError(f"MultiScaleDiscriminator n_scales must be >= 1, got {n_scales}")
        channels_t = positive_ints(channels, "MultiScaleDiscriminator channels")
        groups_t = positive_ints(groups, "MultiScaleDiscriminator groups")
        self.save_hparams(n_scales=int(n_scales), channels=list(channels_t), groups=list(groups_t))
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels_t, groups_t, use_spectral_norm=(i == 0))
            for i in range(int(n_scales))
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: Tensor) -> DiscOutput:
        x = _as_waveform(wav)
        logits, fmaps = [], []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = self.pool(x)
            logit, fmap = d(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps


#: (n_fft, hop, window) of the multi-resolution discriminator (UnivNet's, as Vocos uses it)
MRD_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512))


class ResolutionDiscriminator(nn.Module):
    """One MRD sub-discriminator: 2-D convolutions over a linear magnitude spectrogram
    ``(B, 1, frames, bins)``; kernels (3, 9) striding the frequency axis by 2, then (3, 3)."""

    def __init__(self, resolution: tuple[int, int, int], channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop, self.win = (int(v) for v in resolution)
        if self.win > self.n_fft or self.hop < 1:
            raise ConfigError(f"MultiResolutionDiscriminator: bad resolution {resolution!r}")
        c = int(channels)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.conv_post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        wav = x[:, 0].float()
        pad_mode = "reflect" if wav.shape[-1] > self.n_fft // 2 else "constant"
        mag = torch.stft(wav, self.n_fft, self.hop, self.win, self.window, pad_mode=pad_mode,
                         return_complex=True).abs()
        return _judge(self.convs, self.conv_post, mag.transpose(1, 2).unsqueeze(1).to(x.dtype))


class MultiResolutionDiscriminator(SavableModule):
    """UnivNet's multi-resolution (spectrogram) discriminator, as Vocos trains with it:
    ``forward(wav (B, T) or (B, 1, T)) -> (logits, feature_maps)``, one sub-discriminator per
    STFT resolution ``(n_fft, hop, window)``.

    Deviation from Vocos's reference: no split of the spectrogram into frequency bands
    (UnivNet's form); ``channels`` sets every layer's width (UnivNet: 32).
    """

    def __init__(self, resolutions: Sequence[Sequence[int]] = MRD_RESOLUTIONS, channels: int = 32) -> None:
        super().__init__()
        res = [positive_ints(r, "MultiResolutionDiscriminator resolutions") for r in resolutions]
        if not res or any(len(r) != 3 for r in res):
            raise ConfigError(f"MultiResolutionDiscriminator: resolutions must be (n_fft, hop, window) triples,"
                              f" got {resolutions!r}")
        (c,) = positive_ints([channels], "MultiResolutionDiscriminator channels")
        self.save_hparams(resolutions=[list(r) for r in res], channels=c)
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(tuple(r), c) for r in res)

    def forward(self, wav: Tensor) -> DiscOutput:
        return _judge_all(self.discriminators, _as_waveform(wav))


# --------------------------------------------------------------------------- losses


def feature_matching_loss(real_fmaps: FeatureMaps, fake_fmaps: FeatureMaps) -> Tensor:
    """``sum_k sum_i mean |D_k^i(x) - D_k^i(G(s))|`` over sub-discriminators ``k`` and layers ``i``.

    The paper writes ``1/N_i`` per layer: a mean over that layer's elements. Pass the
    real feature maps detached (or computed without grad): they are targets.
    """
    if len(real_fmaps) != len(fake_fmaps):
        raise ValueError(f"{len(real_fmaps)} real vs {len(fake_fmaps)} fake sub-discriminators")
    terms = [
        torch.mean(torch.abs(r - f))
        for real, fake in zip(real_fmaps, fake_fmaps, strict=True)
        for r, f in zip(real, fake, strict=True)
    ]
    return torch.stack(terms).sum()


def mel_l1_loss(real_log_mel: Tensor, fake_log_mel: Tensor) -> Tensor:
    """Mean absolute difference of two log-mel spectrograms (the paper's ``L_mel``)."""
    frames = min(real_log_mel.shape[-1], fake_log_mel.shape[-1])
    return F.l1_loss(fake_log_mel[..., :frames], real_log_mel[..., :frames])


#: (n_fft, hop, window) of Parallel WaveGAN's multi-resolution STFT loss (Yamamoto et al. 2020)
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


class MultiResolutionSTFTLoss(nn.Module):
    """Parallel WaveGAN's auxiliary loss (Yamamoto et al., ICASSP 2020), not HiFi-GAN's.

    Per resolution: spectral convergence ``||S - S_hat||_F / ||S||_F`` plus the mean
    absolute difference of the log magnitudes (floored at 1e-7); the mean over the
    resolutions is returned. Hann windows, centred frames.
    """

    def __init__(self, resolutions: Sequence[tuple[int, int, int]] = STFT_RESOLUTIONS) -> None:
        super().__init__()
        self.resolutions = tuple((int(n), int(h), int(w)) for n, h, w in resolutions)
        if not self.resolutions or any(w > n or h < 1 for n, h, w in self.resolutions):
            raise ConfigError(f"MultiResolutionSTFTLoss: bad resolutions {resolutions!r}")
        for _, _, w in self.resolutions:
            self.register_buffer(f"window_{w}", torch.hann_window(w), persistent=False)

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        real, fake = _as_waveform(real)[:, 0].float(), _as_waveform(fake)[:, 0].float()
        total = real.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            window = getattr(self, f"window_{win}")
            # reflect padding as Parallel WaveGAN; zeros where a segment is too short to reflect
            pad_mode = "reflect" if real.shape[-1] > n_fft // 2 else "constant"
            s = torch.stft(real, n_fft, hop, win, window, pad_mode=pad_mode,
                           return_complex=True).abs().clamp_min(1e-7)
            s_hat = torch.stft(fake, n_fft, hop, win, window, pad_mode=pad_mode,
                               return_complex=True).abs().clamp_min(1e-7)
            sc = torch.linalg.vector_norm(s - s_hat) / torch.linalg.vector_norm(s)
            total = total + sc + F.l1_loss(torch.log(s_hat), torch.log(s))
        return total / len(self.resolutions)


def generator_total(adv: Tensor, fm: Tensor, mel: Tensor,
                    lambda_fm: float = LAMBDA_FM, lambda_mel: float = LAMBDA_MEL) -> Tensor:
    """``L_G = L_adv + lambda_fm L_fm + lambda_mel L_mel`` (paper: 2 and 45)."""
    return adv + lambda_fm * fm + lambda_mel * mel


def lsgan() -> GANLoss:
    """The adversarial criterion of HiFi-GAN (least squares, summed over sub-discriminators)."""
    return GANLoss("lsgan")


__all__ = [
    "LAMBDA_FM",
    "STFT_RESOLUTIONS",
    "MultiResolutionSTFTLoss",
    "LAMBDA_MEL",
    "MPD_CHANNELS",
    "MSD_CHANNELS",
    "MSD_GROUPS",
    "MRD_RESOLUTIONS",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleDiscriminator",
    "ResolutionDiscriminator",
    "PeriodDiscriminator",
    "ScaleDiscriminator",
    "feature_matching_loss",
    "generator_total",
    "lsgan",
    "mel_l1_loss",
]
