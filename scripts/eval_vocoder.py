"""Compare a trained neural vocoder with Griffin-Lim on held-out utterances.

For every held-out file: read it as the vocoder training did (rate, trimming,
normalisation from the run's config.yaml), compute its log-mel with THE front end,
resynthesise that mel with the trained vocoder and with Griffin-Lim (each
``--gl-iters``), and score each resynthesis against the original:

* MCD (dB, DTW-aligned, WORLD + SPTK convention of :func:`voiceconv.evaluation.mcd.mcd`);
* MCD over the reference's voiced frames only (``mcd_voiced_db``: WORLD analysis of the
  untrimmed, sample-aligned signals, frames where Harvest finds F0 in the reference,
  no DTW). Why: flite writes exact digital zeros between words; there the mel-cepstrum
  of the reference is that of silence and ANY residual hiss of a resynthesis (even
  at -90 dBFS) costs tens of dB per frame, so the all-frame MCD mostly measures the
  pauses. Both numbers are reported;
* spectral convergence ``||S - S_hat||_F / ||S||_F`` of the linear STFT magnitudes
  (:func:`voiceconv.vocoders.griffinlim.spectral_convergence`, same STFT as the mel
  front end, all bins), both signals cut to the original's length;
* wideband PESQ (ITU-T P.862.2, the ``pesq`` package) after resampling both signals to
  16 kHz with :func:`voiceconv.audio.processing.resample`; higher is better. Unlike the
  other two it sees the phase.

Several neural vocoders can be scored in one run (``--vocoder [NAME=]CKPT`` repeated;
the default name is the generator's kind, ``hifigan`` or ``vocos``); for each of them
the summary counts the files on which it beats every other vocoder, per metric.

For a generator with a Griffin-Lim source its source alone is scored too
(``hifigan_source_only``: the learned magnitude + Griffin-Lim, without the HiFi-GAN
path's correction), to show which part of the generator does the work.

Usage::

    python scripts/eval_vocoder.py --run runs/voc --out runs/voc/eval
    python scripts/eval_vocoder.py --vocoder CKPT --files a.wav b.wav --out DIR
    python scripts/eval_vocoder.py --run RUN --vocoder vocos=V.ckpt hifigan_gl_small=H.ckpt --out DIR

``--run`` takes the vocoder (``checkpoints/last.ckpt``), the held-out list
(``holdout.txt``) and the audio preparation (``config.yaml``) from a
``voiceconv-train-vocoder`` run folder. Writes ``OUT/results.json`` (per file and
means), ``OUT/results.md`` and the resynthesised audio under ``OUT/wav/<vocoder>/``;
prints the summary table. Files that cannot be read are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from pesq import pesq

from voiceconv.audio.io import save_audio
from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.audio.preparation import Preparation
from voiceconv.audio.processing import resample
from voiceconv.errors import VoiceconvError
from voiceconv.evaluation.mcd import mcd_from_mcep, world_features
from voiceconv.utils.atomic import atomic_write_json, atomic_write_text
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.griffinlim import spectral_convergence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, help="voiceconv-train-vocoder run folder (defaults for the rest)")
    p.add_argument("--vocoder", nargs="*", default=[],
                   help="[NAME=]checkpoint, one or more (default RUN/checkpoints/last.ckpt)")
    p.add_argument("--files", nargs="*", type=Path, help="audio files (default: RUN/holdout.txt)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--gl-iters", nargs="*", type=int, default=[32],
                   help="Griffin-Lim iteration counts to compare (default 32, GriffinLim's default; none: skip)")
    p.add_argument("--normalize", default=None, help="peak | loudness | none (default: the run's)")
    p.add_argument("--trim-top-db", type=float, default=None, help="(default: the run's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p


def _run_settings(run: Path | None) -> tuple[dict[str, Any], MelConfig | None]:
    if run is None:
        return {}, None
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False)
    mel = json.loads((run / "mel_config.json").read_text())
    return dict(cfg.get("data", {})), MelConfig.from_dict(mel)


def spectral_convergence_of(ref: np.ndarray, est: np.ndarray, front: LogMel) -> float:
    """Spectral convergence of ``est`` against ``ref`` (est cut/padded to ref's length)."""
    n = ref.shape[-1]
    est = np.pad(est[:n], (0, max(0, n - est.shape[-1])))
    with torch.inference_mode():
        s_ref = front.magnitude(torch.from_numpy(ref), all_bins=True)
        s_est = front.magnitude(torch.from_numpy(est.astype(np.float32)), all_bins=True)
    return float(spectral_convergence(s_ref, s_est))


class ReferenceScorer:
    """MCD (all frames, DTW) and voiced-frame MCD against one reference, its WORLD analysis done once."""

    def __init__(self, ref: np.ndarray, sample_rate: int) -> None:
        self.ref = ref
        self.sample_rate = sample_rate
        self.trimmed = world_features(ref, sample_rate).mcep  # the project's convention (trim 40 dB)
        self.whole = world_features(ref, sample_rate, trim_db=None)

    def mcd(self, est: np.ndarray) -> float:
        """:func:`voiceconv.evaluation.mcd.mcd` (DTW, c0 excluded, ends trimmed)."""
        return mcd_from_mcep(self.trimmed, world_features(est, self.sample_rate).mcep)

    def voiced_mcd(self, est: np.ndarray) -> float:
        """MCD over the frames where the reference is voiced; sample-aligned signals, no DTW."""
        n = self.ref.shape[-1]
        est = np.pad(est[:n], (0, max(0, n - est.shape[-1])))
        b = world_features(est, self.sample_rate, trim_db=None)
        frames = min(len(self.whole.f0), len(b.f0))
        voiced = self.whole.f0[:frames] > 0
        if not voiced.any():
            return float("nan")
        return mcd_from_mcep(self.whole.mcep[:frames][voiced], b.mcep[:frames][voiced], align=False)


def wideband_pesq(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """P.862.2 wideband PESQ of ``est`` against ``ref`` (both resampled to 16 kHz); NaN if
    PESQ finds no speech."""
    n = ref.shape[-1]
    est = np.pad(est[:n], (0, max(0, n - est.shape[-1])))
    ref16, est16 = resample(ref, sample_rate, 16000), resample(est, sample_rate, 16000)
    try:
        return float(pesq(16000, ref16.astype(np.float64), est16.astype(np.float64), "wb"))
    except Exception:  # pesq.NoUtterancesError and its kin: nothing PESQ can score
        return float("nan")


def _named_checkpoints(specs: list[str], run: Path | None) -> dict[str, Path] | None:
    """``{name: path}`` of ``--vocoder [NAME=]CKPT`` (name "" = the generator's kind)."""
    if not specs:
        return {"": run / "checkpoints" / "last.ckpt"} if run else None
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        out["" if not sep else name] = Path(path if sep else spec)
    return out


def _kind(vocoder: Any) -> str:
    """``hifigan`` or ``vocos`` (the generator's kind), for a default column name."""
    net = getattr(vocoder, "net", None)
    return "vocos" if type(net).__name__ == "VocosGenerator" else "hifigan"


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "median": statistics.median(values)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data_cfg, run_mel = _run_settings(args.run)
    ckpts = _named_checkpoints(args.vocoder, args.run)
    if ckpts is None:
        print("give --vocoder or --run", file=sys.stderr)
        return 2
    files = args.files
    if not files:
        if args.run is None:
            print("give --files or --run", file=sys.stderr)
            return 2
        files = [Path(line) for line in (args.run / "holdout.txt").read_text().split("\n") if line.strip()]
    if not files:
        print("no held-out files to evaluate (train with data.holdout=N)", file=sys.stderr)
        return 2
    normalize = args.normalize if args.normalize is not None else data_cfg.get("normalize", "peak")
    normalize = None if str(normalize).lower() in ("none", "null") else normalize
    trim = args.trim_top_db if args.trim_top_db is not None else data_cfg.get("trim_top_db", 40.0)
    prep = Preparation(trim_top_db=trim, normalize=normalize)

    try:
        vocoders: dict[str, Any] = {}
        neural: list[str] = []
        steps: dict[str, int] = {}
        for given, ckpt in ckpts.items():
            torch_ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
            payload = torch_ckpt.get("model", torch_ckpt)  # a training checkpoint or a bare save_model payload
            mel_cfg = run_mel or MelConfig.from_dict(payload["hparams"]["mel_config"])
            voc = load_vocoder(ckpt, mel_cfg, args.device)
            name = given or _kind(voc)
            vocoders[name] = voc
            neural.append(name)
            steps[name] = int(torch_ckpt.get("step", -1)) if isinstance(torch_ckpt, dict) else -1
            net = getattr(voc, "net", None)
            if getattr(net, "source", None) is not None:
                # the generator's Griffin-Lim source alone (learned magnitude + Griffin-Lim, without
                # the HiFi-GAN correction): shows which part of the generator does the work
                vocoders[f"{name}_source_only"] = net.make_source
        for n in args.gl_iters:
            vocoders[f"griffinlim_{n}"] = load_vocoder(f"griffinlim:{n}", mel_cfg, args.device)
    except (VoiceconvError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    front = LogMel(mel_cfg)
    per_file: list[dict[str, Any]] = []
    seconds = {name: 0.0 for name in vocoders}
    for path in files:
        try:
            ref = prep.load(path, mel_cfg.sample_rate, min_samples=mel_cfg.n_fft)
        except VoiceconvError as err:
            print(f"skipped {err}", file=sys.stderr)
            continue
        with torch.inference_mode():
            mel = front(torch.from_numpy(ref)).to(args.device)
        row: dict[str, Any] = {"file": str(path)}
        scorer = ReferenceScorer(ref, mel_cfg.sample_rate)
        for name, voc in vocoders.items():
            t0 = time.perf_counter()
            with torch.inference_mode():
                wav = voc(mel.unsqueeze(0))[0].float().cpu().numpy()
            seconds[name] += time.perf_counter() - t0
            wav = np.pad(wav[: ref.shape[-1]], (0, max(0, ref.shape[-1] - wav.shape[-1])))
            written = save_audio(args.out / "wav" / name / f"{path.parent.name}_{path.stem}.wav",
                                 np.clip(wav, -1.0, 1.0), mel_cfg.sample_rate)
            wav, _ = sf.read(written, dtype="float32")
            row[name] = {"mcd_db": scorer.mcd(wav), "mcd_voiced_db": scorer.voiced_mcd(wav),
                         "spectral_convergence": spectral_convergence_of(ref, wav, front),
                         "pesq_wb": wideband_pesq(ref, wav, mel_cfg.sample_rate)}
        per_file.append(row)
        print(f"{path.parent.name}/{path.name}: " + "  ".join(
            f"{n} MCD {row[n]['mcd_db']:.2f}/{row[n]['mcd_voiced_db']:.2f} SC {row[n]['spectral_convergence']:.3f}"
            f" PESQ {row[n]['pesq_wb']:.2f}" for n in vocoders), flush=True)
    if not per_file:
        print("no file could be evaluated", file=sys.stderr)
        return 1

    metrics = ("mcd_db", "mcd_voiced_db", "spectral_convergence", "pesq_wb")
    higher_better = {"pesq_wb"}

    def better(a: dict[str, float], b: dict[str, float], m: str) -> bool:
        return a[m] > b[m] if m in higher_better else a[m] < b[m]

    summary: dict[str, Any] = {
        name: {**{m: _summary([r[name][m] for r in per_file]) for m in metrics}, "seconds_total": seconds[name]}
        for name in vocoders
    }
    for name in neural:  # on how many files each neural vocoder scores better than each other vocoder
        summary[name]["better_than"] = {
            other: {m: sum(better(r[name], r[other], m) for r in per_file) for m in metrics}
            for other in vocoders if other != name}
    result = {"vocoders": {n: str(p) for n, p in zip(neural, ckpts.values(), strict=True)}, "steps": steps,
              "n_files": len(per_file), "mel_config": mel_cfg.to_dict(), "summary": summary, "files": per_file}
    atomic_write_json(args.out / "results.json", result)
    lines = [
        f"Held-out files: {len(per_file)}; " + "; ".join(
            f"{n}: {p} (step {steps[n]})" for n, p in zip(neural, ckpts.values(), strict=True))
        + "; mean (std) over files",
        "",
        "| vocoder | MCD dB, all frames | MCD dB, voiced frames | spectral convergence | wideband PESQ | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        cells = [f"{s[m]['mean']:.3f} ({s[m]['std']:.3f})" for m in metrics]
        lines.append(f"| {name} | {' | '.join(cells)} | {s['seconds_total']:.1f} |")
    for name in neural:
        for other, wins in summary[name]["better_than"].items():
            lines.append(f"\n{name} better than {other} on: " + ", ".join(
                f"{m} {wins[m]}/{len(per_file)}" for m in metrics))
    table = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "results.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
