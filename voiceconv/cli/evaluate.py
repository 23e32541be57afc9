"""``voiceconv-evaluate``: score converted speech against parallel references.

    voiceconv-evaluate --converted OUT/wav --reference DATA/slt_eval [--source DATA/rms_eval] \\
        [--train-cache CACHE --target-speaker slt | --speaker-classifier CLF.pt] --out REPORT_DIR

Writes ``report.json``, ``report.md`` and ``plots/<stem>.png`` into ``--out``. With
``--train-cache`` a speaker classifier is trained on every speaker of that feature
cache (the training corpus) and saved as ``speaker_classifier.pt`` beside the report.
Exit status: 0 when at least one pair was scored and no file failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voiceconv.errors import VoiceconvError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voiceconv-evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--converted", required=True, type=Path, help="folder of converted files")
    ap.add_argument("--reference", required=True, type=Path, help="folder of target-speaker references (same stems)")
    ap.add_argument("--source", type=Path, help="folder of unconverted source files (baseline)")
    ap.add_argument("--out", required=True, type=Path, help="report folder")
    clf = ap.add_mutually_exclusive_group()
    clf.add_argument("--train-cache", type=Path, help="feature cache of the training corpus for the speaker classifier")
    clf.add_argument("--speaker-classifier", type=Path, help="a saved speaker classifier (.pt)")
    ap.add_argument("--target-speaker", help="speaker name the converted files should be recognised as")
    ap.add_argument("--plots", type=int, default=5, help="number of utterances to plot")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from voiceconv.evaluation.report import evaluate_folders, write_report
    from voiceconv.evaluation.speaker import SpeakerClassifier

    try:
        classifier = None
        if args.train_cache is not None:
            from voiceconv.data.cache import FeatureCache

            cache = FeatureCache(args.train_cache)
            classifier = SpeakerClassifier(cache.speakers, cache.mel_config)
            classifier.fit({s: cache.load_mels(s) for s in cache.speakers})
            classifier.save(args.out / "speaker_classifier.pt")
        elif args.speaker_classifier is not None:
            classifier = SpeakerClassifier.load(args.speaker_classifier)
        if classifier is not None and args.target_speaker not in classifier.speakers:
            raise VoiceconvError(
                f"--target-speaker {args.target_speaker!r} is not one of the classifier's speakers {classifier.speakers}"
            )
        report = evaluate_folders(args.converted, args.reference, args.source, classifier,
                                  args.target_speaker, args.out / "plots", args.plots)
    except VoiceconvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for line in report.problems:
        print(f"problem: {line}", file=sys.stderr)
    js, md = write_report(report, args.out)
    means = report.means()
    print(f"scored {len(report.rows)} pairs; " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(means.items())))
    print(f"report: {md} and {js}")
    return 0 if report.rows and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
