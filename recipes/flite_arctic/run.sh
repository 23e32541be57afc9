#!/usr/bin/env bash
# Non-parallel VC on a parallel corpus rendered with Debian's flite: rms -> slt.
#
#   bash recipes/flite_arctic/run.sh                        # CPU-sized defaults
#   bash recipes/flite_arctic/run.sh --prompts ../shared/data/arctic_a.data --steps 20000 \
#        --model maskcyclegan_vc --train-args "trainer=gpu"   # GPU scale
#   bash recipes/flite_arctic/run.sh --stage 3 --stop-stage 4  # only convert + evaluate
#
# Stages: 0 render corpus, 1 split (disjoint training halves + parallel held-out set),
#         2 preprocess, 3 train, 4 convert held-out source, 5 evaluate.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
out=runs/flite_arctic
prompts=""              # a prompt file (Festival or one sentence per line); default: the shipped list
src=rms
tgt=slt
limit=""                # use only the first N prompts
n_eval=20
steps=1000
precision=auto         # auto (the fastest on this machine: bf16 only where the CPU has it natively), bf16, fp32
model=maskcyclegan_vc_small
train_args=""           # extra Hydra overrides, e.g. "trainer=gpu trainer.batch_size=16"
device=cpu
parse_stages "$@"

if stage 0; then
    say 0 "render the corpus with flite ($src, $tgt)"
    ${BIN}voiceconv-render-corpus --voices "$src" "$tgt" --out "$out/corpus" \
        ${prompts:+--prompts "$prompts"} ${limit:+--limit "$limit"}
fi
if stage 1; then
    say 1 "split: disjoint training halves, $n_eval held-out parallel pairs"
    ${BIN}voiceconv-split --root "$out/corpus" --a "$src" --b "$tgt" --n-eval "$n_eval" --out "$out/data"
fi
if stage 2; then
    say 2 "preprocess the training halves into a feature cache"
    ${BIN}voiceconv-preprocess --corpus folders --root "$out/data/train" --speakers "$src" "$tgt" --out "$out/cache"
fi
if stage 3; then
    say 3 "train $model for $steps steps"
    # shellcheck disable=SC2086
    ${BIN}voiceconv-train data=cache data.cache_dir="$out/cache" data.speaker_a="$src" data.speaker_b="$tgt" \
        model="$model" trainer=cpu_small trainer.max_steps="$steps" trainer.decay_start=$((steps / 2)) \
        trainer.precision="$precision" trainer.device="$device" out_dir="$out/train" $train_args
fi
if stage 4; then
    say 4 "convert the held-out $src utterances"
    ${BIN}voiceconv-convert --checkpoint "$out/train/checkpoints/last.ckpt" --direction a2b \
        --device "$device" --out-dir "$out/converted" --overwrite "$out/data/eval/$src"
fi
if stage 5; then
    say 5 "evaluate against the held-out $tgt references"
    ${BIN}voiceconv-evaluate --converted "$out/converted" --reference "$out/data/eval/$tgt" \
        --source "$out/data/eval/$src" --train-cache "$out/cache" --target-speaker "$tgt" \
            --checkpoint "$out/train/checkpoints/last.ckpt" --out "$out/report"
fi
