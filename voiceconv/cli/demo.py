"""``voiceconv-demo``: the whole flite demo, end to end, on a laptop CPU.

Stages (each resumable: a second run skips what is already done):

1. **corpus**: render our shipped prompts with Debian's flite in two voices
   (``rms`` -> ``slt`` by default) at 22.05 kHz;
2. **split**: the CycleGAN-VC protocol on parallel data: disjoint halves of the
   training sentences for the two speakers (so training is non-parallel) and a
   held-out parallel set for evaluation;
3. **train**: ``voiceconv-train experiment=flite_demo`` (small MaskCycleGAN-VC) for
   ``--steps`` steps, features cached under the run folder;
4. **vocoder**: with ``--vocoder vocos`` (the default), ``voiceconv-train-vocoder
   model=vocos_small trainer=cpu_vocos`` on the same training halves of both voices for
   5000 steps (at most ``--vocoder-minutes`` CPU-minutes), into ``OUT/vocoder_run``; a finished one
   (``OUT/vocoder_run/trained.json``) is reused, an interrupted one resumes from its last
   checkpoint. ``--vocoder griffinlim`` needs no training; ``--vocoder PATH`` takes a
   neural vocoder checkpoint (Vocos, HiFi-GAN) for the same MelConfig;
5. **convert**: the held-out source utterances with that vocoder;
6. **evaluate**: MCD, DTW log-mel distance, F0 and two speaker classifiers of the
   conversions against the held-out target references, beside both yardsticks: the
   unconverted source and the statistics-only shift (same vocoder).

    voiceconv-demo --out runs/demo            # about 30 minutes on 2 CPU cores
    voiceconv-demo --out runs/demo --steps 200 --limit 40 --vocoder griffinlim   # a quick smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from voiceconv.errors import ConfigError, VoiceconvError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voiceconv-demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    ap.add_argument("--source", default="rms", help="flite voice converted from")
    ap.add_argument("--target", default="slt", help="flite voice converted to")
    ap.add_argument("--steps", type=int, default=1000, help="training steps")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    ap.add_argument("--n-eval", type=int, default=20, help="held-out parallel utterances")
    ap.add_argument("--prompts", type=Path, default=None, help="prompt file (default: the shipped list)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="maskcyclegan_vc_small")
    ap.add_argument("--precision", default="auto",
                    help="training and conversion precision: auto (the fastest on this machine), bf16 or fp32")
    ap.add_argument("--threads", default="auto", help="training threads: auto (the fastest here) or a number")
    ap.add_argument("--vocoder", default="vocos", metavar="vocos|griffinlim[:N[:M]]|PATH",
                    help="vocoder of the conversions and of the statistics-only yardstick: vocos (train"
                         " vocos_small on the training halves, or reuse OUT/vocoder_run), Griffin-Lim (no"
                         " training) or a neural vocoder checkpoint (Vocos, HiFi-GAN) for the same MelConfig")
    ap.add_argument("--vocoder-minutes", type=float, default=15.0,
                    help="cap on vocos_small's training in CPU-minutes (--vocoder vocos; one thread;"
                         " its 5000 steps take about 14 on a recent x86 core)")
    ap.add_argument("--train-override", action="append", default=[],
                    help="extra Hydra override for training, e.g. trainer.batch_size=4 (repeatable)")
    return ap


def _stage(n: int, text: str) -> float:
    print(f"\n== stage {n}: {text}", flush=True)
    return time.perf_counter()


def run_demo(args: argparse.Namespace) -> int:
    from voiceconv.conversion.converter import VoiceConverter
    from voiceconv.data.cache import FeatureCache
    from voiceconv.data.corpora import read_speaker_folders, split_parallel
    from voiceconv.data.flite import render_corpus
    from voiceconv.data.prompts import load_prompts
    from voiceconv.data.splits import write_split
    from voiceconv.evaluation.baselines import (
        STATISTICS_ONLY_DIR,
        fit_speaker_classifiers,
        render_statistics_only,
        statistics_only_converter,
    )
    from voiceconv.evaluation.report import evaluate_folders, write_report
    from voiceconv.training.vc_run import train_vc as train_run
    from voiceconv.utils.conf import compose_config

    out = args.out.resolve()
    src, tgt = args.source, args.target
    t_all = time.perf_counter()

    t = _stage(1, f"render the corpus with flite ({src}, {tgt})")
    prompts = load_prompts(args.prompts)
    render_corpus(prompts, voices=(src, tgt), out_dir=out / "corpus", sample_rate=22050,
                  workers=args.workers, limit=args.limit)
    print(f"   {out / 'corpus'} ({time.perf_counter() - t:.0f} s)")

    t = _stage(2, "non-parallel training split + parallel held-out set")
    corpus = read_speaker_folders(out / "corpus", speakers=[src, tgt])
    split = split_parallel(corpus, src, tgt, n_eval=args.n_eval, seed=0)
    write_split(split, out)
    print(f"   train: {src} {len(split.train[src])} / {tgt} {len(split.train[tgt])} utterances "
          f"(no sentence shared); held out: {len(split.eval[src])} parallel pairs")

    t = _stage(3, f"train {args.model} for {args.steps} steps on {args.device}")
    overrides = [
        "experiment=flite_demo", f"model={args.model}", f"data.a_dir={out / 'train' / src}",
        f"data.b_dir={out / 'train' / tgt}", f"data.speaker_a={src}", f"data.speaker_b={tgt}",
        f"data.workers={args.workers}", f"trainer.max_steps={args.steps}", f"trainer.device={args.device}",
        f"trainer.precision={args.precision}", f"trainer.threads={args.threads}", f"trainer.ckpt_every={max(args.steps // 4, 1)}",
        f"trainer.decay_start={args.steps // 2}", "trainer.total_steps=null",
        f"out_dir={out / 'train_run'}", *args.train_override,
    ]
    train_run(compose_config("train", overrides))
    ckpt = out / "train_run" / "checkpoints" / "last.ckpt"
    print(f"   checkpoint {ckpt} ({time.perf_counter() - t:.0f} s)")

    vocoder = args.vocoder
    if vocoder == "vocos":
        t = _stage(4, f"train the vocoder (vocos_small, 5000 steps, at most {args.vocoder_minutes:g} CPU-minutes)")
        vocoder = str(_train_vocos(out, src, tgt, args.vocoder_minutes, args.device))
        print(f"   vocoder {vocoder} ({time.perf_counter() - t:.0f} s)")
    else:
        _stage(4, f"vocoder: {vocoder} (no training)")

    t = _stage(5, f"convert the held-out {src} utterances to {tgt}")
    conv = VoiceConverter.from_checkpoint(ckpt, device=args.device, vocoder=vocoder,
                                          precision=args.precision)
    sources = sorted((out / "eval" / src).glob("*.wav"))
    results = conv.convert_files(sources, out / "converted", direction="a2b", overwrite=True)
    stats_vc, _ = statistics_only_converter(ckpt, vocoder=vocoder, device=args.device)
    results += render_statistics_only(sources, out / "report" / STATISTICS_ONLY_DIR, stats_vc, "a2b")
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"   failed: {r.message}", file=sys.stderr)
    print(f"   {len(sources)} files in {out / 'converted'}, their statistics-only shift in "
          f"{out / 'report' / STATISTICS_ONLY_DIR} ({time.perf_counter() - t:.0f} s)")

    t = _stage(6, "evaluate against the held-out references")
    cache = FeatureCache(out / "train_run" / "cache")
    clf, frame_clf = fit_speaker_classifiers(cache)
    report = evaluate_folders(out / "converted", out / "eval" / tgt, out / "eval" / src, clf, tgt,
                              out / "report" / "plots", max_plots=5,
                              statistics_only=out / "report" / STATISTICS_ONLY_DIR, frame_classifier=frame_clf,
                              preparation=cache.preparation)
    js, md = write_report(report, out / "report")
    print(f"   ({time.perf_counter() - t:.0f} s)")
    print("\n== result (held-out " + f"{src} -> {tgt})\n")
    print(report.to_markdown().split("\n\n## Per utterance")[0].split("pairs.\n\n", 1)[-1])
    print(f"   wavs:   {out / 'converted'}")
    print(f"   plots:  {out / 'report' / 'plots'}")
    print(f"   report: {md}")
    print(f"   total {time.perf_counter() - t_all:.0f} s")
    return 0 if not failed and not report.problems else 1


def _train_vocos(out: Path, src: str, tgt: str, minutes: float, device: str) -> Path:
    """``OUT/vocoder_run/checkpoints/last.ckpt``: ``vocos_small`` trained on the demo's
    training halves (``cpu_vocos``: 5000 steps, stopped early after ``minutes`` CPU-minutes),
    or the one a previous run finished."""
    import json

    from voiceconv.training.vocoder_run import train_vocoder
    from voiceconv.utils.atomic import atomic_write_text
    from voiceconv.utils.conf import compose_config

    run_dir = out / "vocoder_run"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    marker = run_dir / "trained.json"
    if marker.is_file() and ckpt.is_file():
        print(f"   reusing the vocoder trained by an earlier run ({marker})")
        return ckpt
    if not minutes > 0:
        raise ConfigError(f"--vocoder-minutes must be > 0, got {minutes}")
    overrides = [
        "model=vocos_small", "trainer=cpu_vocos", f"data.dirs=[{out / 'train' / src},{out / 'train' / tgt}]",
        f"out_dir={run_dir}", f"trainer.max_cpu_minutes={minutes}", f"trainer.device={device}",
    ]
    result = train_vocoder(compose_config("config", overrides, tree="vocoder"))
    atomic_write_text(marker, json.dumps({"model": "vocos_small", "cpu_minutes": minutes,
                                          "step": int(result.step)}) + "\n")
    return ckpt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_demo(args)
    except VoiceconvError as err:
        print(f"voiceconv-demo: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
