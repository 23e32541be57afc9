"""Evaluate a folder of converted utterances against parallel references.

Files are paired by stem (``DIR/<stem>.wav``). For every pair we compute the MCD
(:mod:`voiceconv.evaluation.mcd`) and the F0 scores
(:mod:`voiceconv.evaluation.f0_metrics`) and, given a trained
:class:`~voiceconv.evaluation.speaker.SpeakerClassifier`, the speaker it hears.
With a source folder the unconverted source is scored the same way, so the report
shows the baseline beside the conversion. A bad file costs one line in
``problems`` and the rest are still evaluated.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceconv.audio.io import load_audio
from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.errors import VoiceconvError
from voiceconv.evaluation.f0_metrics import f0_scores
from voiceconv.evaluation.mcd import WorldFeatures, mcd_from_mcep, world_features
from voiceconv.evaluation.speaker import SpeakerClassifier
from voiceconv.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class UtteranceScores:
    stem: str
    mcd: float
    f0_rmse_cents: float
    f0_corr: float
    vuv_error: float
    speaker: str | None = None
    source_mcd: float | None = None
    source_f0_rmse_cents: float | None = None
    source_speaker: str | None = None


@dataclass
class EvaluationReport:
    rows: list[UtteranceScores] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    target_speaker: str | None = None

    def means(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in ("mcd", "f0_rmse_cents", "f0_corr", "vuv_error", "source_mcd", "source_f0_rmse_cents"):
            vals = [getattr(r, key) for r in self.rows if getattr(r, key) is not None]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                out[key] = float(np.mean(vals))
        if self.target_speaker is not None:
            conv = [r.speaker for r in self.rows if r.speaker is not None]
            if conv:
                out["speaker_accuracy"] = float(np.mean([s == self.target_speaker for s in conv]))
            src = [r.source_speaker for r in self.rows if r.source_speaker is not None]
            if src:
                out["source_speaker_accuracy"] = float(np.mean([s == self.target_speaker for s in src]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n": len(self.rows), "target_speaker": self.target_speaker, "means": self.means(),
                "utterances": [asdict(r) for r in self.rows], "problems": self.problems}

    def to_markdown(self) -> str:
        m = self.means()
        lines = ["# Voice-conversion evaluation", "", f"{len(self.rows)} utterance pairs.", ""]
        lines += ["| metric | converted | unconverted source |", "|---|---|---|"]

        def fmt(key: str) -> str:
            return f"{m[key]:.3f}" if key in m else "-"

        lines.append(f"| MCD (dB, DTW, c1-c24) | {fmt('mcd')} | {fmt('source_mcd')} |")
        lines.append(f"| log-F0 RMSE (cents) | {fmt('f0_rmse_cents')} | {fmt('source_f0_rmse_cents')} |")
        lines.append(f"| log-F0 correlation | {fmt('f0_corr')} | - |")
        lines.append(f"| V/UV error | {fmt('vuv_error')} | - |")
        if self.target_speaker is not None:
            lines.append(f"| speaker accuracy (as {self.target_speaker}) | {fmt('speaker_accuracy')} | "
                         f"{fmt('source_speaker_accuracy')} |")
        lines += ["", "## Per utterance", "", "| stem | MCD | source MCD | F0 RMSE | speaker |", "|---|---|---|---|---|"]
        for r in self.rows:
            smcd = f"{r.source_mcd:.3f}" if r.source_mcd is not None else "-"
            lines.append(f"| {r.stem} | {r.mcd:.3f} | {smcd} | {r.f0_rmse_cents:.1f} | {r.speaker or '-'} |")
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


def _cached_mel(cache: dict[str, np.ndarray], paths: dict[str, Path | None], name: str,
                cfg: MelConfig) -> np.ndarray:
    """Log-mel of ``paths[name]`` at ``cfg``, loaded and computed once per utterance."""
    if name not in cache:
        cache[name] = log_mel(load_audio(paths[name], cfg.sample_rate)[0], cfg)
    return cache[name]


def evaluate_folders(
    converted: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    source: str | os.PathLike[str] | None = None,
    classifier: SpeakerClassifier | None = None,
    target_speaker: str | None = None,
    plots_dir: str | os.PathLike[str] | None = None,
    max_plots: int = 5,
) -> EvaluationReport:
    """Score every converted file that has a reference with the same stem."""
    conv, ref = audio_files_by_stem(converted), audio_files_by_stem(reference)
    src = audio_files_by_stem(source) if source is not None else {}
    report = EvaluationReport(target_speaker=target_speaker)
    for stem in sorted(set(conv) - set(ref)):
        report.problems.append(f"{conv[stem]}: no reference with stem {stem!r} in {reference}")
    mel_cfg = classifier.mel_config if classifier is not None else MelConfig()
    for stem in sorted(set(conv) & set(ref)):
        try:
            ref_wav, sr = load_audio(ref[stem])
            conv_wav, _ = load_audio(conv[stem], sr)
            wr, wc = world_features(ref_wav, sr), world_features(conv_wav, sr)
            f0 = f0_scores(wr, wc)
            row = UtteranceScores(stem, mcd_from_mcep(wr.mcep, wc.mcep), f0.log_f0_rmse_cents,
                                  f0.log_f0_corr, f0.vuv_error)
            paths = {"source": src.get(stem), "converted": conv[stem], "reference": ref[stem]}
            mels: dict[str, np.ndarray] = {}
            f0s = {"reference": wr, "converted": wc}
            if classifier is not None:
                row.speaker = classifier.predict([_cached_mel(mels, paths, "converted", mel_cfg)])[0]
            if stem in src:
                src_wav, _ = load_audio(src[stem], sr)
                ws = world_features(src_wav, sr)
                row.source_mcd = mcd_from_mcep(wr.mcep, ws.mcep)
                row.source_f0_rmse_cents = f0_scores(wr, ws).log_f0_rmse_cents
                f0s["source"] = ws
                if classifier is not None:
                    row.source_speaker = classifier.predict([_cached_mel(mels, paths, "source", mel_cfg)])[0]
            report.rows.append(row)
            if plots_dir is not None and len(report.rows) <= max_plots:
                shown = {name: _cached_mel(mels, paths, name, mel_cfg) for name, path in paths.items() if path is not None}
                _plot(Path(plots_dir) / f"{stem}.png", shown, f0s)
        except VoiceconvError as err:
            report.problems.append(str(err))
    return report


def write_report(report: EvaluationReport, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report.to_dict())
    atomic_write_text(out / "report.md", report.to_markdown())
    return out / "report.json", out / "report.md"
