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
  front end, all bins), both signals cut to the original's length.

For a generator with a Griffin-Lim source its source alone is scored too
(``hifigan_source_only``: the learned magnitude + Griffin-Lim, without the HiFi-GAN
path's correction), to show which part of the generator does the work.

Usage::

    python scripts/eval_vocoder.py --run runs/voc --out runs/voc/eval
    python scripts/eval_vocoder.py --vocoder CKPT --files a.wav b.wav --out DIR

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

from voiceconv.audio.io import save_audio
from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.audio.preparation import Preparation
from voiceconv.errors import VoiceconvError
from voiceconv.evaluation.mcd import mcd_from_mcep, world_features
from voiceconv.utils.atomic import atomic_write_json, atomic_write_text
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.griffinlim import spectral_convergence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, help="voiceconv-train-vocoder run folder (defaults for the rest)")
    p.add_argument("--vocoder", type=Path, help="vocoder checkpoint (default RUN/checkpoints/last.ckpt)")
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


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "median": statistics.median(values)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data_cfg, run_mel = _run_settings(args.run)
    ckpt = args.vocoder or (args.run / "checkpoints" / "last.ckpt" if args.run else None)
    if ckpt is None:
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
        torch_ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
        payload = torch_ckpt.get("model", torch_ckpt)  # a training checkpoint or a bare save_model payload
        mel_cfg = run_mel or MelConfig.from_dict(payload["hparams"]["mel_config"])
        vocoders = {"hifigan": load_vocoder(ckpt, mel_cfg, args.device)}
        net = getattr(vocoders["hifigan"], "net", None)
        if getattr(net, "source", None) is not None:
            # the generator's Griffin-Lim source alone (learned magnitude + Griffin-Lim, without
            # the HiFi-GAN correction): shows which part of the generator does the work
            vocoders["hifigan_source_only"] = net.make_source
        for n in args.gl_iters:
            vocoders[f"griffinlim_{n}"] = load_vocoder(f"griffinlim:{n}", mel_cfg, args.device)
    except (VoiceconvError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    step = int(torch_ckpt.get("step", -1)) if isinstance(torch_ckpt, dict) else -1
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
                         "spectral_convergence": spectral_convergence_of(ref, wav, front)}
        per_file.append(row)
        print(f"{path.parent.name}/{path.name}: " + "  ".join(
            f"{n} MCD {row[n]['mcd_db']:.2f}/{row[n]['mcd_voiced_db']:.2f} SC {row[n]['spectral_convergence']:.3f}"
            for n in vocoders), flush=True)
    if not per_file:
        print("no file could be evaluated", file=sys.stderr)
        return 1

    metrics = ("mcd_db", "mcd_voiced_db", "spectral_convergence")
    summary: dict[str, Any] = {
        name: {**{m: _summary([r[name][m] for r in per_file]) for m in metrics}, "seconds_total": seconds[name]}
        for name in vocoders
    }
    for name in vocoders:
        if name.startswith("griffinlim"):  # on how many files the neural vocoder scores better
            summary[name]["hifigan_better_on"] = {
                m: sum(r["hifigan"][m] < r[name][m] for r in per_file) for m in metrics}
    result = {"vocoder": str(ckpt), "step": step, "n_files": len(per_file),
              "mel_config": mel_cfg.to_dict(), "summary": summary, "files": per_file}
    atomic_write_json(args.out / "results.json", result)
    lines = [
        f"Held-out files: {len(per_file)}; vocoder {ckpt} (step {step}); mean (std) over files",
        "",
        "| vocoder | MCD dB, all frames | MCD dB, voiced frames | spectral convergence | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        cells = [f"{s[m]['mean']:.3f} ({s[m]['std']:.3f})" for m in metrics]
        lines.append(f"| {name} | {' | '.join(cells)} | {s['seconds_total']:.1f} |")
    for name, s in summary.items():
        if "hifigan_better_on" in s:
            wins = s["hifigan_better_on"]
            lines.append(f"\nhifigan better than {name} on: " + ", ".join(
                f"{m} {wins[m]}/{len(per_file)}" for m in metrics))
    table = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "results.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
