"""Evaluate a folder of converted utterances against parallel references.

Files are paired by stem (``DIR/<stem>.wav``). For every pair we compute the MCD
(:mod:`voiceconv.evaluation.mcd`) and the F0 scores
(:mod:`voiceconv.evaluation.f0_metrics`) and, given a trained
:class:`~voiceconv.evaluation.speaker.SpeakerClassifier`, the speaker it hears.
With a source folder the unconverted source, and with a statistics-only folder the
source with each mel bin's mean and variance moved to the target speaker's (vocoded
by the same vocoder), are scored the same way: the report shows both yardsticks
beside the conversion for every metric, including the DTW log-mel distance
(:mod:`voiceconv.evaluation.mel_distance`) and a frame-level speaker classifier. A bad file costs one line in
``problems`` and the rest are still evaluated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceconv.audio.io import load_audio
from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.audio.preparation import Preparation
from voiceconv.audio.processing import resample
from voiceconv.errors import VoiceconvError
from voiceconv.evaluation.f0_metrics import f0_scores
from voiceconv.evaluation.mcd import WorldFeatures, mcd_from_mcep, world_features
from voiceconv.evaluation.mel_distance import dtw_log_mel_distance
from voiceconv.evaluation.speaker import FrameSpeakerClassifier, SpeakerClassifier
from voiceconv.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3")


#: the systems a report compares, in column order: the conversion and its two yardsticks
SYSTEMS = ("converted", "statistics_only", "source")
SYSTEM_TITLES = {"converted": "converted", "statistics_only": "statistics-only shift",
                 "source": "unconverted source"}
#: (key, title, lower is better) of each metric, in row order
METRICS = (
    ("mcd", "MCD (dB, DTW, c1-c24)", True),
    ("mel_distance", "DTW log-mel distance", True),
    ("f0_rmse_cents", "log-F0 RMSE (cents)", True),
    ("f0_corr", "log-F0 correlation", False),
    ("vuv_error", "V/UV error", True),
)


@dataclass
class SystemScores:
    """One system's scores for one utterance against its reference."""

    mcd: float
    mel_distance: float
    f0_rmse_cents: float
    f0_corr: float
    vuv_error: float
    speaker: str | None = None  # SpeakerClassifier (per-bin mean/std)
    frame_speaker: str | None = None  # FrameSpeakerClassifier (frame-level structure)


@dataclass
class UtteranceScores:
    stem: str
    systems: dict[str, SystemScores] = field(default_factory=dict)


def _key(system: str, metric: str) -> str:
    """Flat key of a mean: the conversion's unprefixed, the yardsticks' prefixed."""
    return metric if system == "converted" else f"{system}_{metric}"


@dataclass
class EvaluationReport:
    rows: list[UtteranceScores] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    target_speaker: str | None = None

    def means(self) -> dict[str, float]:
        """Mean of every metric per system: ``mcd``, ``source_mcd``, ``statistics_only_mcd``,
        ..., and ``speaker_accuracy``/``frame_speaker_accuracy`` (share labelled the target)."""
        out: dict[str, float] = {}
        for system in SYSTEMS:
            scored = [r.systems[system] for r in self.rows if system in r.systems]
            if not scored:
                continue
            for metric, _, _ in METRICS:
                vals = [v for v in (getattr(sc, metric) for sc in scored) if not math.isnan(v)]
                if vals:
                    out[_key(system, metric)] = float(np.mean(vals))
            if self.target_speaker is None:
                continue
            for attr in ("speaker", "frame_speaker"):
                labels = [getattr(sc, attr) for sc in scored if getattr(sc, attr) is not None]
                if labels:
                    out[_key(system, f"{attr}_accuracy")] = float(np.mean([x == self.target_speaker for x in labels]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n": len(self.rows), "target_speaker": self.target_speaker, "means": self.means(),
                "utterances": [{"stem": r.stem, **{k: asdict(v) for k, v in r.systems.items()}}
                               for r in self.rows],
                "problems": self.problems}

    def to_markdown(self) -> str:
        m = self.means()
        present = [s for s in SYSTEMS if any(s in r.systems for r in self.rows)]
        lines = ["# Voice-conversion evaluation", "", f"{len(self.rows)} utterance pairs.", ""]
        lines += ["| metric | " + " | ".join(SYSTEM_TITLES[s] for s in present) + " |",
                  "|---" * (len(present) + 1) + "|"]

        def fmt(key: str) -> str:
            return f"{m[key]:.3f}" if key in m else "-"

        for metric, title, _ in METRICS:
            lines.append(f"| {title} | " + " | ".join(fmt(_key(s, metric)) for s in present) + " |")
        if self.target_speaker is not None:
            for attr, title in (("speaker", "speaker classifier, per-bin mean/std"),
                                ("frame_speaker", "speaker classifier, frame-level GMM")):
                if any(_key(s, f"{attr}_accuracy") in m for s in present):
                    lines.append(f"| {title}: labelled {self.target_speaker} | "
                                 + " | ".join(fmt(_key(s, f"{attr}_accuracy")) for s in present) + " |")
        lines += ["", "The statistics-only shift moves each mel bin's mean and variance from the source "
                  "speaker's to the target's and vocodes with the same vocoder: a model has to beat it, "
                  "not only the unconverted source. The metrics can disagree about it (the per-bin "
                  "classifier is matched by the shift by construction; the frame-level one is not)."]
        lines += ["", "## Per utterance (MCD, dB)", "",
                  "| stem | " + " | ".join(SYSTEM_TITLES[s] for s in present) + " | frame-level speaker |",
                  "|---" * (len(present) + 2) + "|"]
        for r in self.rows:
            cells = [f"{r.systems[s].mcd:.3f}" if s in r.systems else "-" for s in present]
            conv = r.systems.get("converted")
            lines.append(f"| {r.stem} | " + " | ".join(cells) + f" | {(conv.frame_speaker if conv else None) or '-'} |")
        if self.problems:
            lines += ["", "## Problems", ""] + [f"- {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


def audio_files_by_stem(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Audio files directly inside ``folder`` keyed by stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VoiceconvError(f"{folder}: not a folder")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in AUDIO_EXT and p.is_file()}


def _plot(path: Path, mels: dict[str, np.ndarray], f0s: dict[str, WorldFeatures]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(mels) + 1, 1, figsize=(9, 2.2 * (len(mels) + 1)))
    for ax, (name, m) in zip(axes, mels.items(), strict=False):
        ax.imshow(m, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(f"log-mel: {name}", fontsize=9)
        ax.set_yticks([])
    for name, wf in f0s.items():
        f0 = np.where(wf.f0 > 0, wf.f0, np.nan)
        axes[-1].plot(np.arange(len(f0)) * wf.frame_period_ms / 1000.0, f0, label=name, lw=1)
    axes[-1].set_ylabel("F0 (Hz)")
    axes[-1].set_xlabel("time (s)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _at_rate(wav: np.ndarray, sr: int, rate: int) -> np.ndarray:
    return wav if sr == rate else resample(wav, sr, rate)


def _score(ref: WorldFeatures, ref_mel: np.ndarray, wav: np.ndarray, sr: int, mel: np.ndarray,
           classifiers: Sequence[Any]) -> tuple[SystemScores, WorldFeatures]:
    w = world_features(wav, sr)
    f0 = f0_scores(ref, w)
    sc = SystemScores(mcd_from_mcep(ref.mcep, w.mcep), dtw_log_mel_distance(mel, ref_mel),
                      f0.log_f0_rmse_cents, f0.log_f0_corr, f0.vuv_error)
    clf, frame_clf = classifiers
    if clf is not None:
        sc.speaker = clf.predict([mel])[0]
    if frame_clf is not None:
        sc.frame_speaker = frame_clf.predict([mel])[0]
    return sc, w


def evaluate_folders(
    converted: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    source: str | os.PathLike[str] | None = None,
    classifier: SpeakerClassifier | None = None,
    target_speaker: str | None = None,
    plots_dir: str | os.PathLike[str] | None = None,
    max_plots: int = 5,
    statistics_only: str | os.PathLike[str] | None = None,
    frame_classifier: FrameSpeakerClassifier | None = None,
    preparation: Preparation | None = None,
) -> EvaluationReport:
    """Score every converted file that has a reference with the same stem, and beside it
    the unconverted ``source`` and the ``statistics_only`` renders of the same stems.

    The log-mels behind the DTW distance and the speaker classifiers come from audio
    prepared like the training features (``preparation``, default: trimmed at 40 dB and
    peak-normalised, the training default), so that a file's level does not count as a
    difference; MCD (c0 left out) and F0 are level-free already."""
    prep = preparation if preparation is not None else Preparation()
    conv, ref = audio_files_by_stem(converted), audio_files_by_stem(reference)
    others = {"source": audio_files_by_stem(source) if source is not None else {},
              "statistics_only": audio_files_by_stem(statistics_only) if statistics_only is not None else {}}
    report = EvaluationReport(target_speaker=target_speaker)
    for stem in sorted(set(conv) - set(ref)):
        report.problems.append(f"{conv[stem]}: no reference with stem {stem!r} in {reference}")
    clf_cfg = next((c.mel_config for c in (classifier, frame_classifier) if c is not None), MelConfig())
    classifiers = (classifier, frame_classifier)
    for stem in sorted(set(conv) & set(ref)):
        try:
            ref_wav, sr = load_audio(ref[stem])
            wr = world_features(ref_wav, sr)
            rate = clf_cfg.sample_rate
            mels = {"reference": log_mel(prep.apply(_at_rate(ref_wav, sr, rate), rate, ref[stem]), clf_cfg)}
            f0s = {"reference": wr}
            row = UtteranceScores(stem)
            files = {"converted": conv[stem], **{k: v[stem] for k, v in others.items() if stem in v}}
            for system, path in files.items():
                wav, _ = load_audio(path, sr)
                mels[system] = log_mel(prep.apply(_at_rate(wav, sr, rate), rate, path), clf_cfg)
                row.systems[system], f0s[system] = _score(wr, mels["reference"], wav, sr, mels[system],
                                                          classifiers)
            report.rows.append(row)
            if plots_dir is not None and len(report.rows) <= max_plots:
                _plot(Path(plots_dir) / f"{stem}.png", mels, f0s)
        except VoiceconvError as err:
            report.problems.append(str(err))
    return report


def write_report(report: EvaluationReport, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report.to_dict())
    atomic_write_text(out / "report.md", report.to_markdown())
    return out / "report.json", out / "report.md"
