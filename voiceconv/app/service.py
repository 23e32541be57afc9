"""The web app's work, without the web: conversion, one training job, evaluation.

:class:`AppService` is what the Gradio page and its API call; it is plain Python so
that it can be tested without a browser. It reuses the library: conversion is
:class:`~voiceconv.conversion.VoiceConverter` (vocoder choice and its MelConfig check
included), training is :func:`voiceconv.training.vc_run.train_vc` on a Hydra-composed config
(``stop``/``on_step`` give the Stop button and live progress), evaluation is
:func:`~voiceconv.evaluation.report.evaluate_folders` + ``write_report``.

Folders: it reads server paths only inside ``read_roots`` (the runs folder, the work
folder and any ``--data`` folder) and writes only into the runs folder (new runs,
evaluation reports) and its work folder (converted files, images, zips, uploads).
Every user mistake is a :class:`~voiceconv.errors.VoiceconvError` with one line.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceconv.app.runs import RunEntry, RunIndex, resolve_inside
from voiceconv.errors import ConfigError, FileProblem, VoiceconvError
from voiceconv.utils.atomic import atomic_path

log = logging.getLogger(__name__)

MODELS = ("maskcyclegan_vc_small", "maskcyclegan_vc", "cyclegan_vc2_small", "cyclegan_vc2")
DIRECTIONS = ("a2b", "b2a")
GRIFFIN_LIM = "griffinlim"
#: Hydra override keys a user may give from the page (never paths: out_dir, data dirs)
OVERRIDE_PREFIXES = ("model.", "trainer.", "mel.", "optimizer.", "seed")
OVERRIDE_DATA_KEYS = ("data.crop_frames", "data.workers", "data.trim_top_db", "data.normalize",
                      "data.short_utterances")
FORBIDDEN_OVERRIDE_PARTS = ("hydra", "out_dir", "dir", "path", "experiment")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class TrainingBusy(VoiceconvError):
    """A second training request while one runs."""


@dataclass(frozen=True)
class ConvertResult:
    """One converted file, its mel images and the time conversion took."""

    output: Path
    input_mel: Path
    output_mel: Path
    seconds: float
    input_seconds: float
    description: str


@dataclass(frozen=True)
class BatchResult:
    """Several converted files in one zip, and a line per input."""

    zip_path: Path | None
    lines: list[str]
    seconds: float
    converted: int
    failed: int


@dataclass(frozen=True)
class EvaluateResult:
    """An evaluation report written into the run folder."""

    markdown: str
    report_json: Path
    plots: list[Path]
    out_dir: Path


@dataclass
class TrainingJob:
    """One training run in a background thread, with what the page shows of it."""

    run_name: str
    run_dir: Path
    max_steps: int
    start_step: int = 0
    state: str = "starting"  # starting | preparing | training | stopping | stopped | finished | failed
    step: int = 0
    message: str = ""
    started: float = field(default_factory=time.time)
    losses: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    step_times: list[tuple[float, int]] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        """True once the thread has ended (finished, stopped or failed)."""
        return self.state in ("stopped", "finished", "failed")

    def on_step(self, step: int, losses: Mapping[str, float]) -> None:
        """The trainer's per-step hook: record step, time and losses."""
        if self.state in ("starting", "preparing"):
            self.state, self.message = "training", ""
        self.step = step
        now = time.perf_counter()
        self.step_times.append((now, step))
        del self.step_times[:-30]
        self.losses.append((step, dict(losses)))

    def steps_per_s(self) -> float | None:
        """Speed over the last (up to) 30 steps."""
        if len(self.step_times) < 2:
            return None
        (t0, s0), (t1, s1) = self.step_times[0], self.step_times[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)

    def summary(self) -> str:
        """One status line: state, step/total, steps/s, ETA, last losses."""
        parts = [f"**{self.run_name}**: {self.state}", f"step {self.step}/{self.max_steps}"]
        rate = self.steps_per_s()
        if rate:
            parts.append(f"{rate:.2f} steps/s")
            if self.state == "training":
                parts.append(f"ETA {_duration((self.max_steps - self.step) / rate)}")
        if self.losses:
            last = self.losses[-1][1]
            parts.append(", ".join(f"{k} {last[k]:.3f}" for k in ("g_total", "d_total", "g_cycle")
                                   if k in last))
        parts.append(f"elapsed {_duration(time.time() - self.started)}")
        text = " | ".join(parts)
        return f"{text}\n\n{self.message}" if self.message else text

    def loss_table(self, max_points: int = 400) -> dict[str, list[Any]]:
        """Columns ``step``, ``loss``, ``value`` (long format, thinned to ``max_points`` steps)."""
        rows = self.losses
        stride = max(1, len(rows) // max_points)
        out: dict[str, list[Any]] = {"step": [], "loss": [], "value": []}
        for step, losses in rows[::stride]:
            for key in ("g_total", "d_total", "g_cycle", "g_identity"):
                if key in losses and np.isfinite(losses[key]):
                    out["step"].append(step)
                    out["loss"].append(key)
                    out["value"].append(losses[key])
        return out


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def check_overrides(lines: str | Sequence[str] | None) -> list[str]:
    """Hydra overrides from the page, one per line; only model/trainer/mel/optimizer/data
    settings (never a path), so that the app keeps to its folders."""
    if lines is None:
        return []
    items = lines.splitlines() if isinstance(lines, str) else list(lines)
    out = []
    for raw in items:
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        key, eq, _ = item.partition("=")
        key = key.strip().lstrip("+~")
        if not eq or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        lowered = key.lower()
        ok = key in ("model", "trainer", "mel", "optimizer") or lowered.startswith(OVERRIDE_PREFIXES) \
            or key in OVERRIDE_DATA_KEYS
        if not ok or any(part in lowered for part in FORBIDDEN_OVERRIDE_PARTS):
            raise ConfigError(f"override {item!r}: only model/trainer/mel/optimizer settings and "
                              f"{', '.join(OVERRIDE_DATA_KEYS)} may be set from the app")
        out.append(item)
    return out


def _display(path: str | Path) -> str:
    """An uploaded file's own name (uploads sit in hashed temp folders)."""
    return Path(path).name


def _named(message: str, path: Path) -> str:
    """``message`` with ``path`` (an upload's temp location) replaced by its file name."""
    return message.replace(str(path), path.name)


class AppService:
    """Runs listing, conversion, one training job at a time, evaluation.

    Args:
        runs_dir: where trained runs are listed and new runs are written.
        work_dir: the app's own folder (outputs, images, zips, uploads).
        data_dirs: extra folders whose files may be read (training/evaluation folders).
        device: ``cpu`` or ``cuda`` for conversion (training uses its config's device).
        precision: conversion precision (``fp32`` or ``bf16``).
        train_defaults: Hydra overrides put before the page's own (e.g. a smaller
            default model or CPU threads).
    """

    def __init__(
        self,
        runs_dir: str | Path,
        work_dir: str | Path,
        data_dirs: Sequence[str | Path] = (),
        device: str = "cpu",
        precision: str = "fp32",
        train_defaults: Sequence[str] = (),
    ) -> None:
        self.runs_dir = Path(runs_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.read_roots = [self.runs_dir, self.work_dir, *(Path(d).resolve() for d in data_dirs)]
        self.device = device
        self.precision = precision
        self.train_defaults = list(train_defaults)
        self.index = RunIndex(self.runs_dir)
        self._converters: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._convert_lock = threading.Lock()
        self._train_lock = threading.Lock()
        self.job: TrainingJob | None = None

    # ------------------------------------------------------------- listing
    def runs(self) -> list[RunEntry]:
        """Trained VC runs under the runs folder."""
        return self.index.runs()

    def vocoder_choices(self, run_name: str | None) -> list[tuple[str, str]]:
        """(label, value) vocoder choices for ``run_name``: Griffin-Lim and every trained
        vocoder with the run's MelConfig."""
        choices = [("Griffin-Lim (no training)", GRIFFIN_LIM)]
        if run_name:
            try:
                run = self.index.get(run_name)
            except ConfigError:
                return choices
            choices += [(f"{v.name} (step {v.step})", v.name) for v in self.index.vocoders_for(run)]
        return choices

    def direction_choices(self, run_name: str | None) -> list[tuple[str, str]]:
        """(``"rms -> slt"``, ``"a2b"``) pairs for ``run_name``."""
        if not run_name:
            return [("A -> B", "a2b"), ("B -> A", "b2a")]
        try:
            run = self.index.get(run_name)
        except ConfigError:
            return [("A -> B", "a2b"), ("B -> A", "b2a")]
        return [(run.label(d), d) for d in DIRECTIONS]

    # ----------------------------------------------------------- conversion
    def _new_dir(self, kind: str) -> Path:
        folder = self.work_dir / kind / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        return folder

    def converter(self, run_name: str, vocoder: str | None) -> Any:
        """A cached :class:`VoiceConverter` for ``run_name`` and ``vocoder`` (the two most
        recent stay loaded); MelConfig mismatches raise with the vocoder's name."""
        from voiceconv.conversion import VoiceConverter

        run = self.index.get(run_name)
        vocoder = (vocoder or GRIFFIN_LIM).strip()
        if vocoder.lower().startswith(GRIFFIN_LIM):
            spec: str | Path = vocoder
        else:
            spec = self.index.vocoder(vocoder).checkpoint
        key = (str(run.checkpoint), run.modified, str(spec))
        with self._convert_lock:
            vc = self._converters.pop(key, None)
            if vc is None:
                vc = VoiceConverter.from_checkpoint(run.checkpoint, device=self.device, vocoder=spec,
                                                    precision=self.precision)
            self._converters[key] = vc
            while len(self._converters) > 2:
                self._converters.popitem(last=False)
        return vc

    def _check_direction(self, direction: str) -> str:
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return direction

    def _input_file(self, path: str | Path | None) -> Path:
        if path is None or not str(path).strip():
            raise ConfigError("no audio given: upload a file or record one")
        # uploads land in the work folder (the server points GRADIO_TEMP_DIR there)
        return resolve_inside(path, self.read_roots, "audio file")

    def convert(self, audio: str | Path | None, run_name: str, direction: str,
                vocoder: str | None = GRIFFIN_LIM) -> ConvertResult:
        """Convert one audio file; returns the output wav, both mel images and the time."""
        from voiceconv.audio.io import load_audio, save_audio
        from voiceconv.audio.mel import log_mel

        self._check_direction(direction)
        src = self._input_file(audio)
        vc = self.converter(run_name, vocoder)
        out_dir = self._new_dir("converted")
        start = time.perf_counter()
        try:
            wav, _ = load_audio(src, vc.sample_rate, min_samples=vc.mel_config.n_fft)
            out = vc.convert(wav, vc.sample_rate, direction)[0]
        except FileProblem as err:
            raise type(err)(src.name, err.problem) from None
        except VoiceconvError as err:
            raise type(err)(_named(str(err), src)) from None
        seconds = time.perf_counter() - start
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", src.stem)[:80] or "audio"
        dst = save_audio(out_dir / f"{stem}_{direction}.wav", out, vc.sample_rate)
        mels = {"input": log_mel(wav, vc.mel_config), "output": log_mel(out, vc.mel_config)}
        images = {k: _mel_png(m, out_dir / f"{k}_mel.png", f"{k}: {_display(src) if k == 'input' else dst.name}")
                  for k, m in mels.items()}
        return ConvertResult(dst, images["input"], images["output"], seconds, len(wav) / vc.sample_rate,
                             vc.describe_direction(direction))

    def convert_many(self, files: Sequence[str | Path], run_name: str, direction: str,
                     vocoder: str | None = GRIFFIN_LIM) -> BatchResult:
        """Convert several files into one zip (``converted.zip``); a bad file costs a line."""
        self._check_direction(direction)
        if not files:
            raise ConfigError("no files given: upload one or more audio files")
        sources = [self._input_file(f) for f in files]
        vc = self.converter(run_name, vocoder)
        out_dir = self._new_dir("batch")
        lines: list[str] = []
        start = time.perf_counter()
        results = vc.convert_files(sources, out_dir / "wav", direction=direction)
        for res in results:
            if res.status == "converted":
                lines.append(f"{_display(res.source)}: converted")
            else:
                lines.append(_named(res.message, res.source))
        done = [r.output for r in results if r.status == "converted" and r.output is not None]
        zip_path = None
        if done:
            zip_path = out_dir / "converted.zip"
            with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in done:
                    zf.write(path, arcname=path.name)
        seconds = time.perf_counter() - start
        return BatchResult(zip_path, lines, seconds, len(done), len(results) - len(done))

    # ------------------------------------------------------------- training
    def status(self) -> TrainingJob | None:
        """The current (or last) training job."""
        return self.job

    def _compose(self, overrides: list[str]) -> Any:
        from voiceconv.utils.conf import compose_config

        return compose_config("train", overrides)

    def _speaker_folder(self, folder: str | None, uploads: Sequence[str | Path] | None,
                        name: str, run_dir: Path) -> Path:
        """A server folder (inside the read roots) or the uploads copied into the run."""
        files = [Path(f) for f in uploads or []]
        if files:
            target = run_dir / "data" / name
            target.mkdir(parents=True, exist_ok=True)
            for f in files:
                src = self._input_file(f)
                if src.suffix.lower() not in AUDIO_SUFFIXES:
                    raise FileProblem(src.name, f"not an audio file name ({', '.join(AUDIO_SUFFIXES)})")
                with atomic_path(target / src.name) as tmp:
                    shutil.copyfile(src, tmp)
            return target
        if not folder or not str(folder).strip():
            raise ConfigError(f"speaker {name}: give a folder on the server or upload recordings")
        path = resolve_inside(folder, self.read_roots, f"speaker {name} folder")
        if not path.is_dir():
            raise FileProblem(path, "not a folder")
        return path

    def start_training(
        self,
        run_name: str,
        a_dir: str | None = None,
        b_dir: str | None = None,
        a_files: Sequence[str | Path] | None = None,
        b_files: Sequence[str | Path] | None = None,
        speaker_a: str | None = None,
        speaker_b: str | None = None,
        model: str = "maskcyclegan_vc_small",
        steps: int = 1000,
        overrides: str | Sequence[str] | None = None,
    ) -> TrainingJob:
        """Start a new run ``runs/<run_name>`` in a background thread (one at a time)."""
        run_name = (run_name or "").strip()
        if not _NAME.match(run_name):
            raise ConfigError(f"run name {run_name!r}: use letters, digits, '_', '-', '.' (no folders)")
        if model not in MODELS:
            raise ConfigError(f"model must be one of {MODELS}, got {model!r}")
        steps = int(steps)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        extra = check_overrides(overrides)
        run_dir = self.runs_dir / run_name
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            raise ConfigError(f"{run_name}: a run of that name exists; resume it or pick another name")
        with self._train_lock:
            self._check_idle()
            names = {"A": (speaker_a or "").strip(), "B": (speaker_b or "").strip()}
            for role, name in names.items():
                if name and not _NAME.match(name):
                    raise ConfigError(f"speaker {role} name {name!r}: use letters, digits, '_', '-', '.'")
            if a_files and not names["A"]:
                names["A"] = "A"
            if b_files and not names["B"]:
                names["B"] = "B"
            a_path = self._speaker_folder(a_dir, a_files, names["A"] or "A", run_dir)
            b_path = self._speaker_folder(b_dir, b_files, names["B"] or "B", run_dir)
            names = {"A": names["A"] or a_path.name, "B": names["B"] or b_path.name}
            if names["A"] == names["B"]:
                raise ConfigError(f"both speakers are called {names['A']!r}: give them different names")
            ckpt_every = max(1, min(1000, steps))
            cfg = self._compose([
                f"model={model}", "trainer.progress=false", f"trainer.ckpt_every={ckpt_every}",
                *self.train_defaults, *extra,
                f"trainer.max_steps={steps}", f"out_dir={run_dir}",
                f"data.a_dir={a_path}", f"data.b_dir={b_path}",
                f"data.speaker_a={names['A']}", f"data.speaker_b={names['B']}",
            ])
            return self._launch(cfg, run_name, run_dir, steps, 0)

    def resume_training(self, run_name: str, steps: int | None = None) -> TrainingJob:
        """Continue a run from its ``last.ckpt`` with its saved configuration, up to
        ``steps`` (default: its configured ``trainer.max_steps``)."""
        from omegaconf import OmegaConf

        run = self.index.get(run_name)
        config = run.path / "config.yaml"
        if not config.is_file():
            raise FileProblem(config, "missing: this run cannot be resumed from the app")
        with self._train_lock:
            self._check_idle()
            cfg = OmegaConf.load(config)
            target = int(steps) if steps else int(cfg.trainer.max_steps)
            if target <= run.step:
                raise ConfigError(f"{run_name} is at step {run.step} already: give more steps than that")
            cfg.trainer.max_steps = target
            cfg.trainer.progress = False
            cfg.out_dir = str(run.path)
            # resume from the run's feature cache: the original recordings (perhaps in
            # a folder this app may not read) are not opened again
            resolve_inside(str(cfg.data.cache_dir), self.read_roots, f"{run_name}'s feature cache")
            cfg.data.kind = "cache"
            cfg.data.speaker_a, cfg.data.speaker_b = run.speakers["A"], run.speakers["B"]
            return self._launch(cfg, run_name, run.path, target, run.step)

    def _check_idle(self) -> None:
        job = self.job
        if job is not None and not job.done:
            raise TrainingBusy(f"a training is running already ({job.run_name}, step {job.step}/"
                               f"{job.max_steps}): one at a time; stop it or wait for it to finish")

    def _launch(self, cfg: Any, run_name: str, run_dir: Path, steps: int, start: int) -> TrainingJob:
        job = TrainingJob(run_name, run_dir, steps, start_step=start, step=start)
        job.thread = threading.Thread(target=self._train, args=(job, cfg), name=f"train-{run_name}",
                                      daemon=True)
        self.job = job
        job.thread.start()
        return job

    def _train(self, job: TrainingJob, cfg: Any) -> None:
        from voiceconv.training.vc_run import train_vc

        job.state = "preparing"
        job.message = "reading the recordings into the feature cache" if job.start_step == 0 else ""
        try:
            result = train_vc(cfg, stop=job.stop_event.is_set, on_step=job.on_step)
        except VoiceconvError as err:
            job.state, job.message = "failed", str(err)
            return
        except Exception as err:  # a bug: keep the app serving, say what happened
            log.exception("training %s failed", job.run_name)
            job.state, job.message = "failed", f"{type(err).__name__}: {err}"
            return
        job.step = result.step
        ckpt = result.last_checkpoint
        if result.stopped:
            job.state = "stopped"
            job.message = (f"stopped at step {result.step}; checkpoint {ckpt}; Resume continues it"
                           if ckpt else "stopped before the first step; nothing was written")
        else:
            job.state = "finished"
            job.message = f"finished at step {result.step}; checkpoint {ckpt}"

    def stop_training(self, wait_s: float = 0.0) -> str:
        """Ask the running training to checkpoint and stop; optionally wait for it."""
        job = self.job
        if job is None or job.done:
            return "no training is running"
        job.stop_event.set()
        if job.state not in ("stopped", "finished", "failed"):
            job.state = "stopping"
        if wait_s > 0 and job.thread is not None:
            job.thread.join(wait_s)
        return job.summary()

    def wait(self, timeout_s: float | None = None) -> TrainingJob | None:
        """Block until the current job ends (tests, API)."""
        job = self.job
        if job is not None and job.thread is not None:
            job.thread.join(timeout_s)
        return job

    # ----------------------------------------------------------- evaluation
    def evaluate(
        self,
        run_name: str,
        direction: str,
        source_dir: str,
        reference_dir: str,
        vocoder: str | None = GRIFFIN_LIM,
        classifier: bool = True,
        max_plots: int = 3,
    ) -> EvaluateResult:
        """Convert held-out ``source_dir`` with the run, score it against the parallel
        ``reference_dir`` (same stems), write the report into ``<run>/eval/<name>/``."""
        from voiceconv.evaluation.report import evaluate_folders, write_report

        self._check_direction(direction)
        run = self.index.get(run_name)
        src = resolve_inside(source_dir, self.read_roots, "held-out source folder")
        ref = resolve_inside(reference_dir, self.read_roots, "held-out reference folder")
        for folder in (src, ref):
            if not folder.is_dir():
                raise FileProblem(folder, "not a folder")
        vc = self.converter(run_name, vocoder)
        files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise FileProblem(src, f"holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        out = run.path / "eval" / f"{direction}-{time.strftime('%Y%m%d-%H%M%S')}"
        results = vc.convert_files(files, out / "converted", direction=direction, overwrite=True)
        target = run.speakers.get("B" if direction == "a2b" else "A")
        clf = self._classifier(run, out) if classifier else None
        report = evaluate_folders(out / "converted", ref, src, clf, target if clf else None,
                                  out / "plots", max_plots)
        report.problems[:0] = [r.message for r in results if r.status == "failed"]
        if not report.rows:
            raise ConfigError(f"{src}: no converted file has a reference with the same name in {ref}")
        _, md = write_report(report, out)
        plots = sorted((out / "plots").glob("*.png"))
        return EvaluateResult(md.read_text(), out / "report.json", plots, out)

    def _classifier(self, run: RunEntry, out: Path) -> Any:
        """A speaker classifier on the run's feature cache (None when it has none)."""
        from voiceconv.data.cache import FeatureCache
        from voiceconv.evaluation.speaker import SpeakerClassifier

        cache_dir = run.path / "cache"
        if not (cache_dir / "manifest.jsonl").is_file():
            return None
        cache = FeatureCache(cache_dir)
        clf = SpeakerClassifier(cache.speakers, cache.mel_config)
        clf.fit({s: cache.load_mels(s) for s in cache.speakers})
        clf.save(out / "speaker_classifier.pt")
        return clf


def _mel_png(mel: np.ndarray, dest: Path, title: str) -> Path:
    """A log-mel image as PNG (written atomically)."""
    from voiceconv.training.logging import mel_figure

    fig = mel_figure({title: mel})
    fig.set_size_inches(6, 2.6)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest


__all__ = ["AppService", "BatchResult", "ConvertResult", "EvaluateResult", "TrainingBusy", "TrainingJob",
           "check_overrides"]

