#!/usr/bin/env bash
# HiFi-GAN vocoder recipe: flite corpus -> train -> compare with Griffin-Lim on held-out files.
#
#   recipes/vocoder_hifigan/run.sh [--stage N] [--stop-stage N] [--data DIR] [--out DIR]
#                                  [--model hifigan_gl_small] [--trainer cpu_gl] [--steps N]
#                                  [--holdout N] [--g-lr 1e-4] [--gl-iters "32 100"]
#                                  [-- extra Hydra overrides]
#
#   stage 0  render rms + slt with flite (voiceconv-render-corpus; skipped files already there)
#   stage 1  train (voiceconv-train-vocoder; re-running resumes from OUT/checkpoints/last.ckpt)
#   stage 2  resynthesise the held-out files with the vocoder and with Griffin-Lim and score
#            both (scripts/eval_vocoder.py -> OUT/eval/results.{json,md})
#
# The defaults are the measured CPU run of README.md: HiFi-GAN with a Griffin-Lim source and a
# learned magnitude net (hifigan_gl_small), 5000 steps on one core, generator lr 1e-4 (3e-4 and
# 1e-3 made the magnitude net diverge). The earlier from-scratch CPU run:
#   run.sh --model hifigan_small --trainer cpu_small --g-lr 1e-3 --steps 8000
# A paper-style GPU run:
#   run.sh --model hifigan_v2 --trainer default --g-lr 2e-4 --steps 500000 -- trainer.device=cuda
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"

stage=0
stop_stage=2
data="$repo/runs/vocoder_hifigan/flite"
out="$repo/runs/vocoder_hifigan/hifigan_gl_small"
model=hifigan_gl_small
trainer=cpu_gl
steps=5000
holdout=10
g_lr=1e-4
gl_iters="32"
extra=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --trainer) trainer="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --holdout) holdout="$2"; shift 2 ;;
    --g-lr) g_lr="$2"; shift 2 ;;
    --gl-iters) gl_iters="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# A console script when the package is installed with it, else its module.
tool() {
  local script="$1" module="$2"; shift 2
  if [[ -x "$(dirname "$py")/$script" ]]; then
    "$(dirname "$py")/$script" "$@"
  else
    "$py" -m "$module" "$@"
  fi
}

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  echo "== stage 0: flite corpus in $data"
  tool voiceconv-render-corpus voiceconv.cli.render_corpus --voices rms slt --out "$data"
fi

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  echo "== stage 1: train $model ($trainer, $steps steps) in $out"
  tool voiceconv-train-vocoder voiceconv.cli.train_vocoder \
    "data.dirs=[$data/rms,$data/slt]" "data.holdout=$holdout" "out_dir=$out" \
    "model=$model" "trainer=$trainer" "trainer.max_steps=$steps" "optimizer.generator.lr=$g_lr" \
    ${extra[@]+"${extra[@]}"}
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  echo "== stage 2: held-out resynthesis, $model vs Griffin-Lim"
  # shellcheck disable=SC2086  # gl_iters is a list of numbers
  "$py" "$repo/scripts/eval_vocoder.py" --run "$out" --out "$out/eval" --gl-iters $gl_iters
fi
