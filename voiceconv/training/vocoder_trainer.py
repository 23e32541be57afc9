"""The vocoder training loop: HiFi-GAN (Kong, Kim & Bae, NeurIPS 2020) and Vocos (Siuzdak 2023).

The discriminators are named (``{"mpd": ..., "msd": ...}`` for HiFi-GAN, ``{"mpd": ...,
"mrd": ...}`` for Vocos: ``model.discriminators`` in the config, or HiFi-GAN's top-level
``model.mpd`` / ``model.msd``); the names key the checkpoint and the logged losses. A
Vocos generator (one with ``spectrum``) is run as ``synthesize(*spectrum(mel))`` so that its
predicted spectrum can get its own losses: ``lambda_magnitude`` x
:func:`~voiceconv.vocoders.magnitude.magnitude_loss` and ``lambda_phase`` x
:func:`~voiceconv.vocoders.vocos.spectrum_phase_loss` against the segment's STFT (both 0
in Vocos's configuration, on in ``cpu_vocos``; a generator whose phase has no parameters,
``learns_phase`` false, gets no phase loss). ``gan_mode`` picks the shared
:class:`~voiceconv.models.losses.GANLoss` (HiFi-GAN: lsgan, Vocos: hinge).

One training step (:meth:`VocoderTrainer.train_step`), in the reference order:

1. draw ``batch_size`` random segments of ``segment_size`` samples with their log-mel
   frames (:class:`SegmentSampler`);
2. ``y_hat = G(mel)``;
3. **discriminator step** — MPD and MSD judge the real segments against the DETACHED
   ``y_hat``; LSGAN losses (:class:`~voiceconv.models.losses.GANLoss`), summed over all
   sub-discriminators; AdamW step on both discriminators;
4. **generator step** — with the discriminator weights frozen: LSGAN generator loss
   + 2 x feature matching (real feature maps from the just-updated discriminators, as
   targets) + 45 x mel L1 (+ ``lambda_stft`` x Parallel WaveGAN's multi-resolution
   STFT loss, 0 in the paper's configuration); AdamW step on G;
5. every ``lr_decay_every`` steps both ExponentialLR schedulers step (gamma 0.999);
   with ``lr_schedule: cosine`` (Vocos) both rates follow a cosine from the base rate to
   0 at ``max_steps`` instead, updated every step.

Optimiser and schedule (paper): AdamW, lr 2e-4, betas (0.8, 0.99), PyTorch's default
weight decay 0.01 (the reference code passes none, so it gets that default); the
learning rate decays by 0.999 every epoch. There are no epochs over random segments,
so ``lr_decay_every`` counts optimizer steps; ``None`` means "one epoch", i.e.
``ceil(number of training utterances / batch_size)`` steps (the reference's loader
draws one segment per utterance per epoch).

Mel features: the generator's input frames come from THE front end
(:class:`~voiceconv.audio.mel.LogMel` with the run's :class:`MelConfig`), computed once
per utterance on the whole utterance when the sampler is built; a segment takes
``segment_size / hop`` consecutive frames and the samples ``[t0 * hop, t0 * hop +
segment_size)``, the alignment the generator uses at inference (frame ``t`` -> samples
``[t * hop, (t + 1) * hop)``). The mel LOSS uses the same MelConfig except ``fmax``,
which is ``loss_fmax`` (default ``None``: Nyquist), as in the reference code
(``fmax_for_loss: null``): the loss then also sees (and penalises) what the generator
does above the input mel's 8 kHz. Both sides of the loss are computed on the
segments by the same differentiable :class:`LogMel`.

Deviations from the reference implementation, and why:

* Real and generated segments go through each discriminator as ONE batch (one call
  instead of two): the same numbers (no layer mixes batch items), larger and faster
  convolutions; the only difference is that the spectral-norm power iteration of the
  MSD's first sub-discriminator advances once per call instead of twice.
* The generator step takes the real feature maps as constants (detached); the reference
  back-propagates into them too, which only adds discriminator gradients that its next
  ``zero_grad`` discards.
* ``lambda_stft`` (default 0, the paper) adds Parallel WaveGAN's multi-resolution STFT
  loss (spectral convergence + log magnitude, three resolutions) to the generator's
  loss; the CPU configuration uses it because it targets the spectral fine structure
  directly and speeds up short runs.
* A generator with a Griffin-Lim source (``HiFiGANGenerator(source="griffinlim")``):
  its magnitude net is trained on ``lambda_magnitude`` x
  :func:`~voiceconv.vocoders.magnitude.magnitude_loss` against the segment's STFT
  magnitude (the two frames at each end, where the segment's STFT lacks the
  utterance's context, left out), and the source is Griffin-Lim on the segment's
  predicted magnitude (no gradient). At inference Griffin-Lim runs on the whole
  utterance, so training sees the segment edges that inference does not.
* ``disc_start_step`` (default 0, the paper) lets a short CPU run train the generator on
  the mel loss alone first, as Parallel WaveGAN does for its first 100k steps; the CPU
  configurations use it (``cpu_vocos`` sets it to ``max_steps``: on its budget an
  adversarial step costs ten reconstruction steps and lowered SC and PESQ where measured).
* ``disc_segment_size`` (default ``None``, the paper: the whole segment) has the
  discriminators, their adversarial terms and feature matching see one random window of
  that many samples of each segment, the same window of its real and generated versions,
  as GAN-TTS's random window discriminators (Binkowski et al. 2020) do. On a CPU an
  adversarial step costs ten times a reconstruction step, almost all of it in the
  discriminators; a half-length window halves their cost (15 CPU-minutes with
  ``vocos_small`` bought 387 adversarial steps instead of 218). The mel and STFT losses
  still see the whole segment. The windows are drawn from a generator seeded by the run's
  seed and the step, so resuming stays exact.

Around it, from the shared :class:`~voiceconv.training.base.TrainerBase` (the VC loop uses
the same): non-finite loss check (raises :class:`~voiceconv.errors.TrainingDiverged`
before the optimizer step that would apply a non-finite loss; nothing is written, so
the last good checkpoint is intact), TensorBoard scalars,
mel images and audio of a fixed example utterance, tqdm, and atomic checkpoints every
``ckpt_every`` steps. A run folder that already has ``checkpoints/last.ckpt`` is
resumed with every piece of state (generator, discriminators, both optimisers, both
schedulers, all random generators, the segment sampler), so an interrupted run
continues the trajectory of an uninterrupted one.

Single process, any device (``device`` argument): there is no DDP path.

Checkpoint keys (``format`` :data:`VOCODER_CHECKPOINT_FORMAT`):

==================  =============================================================
``model``           generator :func:`~voiceconv.models.base.model_payload` (what
                    ``voiceconv.vocoders.base.load_vocoder`` reads)
``discriminators``  ``{name: payload}`` (HiFi-GAN: ``mpd``, ``msd``; Vocos: ``mpd``, ``mrd``)
``optimizers``      ``{"generator": state_dict, "discriminator": state_dict}``
``schedulers``      ``{"generator": state_dict, "discriminator": state_dict}``
``rng``             :func:`~voiceconv.training.seeding.capture_rng_state`
``sampler``         :meth:`SegmentSampler.state_dict`
``step``            optimizer steps completed
``mel_config``      :meth:`MelConfig.to_dict` of the generator's input features
``settings``        the :class:`VocoderSettings` as a dict
``config``          the resolved run configuration (plain dict)
==================  =============================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ExponentialLR, LambdaLR

from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.errors import CheckpointError, ConfigError
from voiceconv.models.base import SavableModule, frozen, model_payload
from voiceconv.models.losses import GAN_MODES, GANLoss
from voiceconv.training.base import TrainerBase, TrainResult
from voiceconv.training.checkpoint import CheckpointManager, load_checkpoint
from voiceconv.training.logging import TrainLogger
from voiceconv.training.seeding import capture_rng_state, restore_rng_state
from voiceconv.vocoders.discriminators import (
    MultiResolutionSTFTLoss,
    feature_matching_loss,
    mel_l1_loss,
)
from voiceconv.vocoders.magnitude import linear_magnitude, magnitude_loss
from voiceconv.vocoders.vocos import front_end_window, spectrum_phase_loss

log = logging.getLogger(__name__)

VOCODER_CHECKPOINT_FORMAT = "voiceconv.vocoder_train.v1"
VOCODER_REQUIRED_KEYS = ("format", "step", "model", "discriminators", "optimizers",
                         "schedulers", "rng", "sampler", "mel_config")
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("exponential", "cosine")
OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


def _default_adamw(params: Iterable[nn.Parameter]) -> Optimizer:
    """The paper's optimiser: AdamW(lr 2e-4, betas (0.8, 0.99))."""
    return torch.optim.AdamW(params, lr=2e-4, betas=(0.8, 0.99))


# --------------------------------------------------------------------------- data


class SegmentSampler:
    """Random fixed-length training segments of waveforms with their log-mel frames.

    Every waveform is zero-padded at the end to at least ``segment_size`` samples, its
    log-mel computed once (whole utterance, :class:`LogMel`), and the audio padded to
    ``frames * hop`` samples so that every frame has its ``hop`` samples. A batch draws
    utterances uniformly (as one epoch of the reference's loader visits every file
    once) and a uniform frame offset in each. Random draws come from a private
    ``torch.Generator`` whose state is part of :meth:`state_dict`.

    Args:
        waveforms: float32 mono signals at ``mel_config.sample_rate``.
        mel_config: the generator's input features.
        segment_size: samples per segment; a multiple of ``hop_length``.
        batch_size: segments per batch.
        seed: seeds the private generator.
    """

    def __init__(self, waveforms: Sequence[np.ndarray | Tensor], mel_config: MelConfig,
                 segment_size: int, batch_size: int, seed: int = 0) -> None:
        hop = mel_config.hop_length
        if segment_size <= 0 or segment_size % hop:
            raise ConfigError(
                f"segment_size {segment_size} must be a positive multiple of hop_length {hop}"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if not waveforms:
            raise ConfigError("SegmentSampler: no training audio")
        self.mel_config = mel_config
        self.segment_size = int(segment_size)
        self.segment_frames = self.segment_size // hop
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        front = LogMel(mel_config)
        self.audio: list[Tensor] = []
        self.mels: list[Tensor] = []
        with torch.inference_mode():
            for w in waveforms:
                x = torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(-1)
                if x.numel() < self.segment_size:
                    x = nn.functional.pad(x, (0, self.segment_size - x.numel()))
                mel = front(x)
                n_frames = mel.shape[-1]
                x = nn.functional.pad(x, (0, max(0, n_frames * hop - x.numel())))[: n_frames * hop]
                self.audio.append(x.clone())
                self.mels.append(mel.clone())
        self.generator = torch.Generator().manual_seed(self.seed)

    def __len__(self) -> int:
        return len(self.audio)

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """``(audio (B, segment_size), log_mel (B, n_mels, segment_size / hop))``."""
        hop, frames = self.mel_config.hop_length, self.segment_frames
        idx = torch.randint(len(self.audio), (self.batch_size,), generator=self.generator)
        wavs, mels = [], []
        for i in idx.tolist():
            mel = self.mels[i]
            t0 = int(torch.randint(mel.shape[-1] - frames + 1, (1,), generator=self.generator))
            mels.append(mel[:, t0 : t0 + frames])
            wavs.append(self.audio[i][t0 * hop : t0 * hop + self.segment_size])
        return torch.stack(wavs), torch.stack(mels)

    def state_dict(self) -> dict[str, Any]:
        """Where the random draws stand (tensors and plain values only)."""
        return {"generator": self.generator.get_state(), "seed": self.seed, "n_utterances": len(self.audio),
                "segment_size": self.segment_size, "batch_size": self.batch_size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the draws of a saved sampler (same data and sizes expected)."""
        if int(state["n_utterances"]) != len(self.audio):
            log.warning("resuming with %d training utterances instead of %d",
                        len(self.audio), int(state["n_utterances"]))
        self.generator.set_state(state["generator"])
        self.seed = int(state.get("seed", self.seed))  # checkpoints before disc_segment_size lack it


# --------------------------------------------------------------------------- settings


@dataclass
class VocoderSettings:
    """How to train (``conf/vocoder/trainer/*.yaml``).

    ``lr_decay_every=None``: one "epoch" (see the module docstring). ``lr_schedule``:
    ``exponential`` (HiFi-GAN: x ``lr_decay`` every ``lr_decay_every`` steps) or ``cosine``
    (Vocos: from the base rate to 0 at ``max_steps``, updated every step; ``lr_decay`` and
    ``lr_decay_every`` unused). ``loss_fmax``:
    the mel loss's upper band edge (``None`` = Nyquist). ``lambda_stft``: weight of
    Parallel WaveGAN's multi-resolution STFT loss added to the generator's (paper: 0,
    not a HiFi-GAN term). ``lambda_magnitude``: weight of the magnitude net's loss
    (:func:`~voiceconv.vocoders.magnitude.magnitude_loss`) for a generator with a
    Griffin-Lim source; no effect otherwise. ``disc_start_step``: steps
    trained on the mel loss alone before the discriminators and the adversarial and
    feature-matching terms join (paper: 0; a deviation used only by the CPU recipe, see
    :class:`VocoderTrainer`). ``disc_segment_size``: the discriminators judge a random
    window of that many samples of each segment (``None``: the whole segment, the paper;
    see :class:`VocoderTrainer`). ``gan_mode``: the shared
    :class:`~voiceconv.models.losses.GANLoss` mode (HiFi-GAN: lsgan, Vocos: hinge).
    ``lambda_phase``: weight of :func:`~voiceconv.vocoders.vocos.spectrum_phase_loss` for a
    generator that predicts a spectrum (Vocos); no effect otherwise. ``max_minutes`` /
    ``max_cpu_minutes``: stop (with a checkpoint) once this invocation of :meth:`fit` has run
    that long in wall-clock time / in this process's CPU time (null: no limit); the CPU
    limit gives two runs sharing a loaded machine equal compute. ``audio_every``: TensorBoard
    audio and mel images of the example utterance (0 = off); ``log_every`` likewise.
    """

    max_steps: int = 2_500_000
    segment_size: int = 8192
    batch_size: int = 16
    lr_decay: float = 0.999
    lr_decay_every: int | None = None
    lr_schedule: str = "exponential"
    lambda_fm: float = 2.0
    lambda_mel: float = 45.0
    lambda_stft: float = 0.0
    lambda_magnitude: float = 1.0
    loss_fmax: float | None = None
    disc_start_step: int = 0
    disc_segment_size: int | None = None
    gan_mode: str = "lsgan"
    lambda_phase: float = 0.0
    max_minutes: float | None = None
    max_cpu_minutes: float | None = None
    precision: str = "fp32"
    ckpt_every: int = 5000
    keep_last: int = 3
    log_every: int = 100
    audio_every: int = 5000
    progress: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise ConfigError(f"trainer.max_steps must be >= 0, got {self.max_steps}")
        if self.ckpt_every < 1:
            raise ConfigError(f"trainer.ckpt_every must be >= 1, got {self.ckpt_every}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"trainer.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ConfigError(f"trainer.lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.disc_start_step < 0:
            raise ConfigError(f"trainer.disc_start_step must be >= 0, got {self.disc_start_step}")
        if self.disc_segment_size is not None and not 0 < self.disc_segment_size <= self.segment_size:
            raise ConfigError(f"trainer.disc_segment_size must be in (0, segment_size={self.segment_size}]"
                              f" or null, got {self.disc_segment_size}")
        if self.lambda_stft < 0 or self.lambda_magnitude < 0:
            raise ConfigError(f"trainer.lambda_stft and lambda_magnitude must be >= 0, got"
                              f" {self.lambda_stft} and {self.lambda_magnitude}")
        if self.lambda_phase < 0:
            raise ConfigError(f"trainer.lambda_phase must be >= 0, got {self.lambda_phase}")
        if self.gan_mode not in GAN_MODES:
            raise ConfigError(f"trainer.gan_mode must be one of {GAN_MODES}, got {self.gan_mode!r}")
        for name in ("max_minutes", "max_cpu_minutes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"trainer.{name} must be > 0 or null, got {value}")
        if self.lr_decay_every is not None and self.lr_decay_every < 1:
            raise ConfigError(f"trainer.lr_decay_every must be >= 1 or null, got {self.lr_decay_every}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **extra: Any) -> VocoderSettings:
        """Build from a config mapping, ignoring keys that are not settings (e.g. ``device``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**dict(values), **extra}.items() if k in names})


#: what :meth:`VocoderTrainer.fit` returns (the shared :class:`~voiceconv.training.base.TrainResult`)
VocoderTrainResult = TrainResult


# --------------------------------------------------------------------------- checkpoints


def load_vocoder_training_checkpoint(path: str | os.PathLike[str],
                                     map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a vocoder training checkpoint (``weights_only=True``) and check its layout.

    Raises :class:`~voiceconv.errors.CheckpointError` naming ``path`` when it is missing,
    unreadable, or not a vocoder training checkpoint.
    """
    return load_checkpoint(path, map_location, format_tag=VOCODER_CHECKPOINT_FORMAT,
                           required=VOCODER_REQUIRED_KEYS, what="vocoder training checkpoint")


# --------------------------------------------------------------------------- trainer


class VocoderTrainer(TrainerBase):
    """Trains a vocoder generator against a set of discriminators.

    Args:
        generator: a :class:`~voiceconv.vocoders.hifigan.HiFiGANGenerator` or a
            :class:`~voiceconv.vocoders.vocos.VocosGenerator` (moved to ``device``).
        discriminators: ``{name: discriminator}`` (HiFi-GAN: ``mpd`` and ``msd``; Vocos:
            ``mpd`` and ``mrd``); the names key the checkpoint and the logged losses.
        sampler: training segments (see :class:`SegmentSampler`); its MelConfig must be
            the generator's.
        settings: :class:`VocoderSettings`.
        run_dir: the run folder (``checkpoints/``, ``tb/``, ``config.yaml``,
            ``mel_config.json``).
        make_opt_g, make_opt_d: ``params -> Optimizer`` (default: AdamW 2e-4, (0.8, 0.99)).
        config: the resolved run configuration, stored in checkpoints and config.yaml.
        device: where to train.
        example: optional ``(waveform, log_mel)`` of one utterance for TensorBoard.
    """

    def __init__(
        self,
        generator: SavableModule,
        discriminators: Mapping[str, SavableModule],
        sampler: SegmentSampler,
        settings: VocoderSettings,
        run_dir: str | os.PathLike[str],
        make_opt_g: OptimizerFactory | None = None,
        make_opt_d: OptimizerFactory | None = None,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        example: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.config = dict(config or {})
        self.mel_config = generator.mel_config
        self.mel_config.check_same(sampler.mel_config, what="training segments")
        if settings.segment_size != sampler.segment_size or settings.batch_size != sampler.batch_size:
            raise ConfigError(
                f"sampler draws {sampler.batch_size} x {sampler.segment_size} samples but the settings"
                f" say {settings.batch_size} x {settings.segment_size}"
            )
        self.sampler = sampler
        self.generator = generator.to(self.device)
        if not discriminators:
            raise ConfigError("a vocoder needs at least one discriminator")
        self.discriminators = {str(k): d.to(self.device) for k, d in discriminators.items()}
        make_opt_g = make_opt_g or _default_adamw
        make_opt_d = make_opt_d or _default_adamw
        self.opt_g = make_opt_g(list(self.generator.parameters()))
        self.opt_d = make_opt_d([p for d in self.discriminators.values() for p in d.parameters()])
        if settings.lr_schedule == "cosine":  # Vocos: cosine to 0 at max_steps, a step each step
            horizon = max(1, settings.max_steps)

            def cosine(step: int) -> float:  # a closed form of the step: resumes exactly, stays 0 after
                return 0.5 * (1.0 + math.cos(math.pi * min(step, horizon) / horizon))

            self.sched_g = LambdaLR(self.opt_g, cosine)
            self.sched_d = LambdaLR(self.opt_d, cosine)
            self.lr_decay_every = 1
        else:
            self.sched_g = ExponentialLR(self.opt_g, gamma=settings.lr_decay)
            self.sched_d = ExponentialLR(self.opt_d, gamma=settings.lr_decay)
            self.lr_decay_every = (settings.lr_decay_every if settings.lr_decay_every is not None
                                   else max(1, math.ceil(len(sampler) / settings.batch_size)))
        loss_cfg = dataclasses.replace(self.mel_config, fmax=settings.loss_fmax)
        self.loss_mel = LogMel(loss_cfg).to(self.device)
        self.loss_stft = MultiResolutionSTFTLoss().to(self.device)
        self._window = front_end_window(self.mel_config, torch.float32).to(self.device)
        self.gan_loss = GANLoss(settings.gan_mode)
        self.checkpoints = CheckpointManager(self.run_dir, keep_last=settings.keep_last)
        self.precision = settings.precision
        self.example = example
        self.step = 0

    # ------------------------------------------------------------- state
    def _discriminators(self) -> dict[str, SavableModule]:
        return self.discriminators

    def state_dict(self) -> dict[str, Any]:
        """The full training state (see the module docstring for the keys)."""
        return {
            "format": VOCODER_CHECKPOINT_FORMAT,
            "step": self.step,
            "model": model_payload(self.generator),
            "discriminators": {k: model_payload(d) for k, d in self._discriminators().items()},
            "optimizers": {"generator": self.opt_g.state_dict(), "discriminator": self.opt_d.state_dict()},
            "schedulers": {"generator": self.sched_g.state_dict(), "discriminator": self.sched_d.state_dict()},
            "rng": capture_rng_state(),
            "sampler": self.sampler.state_dict(),
            "mel_config": self.mel_config.to_dict(),
            "settings": dataclasses.asdict(self.settings),
            "config": self.config,
        }

    def load_state_dict(self, state: Mapping[str, Any], source: Path) -> None:
        """Restore everything from a checkpoint ``state`` read from ``source``."""
        self.mel_config.check_same(MelConfig.from_dict(state["mel_config"]), what=f"checkpoint {source}")
        nets: dict[str, tuple[SavableModule, Mapping[str, Any]]] = {
            "generator": (self.generator, state["model"]),
        }
        for k, d in self._discriminators().items():
            if k not in state["discriminators"]:
                raise CheckpointError(source, f"holds no discriminator {k!r} (it has {sorted(state['discriminators'])})")
            nets[k] = (d, state["discriminators"][k])
        for name, (net, payload) in nets.items():
            desc = {k: v for k, v in payload.items() if k != "state_dict"}
            if desc != net.describe():
                raise CheckpointError(source, f"holds a {name} ({desc.get('class')}) with other settings than configured")
        for net, payload in nets.values():
            net.load_state_dict(payload["state_dict"])
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.opt_d.load_state_dict(state["optimizers"]["discriminator"])
        self.sched_g.load_state_dict(state["schedulers"]["generator"])
        self.sched_d.load_state_dict(state["schedulers"]["discriminator"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng_state(state["rng"])
        self.step = int(state["step"])

    def _load_last(self) -> dict[str, Any] | None:
        last = self.checkpoints.last_path
        if not last.exists():
            return None
        return load_vocoder_training_checkpoint(last, map_location=self.device)

    def _run_config(self) -> Mapping[str, Any]:
        return self.config

    def _mel_config(self) -> MelConfig:
        return self.mel_config

    # ------------------------------------------------------------- step
    def _discriminators_frozen(self) -> contextlib.AbstractContextManager[None]:
        return frozen(p for d in self.discriminators.values() for p in d.parameters())

    def _judge(self, real: Tensor, fake: Tensor) -> dict[str, tuple[list[Tensor], list[Tensor], Any, Any]]:
        """Both discriminators on ``[real; fake]`` in one batch, split back per half."""
        both = torch.cat([real, fake], dim=0)
        n = real.shape[0]
        out = {}
        for name, disc in self._discriminators().items():
            with self._autocast():
                logits, fmaps = disc(both)
            logits = [x.float() for x in logits]
            fmaps = [[f.float() for f in fm] for fm in fmaps]
            out[name] = ([x[:n] for x in logits], [x[n:] for x in logits],
                         [[f[:n] for f in fm] for fm in fmaps], [[f[n:] for f in fm] for fm in fmaps])
        return out

    def train_step(self) -> dict[str, Tensor]:
        """One D step and one G step on a fresh batch; returns the (detached) losses.

        Before ``disc_start_step`` only the generator trains, on ``lambda_mel * L_mel``.
        """
        s = self.settings
        wav, mel = (t.to(self.device, non_blocking=True) for t in self.sampler.next_batch())
        zero = wav.new_zeros(())
        edge = self.mel_config.n_fft // (2 * self.mel_config.hop_length)
        magnitude_net = getattr(self.generator, "magnitude_net", None)
        mag_loss, phase_loss = zero, zero
        if hasattr(self.generator, "spectrum"):  # Vocos: losses on the predicted spectrum too
            with self._autocast():
                log_mag, phase = self.generator.spectrum(mel)
            fake = self.generator.synthesize(log_mag.float(), phase.float())
            if s.lambda_magnitude > 0 or s.lambda_phase > 0:
                target = self._target_spectrum(wav)
                mag_loss = magnitude_loss(log_mag, target.abs(), edge_frames=edge)
                if s.lambda_phase > 0 and getattr(self.generator, "learns_phase", True):
                    # a summed, locked or pghi phase has no parameters to train: no phase loss for it
                    # an integrated phase starts each segment at an arbitrary offset: no absolute term
                    phase_loss = spectrum_phase_loss(
                        phase, target, edge_frames=edge,
                        instantaneous=getattr(self.generator, "phase_mode", "direct") == "direct")
        else:
            source = None
            if magnitude_net is not None:  # Griffin-Lim source: learned magnitude, its own loss
                log_mag = magnitude_net(mel)
                # loss_mel differs from the input features only in fmax, which all-bin magnitudes ignore
                mag_loss = magnitude_loss(log_mag, linear_magnitude(wav, self.loss_mel), edge_frames=edge)
                source = self.generator.make_source(mel, log_mag.detach())
            with self._autocast():
                fake = self.generator(mel) if source is None else self.generator(mel, source)
        fake = fake.float()
        adversarial = self.step >= s.disc_start_step
        names = list(self.discriminators)

        # 1. discriminators on real vs detached fake (a random window of each, if set)
        d_losses = dict.fromkeys(names, zero)
        d_loss = zero
        if adversarial:
            real_d, fake_d = self._disc_windows(wav, fake)
            judged = self._judge(real_d, fake_d.detach())
            d_losses = {name: self.gan_loss.discriminator_loss(r, f) for name, (r, f, _, _) in judged.items()}
            d_loss = torch.stack(list(d_losses.values())).sum()
            self._check_finite({"discriminator": d_loss})
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()

        # 2. generator: adversarial + feature matching + mel L1 (+ extras), discriminators frozen
        mel_loss = mel_l1_loss(self.loss_mel(wav), self.loss_mel(fake))
        stft_loss = self.loss_stft(wav, fake) if s.lambda_stft > 0 else zero
        adv, fm = dict.fromkeys(names, zero), dict.fromkeys(names, zero)
        with self._discriminators_frozen():
            if adversarial:
                judged = self._judge(real_d, fake_d)
                adv = {name: self.gan_loss.generator_loss(f) for name, (_, f, _, _) in judged.items()}
                fm = {name: feature_matching_loss([[x.detach() for x in m] for m in rf], ff)
                      for name, (_, _, rf, ff) in judged.items()}
            g_loss = (torch.stack(list(adv.values())).sum() + s.lambda_fm * torch.stack(list(fm.values())).sum()
                      + s.lambda_mel * mel_loss + s.lambda_stft * stft_loss
                      + s.lambda_magnitude * mag_loss + s.lambda_phase * phase_loss)
            self._check_finite({"generator": g_loss})
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        self.opt_g.step()

        self.step += 1
        if self.step % self.lr_decay_every == 0:
            self.sched_g.step()
            with warnings.catch_warnings():
                # before disc_start_step opt_d has not stepped yet; its rate still decays per epoch
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                self.sched_d.step()
        return {
            "g_total": g_loss.detach(), **{f"g_adv_{n}": adv[n].detach() for n in names},
            **{f"fm_{n}": fm[n].detach() for n in names}, "mel_l1": mel_loss.detach(),
            "stft": stft_loss.detach(), "magnitude": mag_loss.detach(), "phase": phase_loss.detach(),
            "d_total": d_loss.detach(), **{f"d_{n}": d_losses[n].detach() for n in names},
        }

    def _disc_windows(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """The same random ``disc_segment_size`` window of each real and generated segment
        (both whole if unset); the offsets depend only on the sampler's seed (restored on
        resume) and the step."""
        size = self.settings.disc_segment_size
        length = real.shape[-1]
        if size is None or size >= length:
            return real, fake
        gen = torch.Generator().manual_seed(self.sampler.seed * 1_000_003 + self.step)
        start = torch.randint(0, length - size + 1, (real.shape[0], 1), generator=gen)
        index = (start + torch.arange(size)).to(real.device)
        return real.gather(-1, index), fake.gather(-1, index)

    def _target_spectrum(self, wav: Tensor) -> Tensor:
        """The complex STFT of real segments with the front end's window, hop and centring."""
        cfg = self.mel_config
        return torch.stft(wav.float(), cfg.n_fft, cfg.hop_length, cfg.n_fft, self._window,
                          center=cfg.center, pad_mode=cfg.pad_mode, return_complex=True)

    # ------------------------------------------------------------- fit hooks
    def _fit_start(self) -> None:
        for net in (self.generator, *self.discriminators.values()):
            net.train()

    def _make_logger(self) -> TrainLogger:
        return TrainLogger(self.run_dir / "tb", enabled=True, vocode=self._vocode,
                           sample_rate=self.mel_config.sample_rate)

    def _postfix(self, logs: Mapping[str, float]) -> dict[str, str]:
        return {"mel": f"{logs['mel_l1']:.3f}", "g": f"{logs['g_total']:.2f}", "d": f"{logs['d_total']:.2f}"}

    def _after_step(self, logger: TrainLogger, out: Any) -> None:
        if self.settings.audio_every and self.step % self.settings.audio_every == 0:
            self._log_example(logger)

    @torch.no_grad()
    def _vocode(self, log_mel: np.ndarray) -> np.ndarray:
        """The generator as TensorBoard's ``vocode`` callable (eval mode, no grad)."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            x = torch.as_tensor(log_mel, dtype=torch.float32, device=self.device)
            return self.generator(x).float().cpu().numpy()
        finally:
            self.generator.train(was_training)

    @torch.no_grad()
    def _log_example(self, logger: TrainLogger) -> None:
        """Generated audio of the example utterance, and its log-mel beside the real one."""
        if self.example is None:
            return
        wav, mel = self.example
        fake = torch.from_numpy(self._vocode(mel.cpu().numpy()))[: wav.numel()]
        logger.audio(self.step, "audio/generated", mel.cpu().numpy())
        fake_mel = LogMel(self.mel_config)(fake)
        frames = min(fake_mel.shape[-1], mel.shape[-1])
        logger.mel_images(self.step, "mels/example",
                          {"real": mel.cpu()[:, :frames], "generated": fake_mel[:, :frames]})


__all__ = [
    "VOCODER_CHECKPOINT_FORMAT",
    "SegmentSampler",
    "VocoderSettings",
    "VocoderTrainResult",
    "VocoderTrainer",
    "load_vocoder_training_checkpoint",
]
