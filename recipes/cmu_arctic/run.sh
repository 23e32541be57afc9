#!/usr/bin/env bash
# CMU ARCTIC from a local copy (no downloads): bdl -> slt by default, paper settings.
#
#   bash recipes/cmu_arctic/run.sh --root ~/data/cmu_arctic [--src bdl --tgt slt] [--device cuda]
#
# ROOT holds cmu_us_<spk>_arctic/wav/*.wav (+ etc/txt.done.data). ARCTIC is parallel, so
# stage 0 gives each speaker a disjoint half of the sentences (non-parallel training) and
# holds out --n-eval sentences for parallel evaluation. Stages: 0 split, 1 preprocess,
# 2 train, 3 convert, 4 evaluate. Only stage 0 knows the corpus layout.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
root=""
src=bdl
tgt=slt
n_eval=50
out=""
model=maskcyclegan_vc
steps=200000
device=cuda
train_args=""
parse_stages "$@"
[ -n "$root" ] || { echo "give --root DIR (your local CMU ARCTIC copy)" >&2; exit 2; }
out=${out:-runs/cmu_arctic_${src}_${tgt}}

if stage 0; then
    say 0 "split $src/$tgt: disjoint training halves + $n_eval held-out parallel sentences"
    ${BIN}voiceconv-split --corpus cmu_arctic --root "$root" --a "$src" --b "$tgt" --n-eval "$n_eval" --out "$out/data"
fi
if stage 1; then
    say 1 "preprocess"
    ${BIN}voiceconv-preprocess --corpus folders --root "$out/data/train" --speakers "$src" "$tgt" --out "$out/cache"
fi
if stage 2; then
    say 2 "train $model ($steps steps) on $device"
    # shellcheck disable=SC2086
    ${BIN}voiceconv-train data=cache data.cache_dir="$out/cache" data.speaker_a="$src" data.speaker_b="$tgt" \
        model="$model" trainer.max_steps="$steps" trainer.device="$device" out_dir="$out/train" $train_args
fi
if stage 3; then
    say 3 "convert held-out $src"
    ${BIN}voiceconv-convert --checkpoint "$out/train/checkpoints/last.ckpt" --direction a2b --device "$device" \
        --out-dir "$out/converted" --overwrite "$out/data/eval/$src"
fi
if stage 4; then
    say 4 "evaluate"
    ${BIN}voiceconv-evaluate --converted "$out/converted" --reference "$out/data/eval/$tgt" \
        --source "$out/data/eval/$src" --train-cache "$out/cache" --target-speaker "$tgt" \
            --checkpoint "$out/train/checkpoints/last.ckpt" --out "$out/report"
fi
