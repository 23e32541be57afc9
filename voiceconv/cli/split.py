"""``voiceconv-split``: non-parallel training halves + a parallel held-out set.

    voiceconv-split --corpus cmu_arctic --root ~/data/cmu_arctic --a rms --b slt --n-eval 50 --out data/rms_slt

CycleGAN-VC's protocol on parallel corpora: the sentences both speakers recorded
are shuffled (``--seed``), ``--n-eval`` are held out for parallel evaluation, and
the rest are halved so that the two speakers never share a training sentence.
Writes ``OUT/train/<a>``, ``OUT/train/<b>``, ``OUT/eval/<a>``, ``OUT/eval/<b>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voiceconv.errors import VoiceconvError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voiceconv-split", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="folders", help="folders | vcc2018 | cmu_arctic | vctk")
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--a", required=True, help="source speaker")
    ap.add_argument("--b", required=True, help="target speaker")
    ap.add_argument("--n-eval", type=int, default=None, help="held-out sentences (default 10 %%)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from voiceconv.data.corpora import read_corpus, split_parallel
    from voiceconv.data.splits import write_split

    try:
        corpus = read_corpus(args.corpus, args.root, speakers=[args.a, args.b])
        split = split_parallel(corpus, args.a, args.b, n_eval=args.n_eval, seed=args.seed)
        folders = write_split(split, args.out)
    except VoiceconvError as err:
        print(f"voiceconv-split: {err}", file=sys.stderr)
        return 1
    for part, by_spk in folders.items():
        for spk, folder in by_spk.items():
            n = len(split.train[spk]) if part == "train" else len(split.eval[spk])
            print(f"{part:5s} {spk}: {n:4d} utterances in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
