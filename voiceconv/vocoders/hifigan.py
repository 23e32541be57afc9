"""HiFi-GAN generator (Kong, Kim & Bae, NeurIPS 2020): log-mel frames -> waveform.

The generator is a stack of transposed convolutions that upsample a log-mel
spectrogram ``(B, n_mels, T)`` by ``prod(upsample_rates) == hop_length`` to a
waveform ``(B, T * hop_length)``. After every upsampling layer a multi-receptive
field fusion (MRF) module sums (and averages) ``len(resblock_kernel_sizes)``
residual blocks of different kernel sizes and dilations. Layout, as in the paper and
its reference code::

    conv_pre (k7) -> [LReLU(0.1) -> ConvT(k_u, stride u) -> MRF] x len(u)
                  -> LReLU(0.01) -> conv_post (k7, 1 channel) -> tanh

* ResBlock "1" (V1, V2): per dilation ``d``: ``x += conv_1(conv_d(lrelu(x)))`` with a
  LReLU between the two convolutions.
* ResBlock "2" (V3): per dilation ``d``: ``x += conv_d(lrelu(x))``.

Every convolution carries weight normalisation
(:func:`torch.nn.utils.parametrizations.weight_norm`); :meth:`HiFiGANGenerator.remove_weight_norm`
folds it into plain weights for inference without changing the output.

Griffin-Lim source (``source="griffinlim"``, our addition, not in the paper): the
generator also owns a :class:`~voiceconv.vocoders.magnitude.MagnitudeNet` (log-mel ->
log linear magnitude: NNLS inversion + a learned residual) and runs fast Griffin-Lim
(``source_iters`` iterations, fixed seed, no gradient) on its magnitude. That waveform
``s`` is (a) added through a strided convolution to the features after every upsampling
layer, the way NSF-HiFiGAN injects its sine source (Wang et al., neural source-filter
models), and (b) the base of the output, ``s + conv_post(...)`` instead of
``tanh(conv_post(...))``, with ``conv_post`` initialised 100x smaller and a zero bias.
An untrained generator therefore returns (almost exactly) Griffin-Lim with NNLS
magnitudes, i.e. :class:`~voiceconv.vocoders.griffinlim.GriffinLim`; training teaches
the magnitude net the speakers' fine structure (its own loss, see the trainer) and the
HiFi-GAN path the remaining correction. Why: on a CPU budget (tens of minutes) a
HiFi-GAN trained from scratch stays far from Griffin-Lim on held-out spectral
convergence and MCD (``recipes/vocoder_hifigan/README.md``), while this one starts at
Griffin-Lim and improves on it. Cost: a Griffin-Lim run per call. Measured there
(33 CPU minutes): the gain over Griffin-Lim is the magnitude net's; the source alone
scores as well as the whole generator, and the HiFi-GAN path's correction has not
helped these metrics yet.

Frame / sample alignment: frame ``t`` of the mel produces samples
``[t * hop, (t + 1) * hop)``. With :class:`~voiceconv.audio.mel.LogMel`'s centred
frames (frame ``t`` is centred on sample ``t * hop``) this is the convention the
trainer uses for its training pairs (segments of the full-utterance mel and the
matching samples), so training and inference see the same alignment.

Deviations from the reference implementation, and why:

* Weight initialisation: the reference code calls ``init_weights`` (N(0, 0.01)) *after*
  ``weight_norm``, where it writes into a tensor that the weight-norm hook recomputes
  from ``g`` and ``v`` before every forward; the released models therefore trained
  from PyTorch's default initialisation. We keep PyTorch's default (the behaviour
  that was actually trained) and do not pretend to re-initialise.
* Transposed-convolution padding is ``ceil((k - u) / 2)`` plus an ``output_padding`` of
  ``(k - u) mod 2``, so the output is exactly ``u`` times longer for any ``k >= u``;
  for the paper's even ``k - u`` this is the reference's ``(k - u) // 2`` padding.
* The ``mel_config`` (a :meth:`MelConfig.to_dict`) is a constructor argument so that
  a saved generator names the features it was trained on and a loader can refuse
  others (:meth:`MelConfig.check_same`).

Configurations of the paper (``upsample_rates (8, 8, 2, 2)`` for hop 256):

====  ===============  ===========  =========================  =================
name  initial channel  resblock     resblock kernels           params (paper)
====  ===============  ===========  =========================  =================
V1    512              "1"          (3, 7, 11), dil (1, 3, 5)  13.92 M
V2    128              "1"          (3, 7, 11), dil (1, 3, 5)  0.92 M
V3    256              "2"          (3, 5, 7), dil (1, 2),     1.46 M
                                    (2, 6), (3, 12);
                                    upsample (8, 8, 4), k
                                    (16, 16, 8)
====  ===============  ===========  =========================  =================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule
from voiceconv.vocoders.griffinlim import GriffinLim
from voiceconv.vocoders.magnitude import MagnitudeNet

#: negative slope of the LeakyReLUs inside the generator and discriminators (paper: 0.1)
LRELU_SLOPE = 0.1
RESBLOCK_KINDS = ("1", "2")
#: what a generator may take besides the mel (see the module docstring)
SOURCES = (None, "griffinlim")


def dilated_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 convolution with an odd kernel."""
    return (kernel_size * dilation - dilation) // 2


def remove_all_weight_norms(module: nn.Module) -> int:
    """Fold every ``weight`` parametrisation under ``module`` into a plain weight.

    Returns the number of layers changed. The computed weight is kept
    (``leave_parametrized=True``), so outputs do not change.
    """
    n = 0
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            n += 1
    return n


class ResBlock1(nn.Module):
    """HiFi-GAN residual block type 1: ``x += conv_1(lrelu(conv_d(lrelu(x))))`` per dilation."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                  padding=dilated_padding(kernel_size, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1,
                                  padding=dilated_padding(kernel_size, 1)))
            for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = x + xt
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN residual block type 2: ``x += conv_d(lrelu(x))`` per dilation."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                  padding=dilated_padding(kernel_size, d)))
            for d in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


def _fit_length(x: Tensor, length: int) -> Tensor:
    """``x`` cut or zero-padded (at the end) to ``length`` steps."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return F.pad(x, (0, length - x.shape[-1]))


def positive_ints(values: Any, what: str) -> tuple[int, ...]:
    """``values`` as a non-empty tuple of positive ints; :class:`ConfigError` naming ``what`` otherwise."""
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a list of integers, got {values!r}") from exc
    if not out or any(v < 1 for v in out):
        raise ConfigError(f"{what} must be non-empty positive integers, got {values!r}")
    return out


class HiFiGANGenerator(SavableModule):
    """HiFi-GAN generator: ``forward(log_mel (B, n_mels, T)) -> wav (B, T * hop_length)``.

    Args:
        mel_config: :meth:`MelConfig.to_dict` of the features it vocodes; ``n_mels``
            sets the input channels and ``prod(upsample_rates)`` must equal its
            ``hop_length`` (:class:`~voiceconv.errors.ConfigError` otherwise).
        upsample_rates, upsample_kernel_sizes: stride and kernel of each transposed
            convolution (``kernel >= rate``).
        upsample_initial_channel: channels after ``conv_pre``; halved by every upsampling
            (512: V1, 128: V2, 256: V3).
        resblock: ``"1"`` or ``"2"`` (see the module docstring).
        resblock_kernel_sizes, resblock_dilation_sizes: one residual block of the MRF per
            kernel size, with its tuple of dilations.

    A 2-D input ``(n_mels, T)`` gives a 1-D output ``(T * hop_length,)``. Output
    samples are in ``(-1, 1)`` (tanh).
    """

    def __init__(
        self,
        mel_config: dict[str, Any] | None = None,
        upsample_rates: Sequence[int] = (8, 8, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4),
        upsample_initial_channel: int = 128,
        resblock: str = "1",
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        source: str | None = None,
        source_iters: int = 32,
    ) -> None:
        super().__init__()
        cfg = MelConfig.from_dict(dict(mel_config)) if mel_config is not None else MelConfig()
        rates = positive_ints(upsample_rates, "HiFiGANGenerator: upsample_rates")
        kernels = positive_ints(upsample_kernel_sizes, "HiFiGANGenerator: upsample_kernel_sizes")
        rb_kernels = positive_ints(resblock_kernel_sizes, "HiFiGANGenerator: resblock_kernel_sizes")
        rb_dils = tuple(positive_ints(d, "HiFiGANGenerator: resblock_dilation_sizes") for d in resblock_dilation_sizes)
        resblock = str(resblock)
        if len(rates) != len(kernels):
            raise ConfigError(
                f"HiFiGANGenerator: {len(rates)} upsample_rates but {len(kernels)} upsample_kernel_sizes"
            )
        if math.prod(rates) != cfg.hop_length:
            raise ConfigError(
                f"HiFiGANGenerator: product of upsample_rates {rates} is {math.prod(rates)},"
                f" but the mel hop_length is {cfg.hop_length}; they must be equal"
            )
        if any(k < u for k, u in zip(kernels, rates, strict=True)):
            raise ConfigError(
                f"HiFiGANGenerator: every upsample kernel must be >= its rate, got {kernels} for {rates}"
            )
        if len(rb_kernels) != len(rb_dils):
            raise ConfigError(
                f"HiFiGANGenerator: {len(rb_kernels)} resblock_kernel_sizes but"
                f" {len(rb_dils)} resblock_dilation_sizes"
            )
        if resblock not in RESBLOCK_KINDS:
            raise ConfigError(f"HiFiGANGenerator: resblock must be one of {RESBLOCK_KINDS}, got {resblock!r}")
        if source not in SOURCES:
            raise ConfigError(f"HiFiGANGenerator: source must be one of {SOURCES}, got {source!r}")
        if int(source_iters) < 0:
            raise ConfigError(f"HiFiGANGenerator: source_iters must be >= 0, got {source_iters}")
        if upsample_initial_channel < 2 ** len(rates):
            raise ConfigError(
                f"HiFiGANGenerator: upsample_initial_channel {upsample_initial_channel} is too small"
                f" to halve {len(rates)} times"
            )
        self.save_hparams(
            mel_config=cfg.to_dict(), upsample_rates=list(rates), upsample_kernel_sizes=list(kernels),
            upsample_initial_channel=int(upsample_initial_channel), resblock=resblock,
            resblock_kernel_sizes=list(rb_kernels), resblock_dilation_sizes=[list(d) for d in rb_dils],
            source=source, source_iters=int(source_iters),
        )
        self._mel_config = cfg
        self.num_kernels = len(rb_kernels)
        block_cls = ResBlock1 if resblock == "1" else ResBlock2
        ch = int(upsample_initial_channel)
        self.conv_pre = weight_norm(nn.Conv1d(cfg.n_mels, ch, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(rates, kernels, strict=True)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            pad = (k - u + 1) // 2
            self.ups.append(weight_norm(nn.ConvTranspose1d(
                c_in, c_out, k, u, padding=pad, output_padding=u - k + 2 * pad)))
            for rk, rd in zip(rb_kernels, rb_dils, strict=True):
                self.resblocks.append(block_cls(c_out, rk, rd))
        self.conv_post = weight_norm(nn.Conv1d(ch // 2 ** len(rates), 1, 7, 1, padding=3))
        self.source = source
        self.source_convs = nn.ModuleList()
        self.magnitude_net: MagnitudeNet | None = None
        self.griffinlim: GriffinLim | None = None
        if source == "griffinlim":
            self.magnitude_net = MagnitudeNet(cfg)
            self.griffinlim = GriffinLim(cfg, n_iter=int(source_iters), seed=0)
            for i in range(len(rates)):
                stride = math.prod(rates[i + 1 :])  # source samples per feature step of stage i
                kernel = 2 * stride if stride > 1 else 1
                self.source_convs.append(nn.Conv1d(1, ch // 2 ** (i + 1), kernel, stride, padding=stride // 2))
            with torch.no_grad():  # start as (almost) the identity on the source
                self.conv_post.parametrizations.weight.original0.mul_(0.01)
                self.conv_post.bias.zero_()

    @property
    def mel_config(self) -> MelConfig:
        """The :class:`MelConfig` of the features this generator was built for."""
        return self._mel_config

    @property
    def hop_length(self) -> int:
        """Output samples per input frame."""
        return self._mel_config.hop_length

    @property
    def export_blocker(self) -> str | None:
        """Why this generator cannot be exported to ONNX (``None``: it can)."""
        if self.griffinlim is not None:
            return ("this HiFi-GAN runs Griffin-Lim for its source (source='griffinlim'), an iteration"
                    " that is not exported; use a Vocos or a plain HiFi-GAN checkpoint")
        return None

    @torch.no_grad()
    def make_source(self, log_mel: Tensor, log_magnitude: Tensor | None = None) -> Tensor:
        """The Griffin-Lim source ``(B, T * hop_length)`` of log-mels ``(B, n_mels, T)``.

        ``log_magnitude``: the magnitude net's output for ``log_mel`` if already computed.
        Needs ``source="griffinlim"``.
        """
        if self.magnitude_net is None or self.griffinlim is None:
            raise ConfigError("HiFiGANGenerator: this generator takes no source (source=None)")
        with torch.autocast(log_mel.device.type, enabled=False):  # NNLS and the FFTs in fp32
            if log_magnitude is None:
                log_magnitude = self.magnitude_net(log_mel.float())
            return self.griffinlim.invert(torch.exp(log_magnitude.float()), log_mel.shape[-1] * self.hop_length)

    def forward(self, log_mel: Tensor, source: Tensor | None = None) -> Tensor:
        """Waveform ``(B, T * hop_length)`` (or ``(T * hop_length,)``) from log-mels.

        ``source``: the Griffin-Lim source of ``log_mel`` (``(B, T * hop_length)``) for a
        ``source="griffinlim"`` generator; computed by :meth:`make_source` when omitted.
        """
        squeeze = log_mel.dim() == 2
        x = log_mel.unsqueeze(0) if squeeze else log_mel
        if x.dim() != 3 or x.shape[1] != self._mel_config.n_mels:
            raise ConfigError(
                f"HiFiGANGenerator: expected log-mels (B, {self._mel_config.n_mels}, T),"
                f" got shape {tuple(log_mel.shape)}"
            )
        n_samples = x.shape[-1] * self.hop_length
        src: Tensor | None = None
        if self.magnitude_net is not None:
            src = self.make_source(x) if source is None else source.reshape(x.shape[0], -1)
            if src.shape[-1] != n_samples:
                raise ConfigError(f"HiFiGANGenerator: source has {src.shape[-1]} samples, expected {n_samples}")
            src = src.to(x.dtype).unsqueeze(1)
        elif source is not None:
            raise ConfigError("HiFiGANGenerator: a source needs source='griffinlim'")
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if src is not None:
                x = x + _fit_length(self.source_convs[i](src), x.shape[-1])
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        # The reference uses F.leaky_relu's default slope (0.01) before conv_post.
        x = self.conv_post(F.leaky_relu(x))
        x = torch.tanh(x) if src is None else src + x
        wav = x.squeeze(1)
        return wav[0] if squeeze else wav

    def remove_weight_norm(self) -> HiFiGANGenerator:
        """Fold weight normalisation into plain weights (inference; same outputs, faster).

        A generator without weight norm has other ``state_dict`` keys: save checkpoints
        before calling this. Returns ``self``.
        """
        remove_all_weight_norms(self)
        return self


#: Generator settings shipped in ``conf/vocoder/model/`` (name -> constructor kwargs
#: without ``mel_config``).
PRESETS: dict[str, dict[str, Any]] = {
    "v1": dict(upsample_initial_channel=512, resblock="1"),
    "v2": dict(upsample_initial_channel=128, resblock="1"),
    "v3": dict(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
               upsample_initial_channel=256, resblock="2", resblock_kernel_sizes=(3, 5, 7),
               resblock_dilation_sizes=((1, 2), (2, 6), (3, 12))),
    "small": dict(upsample_initial_channel=64, resblock="2", resblock_kernel_sizes=(3, 7, 11),
                  resblock_dilation_sizes=((1, 3), (1, 3), (1, 3))),
    "gl_small": dict(upsample_initial_channel=64, resblock="2", resblock_kernel_sizes=(3, 7, 11),
                     resblock_dilation_sizes=((1, 3), (1, 3), (1, 3)), source="griffinlim"),
}


def build_generator(preset: str, mel_config: MelConfig | dict[str, Any], **overrides: Any) -> HiFiGANGenerator:
    """A :class:`HiFiGANGenerator` from a :data:`PRESETS` name, with keyword overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown HiFi-GAN preset {preset!r} (expected one of {sorted(PRESETS)})")
    cfg = mel_config.to_dict() if isinstance(mel_config, MelConfig) else dict(mel_config)
    return HiFiGANGenerator(cfg, **{**PRESETS[preset], **overrides})


__all__ = [
    "LRELU_SLOPE",
    "PRESETS",
    "SOURCES",
    "HiFiGANGenerator",
    "ResBlock1",
    "ResBlock2",
    "build_generator",
    "dilated_padding",
    "remove_all_weight_norms",
]
