#!/usr/bin/env bash
# VCC 2018 from a local copy (no downloads), MaskCycleGAN-VC at paper size.
#
#   bash recipes/vcc2018/run.sh --root ~/data/vcc2018 --src VCC2SF3 --tgt VCC2TM3 [--device cuda]
#
# ROOT holds vcc2018_training/<SPK>/*.wav and vcc2018_evaluation/<SPK>/*.wav; the
# evaluation references of the target speaker (vcc2018_reference/<SPK>, released after
# the challenge) are optional: without them stage 4 is skipped. Stages: 0 preprocess the
# training set, 1 train, 2 (nothing: VCC's training data is already non-parallel in use),
# 3 convert the evaluation set, 4 evaluate.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
root=""
src=VCC2SF3
tgt=VCC2TM3
out=""
model=maskcyclegan_vc
steps=500000
device=cuda
train_args=""
parse_stages "$@"
[ -n "$root" ] || { echo "give --root DIR (your local VCC 2018 copy)" >&2; exit 2; }
out=${out:-runs/vcc2018_${src}_${tgt}}

if stage 0; then
    say 0 "preprocess VCC 2018 training data of $src and $tgt"
    ${BIN}voiceconv-preprocess --corpus vcc2018 --root "$root" --split train --speakers "$src" "$tgt" --out "$out/cache"
fi
if stage 1; then
    say 1 "train $model ($steps steps) on $device"
    # shellcheck disable=SC2086
    ${BIN}voiceconv-train data=cache data.cache_dir="$out/cache" data.speaker_a="$src" data.speaker_b="$tgt" \
        model="$model" trainer.max_steps="$steps" trainer.device="$device" out_dir="$out/train" $train_args
fi
if stage 3; then
    say 3 "convert the evaluation utterances of $src"
    ${BIN}voiceconv-convert --checkpoint "$out/train/checkpoints/last.ckpt" --direction a2b --device "$device" \
        --out-dir "$out/converted" --overwrite "$root/vcc2018_evaluation/$src"
fi
if stage 4; then
    ref="$root/vcc2018_reference/$tgt"
    if [ -d "$ref" ]; then
        say 4 "evaluate against $ref"
        ${BIN}voiceconv-evaluate --converted "$out/converted" --reference "$ref" \
            --source "$root/vcc2018_evaluation/$src" --train-cache "$out/cache" --target-speaker "$tgt" \
            --checkpoint "$out/train/checkpoints/last.ckpt" --out "$out/report"
    else
        echo "stage 4 skipped: no target references at $ref"
    fi
fi
