"""What the VC and vocoder training loops share: :class:`TrainerBase`.

Both loops train a generator against discriminators, step by step, in a run folder. The
machinery around their steps is the same and lives here once:

* **autocast** (:meth:`TrainerBase._autocast`): fp32 = none, bf16 / fp16 = ``torch.autocast``
  on the training device;
* **the non-finite check** (:meth:`TrainerBase._check_finite`): raises
  :class:`~voiceconv.errors.TrainingDiverged` naming the step and the bad losses before the
  optimizer step that would apply them; the last good checkpoint stays as it was;
* **run files** (:meth:`TrainerBase.write_run_files`): ``config.yaml`` and ``mel_config.json``
  (plus whatever :meth:`TrainerBase._write_extra_run_files` adds), atomically;
* **checkpoints and resume** (:meth:`TrainerBase.save_checkpoint`,
  :meth:`TrainerBase.resume_if_possible`) through a
  :class:`~voiceconv.training.checkpoint.CheckpointManager`;
* **the fit loop** (:meth:`TrainerBase.fit`): resume, write the run files, then step until
  ``max_steps`` or a time limit (``max_minutes`` wall clock, ``max_cpu_minutes`` of this
  process's CPU time), with tqdm, TensorBoard scalars every ``log_every`` steps, periodic
  examples and checkpoints every ``ckpt_every`` steps and at the end.

A loop subclass keeps only what differs: its networks and ``train_step``, its checkpoint
content (``state_dict`` / ``load_state_dict``), its examples and, for the VC loop, the
distributed hooks (:meth:`TrainerBase._is_main`, :meth:`TrainerBase._all_true`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import TrainingDiverged
from voiceconv.training.checkpoint import CheckpointManager
from voiceconv.training.logging import StepRate, TrainLogger, train_scalars
from voiceconv.utils.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :meth:`TrainerBase.fit` returns."""

    step: int  # optimizer steps completed
    last_checkpoint: Path | None  # run_dir/checkpoints/last.ckpt (None if never saved)
    logs: dict[str, float] = field(default_factory=dict)  # the last logged losses
    stopped: bool = False  # True when ``stop`` ended the run before max_steps


class TrainerBase:
    """The shared loop machinery (see the module docstring).

    A subclass sets ``settings`` (with ``max_steps``, ``ckpt_every``, ``log_every``,
    ``progress`` and optionally ``max_minutes`` / ``max_cpu_minutes``), ``run_dir``,
    ``checkpoints``, ``device``, ``precision``, ``opt_g``, ``opt_d`` and ``step``, and
    implements :meth:`train_step`, :meth:`state_dict`, :meth:`load_state_dict`,
    :meth:`_run_config` and :meth:`_mel_config`.
    """

    settings: Any
    run_dir: Path
    checkpoints: CheckpointManager
    device: torch.device
    precision: str
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int

    # ------------------------------------------------------------ hooks
    def train_step(self) -> Any:
        """One optimisation step; returns what :meth:`_step_logs` and :meth:`_after_step` read."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any], source: Path) -> None:
        raise NotImplementedError

    def _run_config(self) -> Mapping[str, Any]:
        """The resolved run configuration written to ``config.yaml``."""
        raise NotImplementedError

    def _mel_config(self) -> MelConfig:
        """The features of the run, written to ``mel_config.json``."""
        raise NotImplementedError

    def _write_extra_run_files(self) -> None:
        """Run files besides ``config.yaml`` and ``mel_config.json`` (none by default)."""

    def _load_last(self) -> dict[str, Any] | None:
        """The state in ``last.ckpt`` (checked by the subclass's format), or None."""
        return self.checkpoints.load_last(map_location=self.device)

    def _is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0 under DDP)."""
        return True

    def _all_true(self, value: bool) -> bool:
        """``value`` agreed across processes (single process: itself)."""
        return value

    def _fit_start(self) -> None:
        """Put the networks in training mode (and wrap them, where a loop does)."""

    def _step_logs(self, out: Any) -> Mapping[str, Tensor]:
        """The detached scalar losses of a :meth:`train_step` result."""
        return out

    def _postfix(self, logs: Mapping[str, float]) -> dict[str, str]:
        """The tqdm postfix of the last logged losses."""
        return {k: f"{logs[k]:.3f}" for k in ("g_total", "d_total") if k in logs}

    def _after_step(self, logger: TrainLogger, out: Any) -> None:
        """Periodic examples (images, audio) after a step; nothing by default."""

    def _make_logger(self) -> TrainLogger:
        return TrainLogger(self.run_dir / "tb", enabled=self._is_main(),
                           sample_rate=self._mel_config().sample_rate)

    # ------------------------------------------------------------ shared machinery
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast of the networks for ``precision`` bf16 / fp16; nothing for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _check_finite(self, losses: Mapping[str, Tensor]) -> None:
        """Raise :class:`TrainingDiverged` (naming the step and the losses) if any is not finite."""
        finite = all(bool(torch.isfinite(v.detach()).all()) for v in losses.values())
        if self._all_true(finite):
            return
        bad = [name for name, v in losses.items() if not bool(torch.isfinite(v.detach()).all())]
        what = ", ".join(f"{n} loss ({losses[n].item()})" for n in bad) or "loss on another rank"
        last = self.checkpoints.last_path
        kept = f"last good checkpoint kept: {last}" if last.exists() else "no checkpoint written yet"
        raise TrainingDiverged(f"step {self.step + 1}: non-finite {what}; training stopped, {kept}")

    def write_run_files(self) -> None:
        """``config.yaml``, ``mel_config.json`` and the loop's extra files (main process only)."""
        if not self._is_main():
            return
        from omegaconf import OmegaConf

        atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(dict(self._run_config()))))
        atomic_write_json(self.run_dir / "mel_config.json", self._mel_config().to_dict())
        self._write_extra_run_files()

    def save_checkpoint(self) -> Path | None:
        """Write ``step_XXXXXXX.ckpt`` and ``last.ckpt`` atomically; returns the step file.

        Every process builds the state (it may be collective), the main one writes it.
        """
        state = self.state_dict()
        return self.checkpoints.save(state, self.step) if self._is_main() else None

    def resume_if_possible(self) -> bool:
        """Load ``run_dir/checkpoints/last.ckpt`` if it exists. Returns True if resumed."""
        state = self._load_last()
        if state is None:
            return False
        self.load_state_dict(state, self.checkpoints.last_path)
        return True

    def _out_of_time(self, wall0: float, cpu0: float) -> bool:
        """Whether this fit has used ``max_minutes`` of wall time or ``max_cpu_minutes`` of CPU."""
        s = self.settings
        wall, cpu = getattr(s, "max_minutes", None), getattr(s, "max_cpu_minutes", None)
        return bool((wall is not None and time.perf_counter() - wall0 >= 60 * wall)
                    or (cpu is not None and time.process_time() - cpu0 >= 60 * cpu))

    def fit(
        self,
        stop: Callable[[], bool] | None = None,
        on_step: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> TrainResult:
        """Resume if possible, train until ``max_steps`` (or a time limit), checkpoint, return.

        ``stop`` (polled before every step; all processes agree) ends the run early and
        cleanly: the current step is checkpointed and the result says ``stopped``, so the
        same command resumes it. ``on_step(step, losses)`` is called after every step
        (main process) for live progress (the web app).
        """
        from tqdm.auto import tqdm

        s = self.settings
        resumed = self.resume_if_possible()
        self.write_run_files()
        if resumed and self._is_main():
            log.info("resumed %s at step %d", self.run_dir, self.step)
        if self.step >= s.max_steps:
            last = self.checkpoints.last_path
            return TrainResult(self.step, last if last.exists() else None, {})
        self._fit_start()
        logger = self._make_logger()
        bar = tqdm(total=s.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self._is_main() and s.progress))
        last_logs: dict[str, float] = {}
        last_path: Path | None = None  # what this fit wrote last
        rate = StepRate(self.step)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        logs: Mapping[str, Tensor] = {}
        saved_at = self.step  # a resumed step is on disk already
        stopped = False
        try:
            while self.step < s.max_steps:
                if stop is not None and not self._all_true(not stop()):
                    stopped = True
                    if saved_at != self.step:
                        last_path = self.save_checkpoint() or last_path
                    break
                out = self.train_step()
                logs = self._step_logs(out)
                bar.update(1)
                if s.log_every and self.step % s.log_every == 0:
                    last_logs = {k: float(v) for k, v in logs.items()}
                    logger.scalars(self.step, {
                        **train_scalars(last_logs, self.opt_g, self.opt_d, rate(self.step)),
                        "time/wall_minutes": (time.perf_counter() - wall0) / 60,
                        "time/cpu_minutes": (time.process_time() - cpu0) / 60})
                    bar.set_postfix(self._postfix(last_logs))
                self._after_step(logger, out)
                out_of_time = self._out_of_time(wall0, cpu0)
                if self.step % s.ckpt_every == 0 or self.step == s.max_steps or out_of_time:
                    last_path = self.save_checkpoint() or last_path
                    saved_at = self.step
                if on_step is not None and self._is_main():
                    on_step(self.step, {k: float(v) for k, v in logs.items()})
                if out_of_time:
                    log.info("time limit reached at step %d (%.1f min wall, %.1f min CPU)", self.step,
                             (time.perf_counter() - wall0) / 60, (time.process_time() - cpu0) / 60)
                    break
        finally:
            bar.close()
            logger.close()
        if not last_logs:
            last_logs = {k: float(v) for k, v in logs.items()}
        last = self.checkpoints.last_path
        return TrainResult(self.step, last if last_path is not None or last.exists() else None, last_logs,
                           stopped)


__all__ = ["TrainResult", "TrainerBase"]
