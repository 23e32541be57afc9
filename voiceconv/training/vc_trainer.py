"""The CycleGAN-VC training loop.

One training step (:meth:`VCTrainer.train_step`), as in CycleGAN-VC2 / MaskCycleGAN-VC:

1. draw a batch of random crops of speaker A and, independently, of speaker B;
2. **generator step** — ``model.generator_step`` runs the forward, cycle (and, while
   its weight is > 0, identity) passes and returns the generator loss; the
   discriminators are frozen for it (single process) or their gradients are thrown
   away before step 3 (DDP, see :mod:`voiceconv.training.distributed`); Adam step on G;
3. **discriminator step** — ``model.discriminator_loss`` judges real crops against the
   DETACHED fakes of step 2 (no generator is re-run); Adam step on D;
4. each optimizer's own learning-rate scheduler steps (constant, then linear decay).

Around it: bf16/fp16 autocast, a non-finite loss check (raises
:class:`~voiceconv.errors.TrainingDiverged`, leaving the last good checkpoint alone),
TensorBoard logging and checkpoints every ``ckpt_every`` steps, all on rank 0.
A run folder that already has ``checkpoints/last.ckpt`` is resumed from it with
every piece of state (weights, both optimizers, both schedulers, grad scaler, all
random generators, crop sampler), so an interrupted run continues the same
trajectory as an uninterrupted one (on the same device type and process count; the
contents of an image pool, ``pool_size > 0``, are not saved — the VC models use none).

Run folder::

    run_dir/config.yaml          resolved configuration
    run_dir/mel_config.json      MelConfig of the features
    run_dir/stats/A.json, B.json per-speaker statistics; stats/speakers.json the names
    run_dir/checkpoints/         step_XXXXXXX.ckpt (newest keep_last) + last.ckpt
    run_dir/tb/                  TensorBoard events
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from voiceconv.audio.mel import MelConfig
from voiceconv.audio.preparation import Preparation
from voiceconv.data.crops import CropSampler
from voiceconv.errors import CheckpointError, ConfigError, TrainingDiverged
from voiceconv.models.base import model_payload
from voiceconv.models.cyclegan import CycleGAN, GeneratorOutput
from voiceconv.training.checkpoint import CHECKPOINT_FORMAT, CheckpointManager
from voiceconv.training.distributed import (
    DistContext,
    all_gather_objects,
    all_true,
    no_sync,
    unwrap,
    wrap_ddp,
)
from voiceconv.training.logging import StepRate, TrainLogger, Vocode, train_scalars
from voiceconv.training.schedules import LinearDecayLR
from voiceconv.training.seeding import capture_rng_state, restore_rng_state, seed_everything
from voiceconv.utils.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

#: the container attributes holding networks (``d2_*`` may be None)
NET_NAMES = ("g_ab", "g_ba", "d_a", "d_b", "d2_a", "d2_b")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


@dataclass
class TrainerSettings:
    """How long and how to train (``conf/trainer/*.yaml``).

    Learning rates are constant until ``decay_start`` and reach 0 at ``total_steps``;
    ``total_steps=None`` means ``max_steps`` and ``decay_start=None`` half of that
    (CycleGAN-VC2: 2e5 iterations, decay over the second 1e5). ``precision="auto"``
    means bf16 autocast on CUDA and fp32 on CPU (the run scripts resolve it per machine
    first, :mod:`voiceconv.training.autotune`). ``identity_fraction``: the identity loss
    is on for this fraction of ``total_steps`` (CycleGAN-VC2: 1e4 of 2e5 = 0.05), so that
    short runs keep the paper's proportion; ``None`` leaves it to the model's
    ``identity_steps``. ``image_every``/``log_every`` = 0 turn that logging off.
    """

    max_steps: int = 200_000
    decay_start: int | None = None
    total_steps: int | None = None
    precision: str = "auto"
    compile: bool = False
    ckpt_every: int = 10_000
    keep_last: int = 3
    log_every: int = 100
    image_every: int = 5_000
    progress: bool = True
    seed: int = 0
    find_unused_parameters: bool = False
    identity_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.identity_fraction is not None and not 0.0 <= self.identity_fraction <= 1.0:
            raise ConfigError(f"trainer.identity_fraction must be in [0, 1] or null, got {self.identity_fraction}")
        if self.max_steps < 0:
            raise ConfigError(f"trainer.max_steps must be >= 0, got {self.max_steps}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.ckpt_every < 1:
            raise ConfigError(f"trainer.ckpt_every must be >= 1, got {self.ckpt_every}")

    @property
    def schedule_end(self) -> int:
        """The step at which both learning rates reach 0."""
        return self.max_steps if self.total_steps is None else self.total_steps

    @property
    def identity_end(self) -> int | None:
        """First step without the identity loss (``identity_fraction`` of the schedule), or
        None when the model's own ``identity_steps`` decide."""
        if self.identity_fraction is None:
            return None
        return round(self.identity_fraction * self.schedule_end)

    @property
    def schedule_knee(self) -> int:
        """The last step at the base learning rate (linear decay after it)."""
        return self.schedule_end // 2 if self.decay_start is None else self.decay_start


@dataclass
class RunInfo:
    """What a checkpoint must carry besides training state, for conversion later."""

    mel_config: MelConfig
    stats: Mapping[str, Any]  # {"A": SpeakerStats, "B": SpeakerStats}
    speakers: Mapping[str, str]  # {"A": name, "B": name}
    config: dict[str, Any] = field(default_factory=dict)  # resolved run configuration
    preparation: Preparation | None = None  # trimming/level of the training audio, for conversion


class StepOutput(NamedTuple):
    """What :meth:`VCTrainer.train_step` returns."""

    logs: dict[str, Tensor]  # detached scalar losses of both steps
    out: GeneratorOutput  # the generator step's detached fakes and cycles
    real_a: Tensor
    real_b: Tensor


@dataclass
class TrainResult:
    """What :meth:`VCTrainer.fit` returns."""

    step: int  # optimizer steps completed
    last_checkpoint: Path | None  # run_dir/checkpoints/last.ckpt (None if never saved)
    logs: dict[str, float]  # the last logged losses
    stopped: bool = False  # True when ``stop`` ended the run before max_steps


class VCTrainer:
    """Trains a :class:`~voiceconv.models.cyclegan.CycleGAN` (CycleGAN-VC2, MaskCycleGAN-VC).

    Args:
        model: the container; its nets are moved to ``ctx.device``.
        make_opt_g, make_opt_d: ``params -> Optimizer`` (Hydra ``_partial_`` Adam:
            lr 2e-4 for G, 1e-4 for D, betas (0.5, 0.999) in the papers).
        sampler: crops of the two speakers (rank-aware, resumable).
        settings: :class:`TrainerSettings`.
        run_dir: the run folder (see the module docstring).
        info: mel config, speaker statistics and names, resolved config.
        ctx: distributed context (single process by default).
        vocode: optional ``denormalised log-mel -> waveform`` for audio in TensorBoard.
    """

    def __init__(
        self,
        model: CycleGAN,
        make_opt_g: OptimizerFactory,
        make_opt_d: OptimizerFactory,
        sampler: CropSampler,
        settings: TrainerSettings,
        run_dir: str | os.PathLike[str],
        info: RunInfo,
        ctx: DistContext | None = None,
        vocode: Vocode | None = None,
    ) -> None:
        self.ctx = ctx or DistContext()
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.info = info
        self.sampler = sampler
        self.vocode = vocode
        self.model = model.to(self.ctx.device)
        self.opt_g = make_opt_g(list(model.generator_parameters()))
        self.opt_d = make_opt_d(list(model.discriminator_parameters()))
        knee, end = settings.schedule_knee, settings.schedule_end
        self.sched_g = LinearDecayLR(self.opt_g, knee, end)
        self.sched_d = LinearDecayLR(self.opt_d, knee, end)
        self.precision = self._resolve_precision(settings.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.checkpoints = CheckpointManager(self.run_dir, keep_last=settings.keep_last)
        self.step = 0
        self._wrapped = False

    # ----------------------------------------------------------------- setup
    def _resolve_precision(self, precision: str) -> str:
        if precision == "auto":
            return "bf16" if self.ctx.device.type == "cuda" else "fp32"
        if precision == "fp16" and self.ctx.device.type != "cuda":
            raise ConfigError("trainer.precision=fp16 needs CUDA (use bf16 or fp32 on CPU)")
        return precision

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.ctx.device.type, dtype=dtype)

    def _nets(self) -> dict[str, nn.Module]:
        return {n: getattr(self.model, n) for n in NET_NAMES if getattr(self.model, n, None) is not None}

    def _wrap_nets(self) -> None:
        """Put each net under DDP (several processes) and/or torch.compile, in place."""
        for name, net in self._nets().items():
            net = wrap_ddp(net, self.ctx, self.settings.find_unused_parameters)
            if self.settings.compile:
                net = torch.compile(net)
            setattr(self.model, name, net)
        self._wrapped = True

    @contextlib.contextmanager
    def _unwrapped(self) -> Iterator[CycleGAN]:
        """The model with its plain nets (checkpoint keys without ``module.``/``_orig_mod.``)."""
        wrapped = self._nets()
        for name, net in wrapped.items():
            setattr(self.model, name, unwrap(net))
        try:
            yield self.model
        finally:
            for name, net in wrapped.items():
                setattr(self.model, name, net)

    def _discriminators(self) -> list[nn.Module]:
        return [net for name, net in self._nets().items() if name.startswith("d")]

    @contextlib.contextmanager
    def _discriminators_out_of_g_step(self) -> Iterator[None]:
        """Single process: freeze D weights. DDP: keep them trainable, skip their all-reduce."""
        if self.ctx.distributed:
            with no_sync(self._discriminators()):
                yield
        else:
            with self.model.discriminators_frozen():
                yield

    def write_run_files(self) -> None:
        """Write config.yaml, mel_config.json and stats/ into the run folder (rank 0)."""
        if not self.ctx.is_main:
            return
        from omegaconf import OmegaConf

        atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.info.config)))
        atomic_write_json(self.run_dir / "mel_config.json", self.info.mel_config.to_dict())
        for role, stats in self.info.stats.items():
            atomic_write_json(self.run_dir / "stats" / f"{role}.json", stats.to_dict())
        atomic_write_json(self.run_dir / "stats" / "speakers.json", dict(self.info.speakers))

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The full training state (see :mod:`voiceconv.training.checkpoint`).

        Collective under DDP: every rank must call it (RNG states are gathered).
        """
        rng_per_rank = all_gather_objects(self.ctx, capture_rng_state())
        with self._unwrapped() as model:
            payload = model_payload(model)
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": payload,
            "optimizers": {"generator": self.opt_g.state_dict(), "discriminator": self.opt_d.state_dict()},
            "schedulers": {"generator": self.sched_g.state_dict(), "discriminator": self.sched_d.state_dict()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_per_rank,
            "sampler": self.sampler.state_dict(),
            "world_size": self.ctx.world_size,
            "config": self.info.config,
            "mel_config": self.info.mel_config.to_dict(),
            "stats": {role: s.to_dict() for role, s in self.info.stats.items()},
            "speakers": dict(self.info.speakers),
            "preparation": self.info.preparation.to_dict() if self.info.preparation else None,
        }

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current step (all ranks call; rank 0 writes). Returns the file."""
        state = self.state_dict()
        path = self.checkpoints.save(state, self.step) if self.ctx.is_main else None
        return path

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Restore everything from a checkpoint ``state`` read from ``source``."""
        if self._wrapped:
            raise RuntimeError("load_state_dict must run before the nets are wrapped")
        saved_mel = MelConfig.from_dict(state["mel_config"])
        self.info.mel_config.check_same(saved_mel, what=f"checkpoint {source}")
        if dict(state["speakers"]) != dict(self.info.speakers):
            raise CheckpointError(
                source, f"trained on speakers {dict(state['speakers'])}, this run uses {dict(self.info.speakers)}"
            )
        desc = {k: v for k, v in state["model"].items() if k != "state_dict"}
        mine = self.model.describe()
        if desc["class"] != mine["class"]:
            raise CheckpointError(source, f"holds model {desc['class']}, this run configures {mine['class']}")
        saved = type(self.model).upgrade_hparams(dict(desc.get("hparams", {})))
        differ = sorted(k for k in set(saved) | set(mine["hparams"]) if saved.get(k) != mine["hparams"].get(k))
        if differ:
            what = ", ".join(f"{k}={saved.get(k)!r} (configured {mine['hparams'].get(k)!r})" for k in differ)
            raise CheckpointError(source, f"holds {desc['class']} with {what}; set model.<name> to resume it")
        self.model.load_state_dict(state["model"]["state_dict"])
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.opt_d.load_state_dict(state["optimizers"]["discriminator"])
        self.sched_g.load_state_dict(state["schedulers"]["generator"])
        self.sched_d.load_state_dict(state["schedulers"]["discriminator"])
        knee, end = self.settings.schedule_knee, self.settings.schedule_end
        changed = (self.sched_g.decay_start, self.sched_g.total_steps) != (knee, end)
        if changed and self.ctx.is_main:
            log.warning("learning-rate schedule changed on resume: now constant until step %d, "
                        "0 at step %d", knee, end)
        self.sched_g.reschedule(knee, end)
        self.sched_d.reschedule(knee, end)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        rngs = state.get("rng") or []
        if len(rngs) == self.ctx.world_size:
            restore_rng_state(rngs[self.ctx.rank])
        else:
            if self.ctx.is_main:
                log.warning("checkpoint made with %d processes, resuming with %d: random generators"
                            " reseeded (the trajectory will differ)", len(rngs), self.ctx.world_size)
            seed_everything(self.settings.seed + int(state["step"]), self.ctx.rank)
        self.step = int(state["step"])

    def resume_if_possible(self) -> bool:
        """Load ``run_dir/checkpoints/last.ckpt`` if it exists. Returns True if resumed."""
        state = self.checkpoints.load_last(map_location=self.ctx.device)
        if state is None:
            return False
        self.load_state_dict(state, self.checkpoints.last_path)
        return True

    # ------------------------------------------------------------------ step
    def _check_finite(self, losses: Mapping[str, Tensor]) -> None:
        finite = all(bool(torch.isfinite(v.detach()).all()) for v in losses.values())
        if all_true(self.ctx, finite):
            return
        bad = [name for name, v in losses.items() if not bool(torch.isfinite(v.detach()).all())]
        what = ", ".join(f"{n} loss ({losses[n].item()})" for n in bad) or "loss on another rank"
        last = self.checkpoints.last_path
        kept = f"last good checkpoint kept: {last}" if last.exists() else "no checkpoint written yet"
        raise TrainingDiverged(f"step {self.step + 1}: non-finite {what}; training stopped, {kept}")

    def _backward_and_step(self, loss: Tensor, optimizer: Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)

    def _identity_weight(self) -> float | None:
        end = self.settings.identity_end
        if end is None:
            return None
        return self.model.lambda_identity if self.step < end else 0.0

    def train_step(self) -> StepOutput:
        """One G step and one D step on a fresh batch (see the module docstring)."""
        dev = self.ctx.device
        real_a, real_b = (t.to(dev, non_blocking=True) for t in self.sampler.next_batch())

        # 1. generator step (D weights not updated here)
        with self._discriminators_out_of_g_step(), self._autocast():
            out = self.model.generator_step(real_a, real_b, self.step, self._identity_weight())
        self._check_finite({"generator": out.loss})
        self.opt_g.zero_grad(set_to_none=True)
        self._backward_and_step(out.loss, self.opt_g)

        # 2. discriminator step on the detached fakes of step 1
        self.opt_d.zero_grad(set_to_none=True)  # also drops D grads left by step 1 under DDP
        with self._autocast():
            d_loss, d_logs = self.model.discriminator_loss(real_a, real_b, out)
        self._check_finite({"discriminator": d_loss})
        self._backward_and_step(d_loss, self.opt_d)

        # 3. schedules: each optimizer its own
        self.sched_g.step()
        self.sched_d.step()
        if self.scaler is not None:
            self.scaler.update()
        self.step += 1
        return StepOutput({**out.logs, **d_logs}, out, real_a, real_b)

    # ------------------------------------------------------------------- fit
    def fit(
        self,
        stop: Callable[[], bool] | None = None,
        on_step: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> TrainResult:
        """Resume if possible, train until ``max_steps``, checkpoint, return the result.

        ``stop`` (polled after every step; under DDP the ranks agree) ends the run
        early and cleanly: the current step is checkpointed and the result says
        ``stopped``, so that the same command resumes it. ``on_step(step, losses)``
        is called after every step (rank 0) for live progress (the web app).
        """
        from tqdm.auto import tqdm

        s = self.settings
        resumed = self.resume_if_possible()
        self.write_run_files()
        if resumed and self.ctx.is_main:
            log.info("resumed %s at step %d", self.run_dir, self.step)
        if self.step >= s.max_steps:
            last = self.checkpoints.last_path
            return TrainResult(self.step, last if last.exists() else None, {})

        self._wrap_nets()
        self.model.train()
        logger = TrainLogger(self.run_dir / "tb", enabled=self.ctx.is_main, vocode=self.vocode,
                             sample_rate=self.info.mel_config.sample_rate)
        bar = tqdm(total=s.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self.ctx.is_main and s.progress))
        last_logs: dict[str, float] = {}
        logs: Mapping[str, Any] = {}
        rate = StepRate(self.step)
        saved_at = self.step  # a resumed step is on disk already
        stopped = False
        try:
            while self.step < s.max_steps:
                if stop is not None and not all_true(self.ctx, not stop()):
                    stopped = True
                    if saved_at != self.step:
                        self.save_checkpoint()
                    break
                logs, out, real_a, real_b = self.train_step()
                bar.update(1)
                if s.log_every and self.step % s.log_every == 0:
                    last_logs = {k: float(v) for k, v in logs.items()}
                    logger.scalars(self.step, train_scalars(last_logs, self.opt_g, self.opt_d, rate(self.step)))
                    bar.set_postfix(g=f"{last_logs.get('g_total', math.nan):.3f}",
                                    d=f"{last_logs.get('d_total', math.nan):.3f}")
                if s.image_every and self.step % s.image_every == 0:
                    self._log_examples(logger, real_a, real_b, out)
                if self.step % s.ckpt_every == 0 or self.step == s.max_steps:
                    self.save_checkpoint()
                    saved_at = self.step
                if on_step is not None and self.ctx.is_main:
                    on_step(self.step, {k: float(v) for k, v in logs.items()})
        finally:
            bar.close()
            logger.close()
        if not last_logs:
            last_logs = {k: float(v) for k, v in logs.items()}
        last = self.checkpoints.last_path
        return TrainResult(self.step, last if last.exists() else None, last_logs, stopped)

    @torch.no_grad()
    def _log_examples(
        self, logger: TrainLogger, real_a: Tensor, real_b: Tensor, out: GeneratorOutput
    ) -> None:
        """Mel images (and audio, if a vocoder is injected) of the first crop each way."""
        if not self.ctx.is_main:
            return
        stats_a, stats_b = self.info.stats["A"], self.info.stats["B"]
        for tag, src, conv, cyc, s_src, s_tgt in (
            ("A2B", real_a[0], out.fake_b[0], out.cycle_a[0], stats_a, stats_b),
            ("B2A", real_b[0], out.fake_a[0], out.cycle_b[0], stats_b, stats_a),
        ):
            mels = {"source": src.float().cpu(), "converted": conv.float().cpu(), "cycled": cyc.float().cpu()}
            logger.mel_images(self.step, f"mels/{tag}", mels)
            if logger.vocode is not None:
                logger.audio(self.step, f"audio/{tag}/source", s_src.denormalize(mels["source"].numpy()))
                logger.audio(self.step, f"audio/{tag}/converted", s_tgt.denormalize(mels["converted"].numpy()))
