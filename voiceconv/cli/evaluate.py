"""``voiceconv-evaluate``: score converted speech against parallel references.

    voiceconv-evaluate --converted OUT/wav --reference DATA/slt_eval [--source DATA/rms_eval] \\
        [--train-cache CACHE --target-speaker slt | --speaker-classifier CLF.pt] --out REPORT_DIR

Writes ``report.json``, ``report.md`` and ``plots/<stem>.png`` into ``--out``. With
``--train-cache`` two speaker classifiers (per-bin statistics; frame-level GMM) are
trained on every speaker of that feature cache (the training corpus), the first saved
as ``speaker_classifier.pt`` beside the report. With ``--source`` and speaker statistics
(``--checkpoint``, or ``--train-cache``) the statistics-only baseline is rendered into
``--out/statistics_only/`` and scored beside the conversion and the source.
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
    clf.add_argument("--train-cache", type=Path, help="feature cache of the training corpus for the speaker classifiers")
    clf.add_argument("--speaker-classifier", type=Path, help="a saved speaker classifier (.pt)")
    ap.add_argument("--target-speaker", help="speaker name the converted files should be recognised as")
    ap.add_argument("--checkpoint", type=Path,
                    help="training checkpoint whose statistics make the statistics-only baseline "
                         "(default: the --train-cache statistics)")
    ap.add_argument("--source-speaker", help="source speaker in --train-cache (default: its other speaker)")
    ap.add_argument("--vocoder", default="griffinlim",
                    help="vocoder of the statistics-only baseline: use the conversion's (default griffinlim)")
    ap.add_argument("--plots", type=int, default=5, help="number of utterances to plot")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from voiceconv.data.cache import FeatureCache
    from voiceconv.evaluation.baselines import (
        STATISTICS_ONLY_DIR,
        fit_speaker_classifiers,
        render_statistics_only,
        statistics_only_converter,
    )
    from voiceconv.evaluation.report import audio_files_by_stem, evaluate_folders, write_report
    from voiceconv.evaluation.speaker import SpeakerClassifier

    try:
        classifier = frame_classifier = cache = None
        if args.train_cache is not None:
            cache = FeatureCache(args.train_cache)
            classifier, frame_classifier = fit_speaker_classifiers(cache)
            classifier.save(args.out / "speaker_classifier.pt")
        elif args.speaker_classifier is not None:
            classifier = SpeakerClassifier.load(args.speaker_classifier)
        if classifier is not None and args.target_speaker not in classifier.speakers:
            raise VoiceconvError(
                f"--target-speaker {args.target_speaker!r} is not one of the classifier's speakers {classifier.speakers}"
            )
        stats_dir = None
        if args.source is not None and (args.checkpoint is not None or cache is not None):
            vc, direction = statistics_only_converter(args.checkpoint, cache, args.source_speaker,
                                                      args.target_speaker, args.vocoder)
            stats_dir = args.out / STATISTICS_ONLY_DIR
            print(f"statistics-only baseline ({vc.describe_direction(direction)}) -> {stats_dir}")
            for res in render_statistics_only(list(audio_files_by_stem(args.source).values()), stats_dir, vc, direction):
                if not res.ok:
                    print(f"problem: {res.message}", file=sys.stderr)
        elif args.source is not None:
            print("no statistics-only row: give --checkpoint or --train-cache for the speakers' statistics",
                  file=sys.stderr)
        report = evaluate_folders(args.converted, args.reference, args.source, classifier,
                                  args.target_speaker, args.out / "plots", args.plots,
                                  statistics_only=stats_dir, frame_classifier=frame_classifier,
                                  preparation=cache.preparation if cache is not None else None)
    except VoiceconvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for line in report.problems:
        print(f"problem: {line}", file=sys.stderr)
    js, md = write_report(report, args.out)
    print(report.to_markdown().split("\n\n## Per utterance")[0])
    print(f"report: {md} and {js}")
    return 0 if report.rows and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
