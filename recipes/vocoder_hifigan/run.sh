#!/usr/bin/env bash
# Vocoder recipe (HiFi-GAN, Vocos): flite corpus -> train -> compare with Griffin-Lim on held-out files.
#
#   recipes/vocoder_hifigan/run.sh [--stage N] [--stop-stage N] [--data DIR] [--out DIR]
#                                  [--model hifigan_gl_small|vocos_small|...] [--trainer T] [--steps N]
#                                  [--holdout N] [--g-lr LR] [--gl-iters "32 100"]
#                                  [--compare NAME=CKPT ...] [-- extra Hydra overrides]
#
#   stage 0  render rms + slt with flite (voiceconv-render-corpus; skipped files already there)
#   stage 1  train (voiceconv-train-vocoder; re-running resumes from OUT/checkpoints/last.ckpt)
#   stage 2  resynthesise the held-out files with the vocoder, with Griffin-Lim and with every
#            --compare checkpoint, and score them (MCD, SC, wideband PESQ; per-file wins;
#            scripts/eval_vocoder.py -> OUT/eval/results.{json,md})
#
# The defaults are the measured CPU run of README.md: HiFi-GAN with a Griffin-Lim source and a
# learned magnitude net (hifigan_gl_small), 5000 steps on one core, generator lr 1e-4 (3e-4 and
# 1e-3 made the magnitude net diverge). The earlier from-scratch CPU run:
#   run.sh --model hifigan_small --trainer cpu_small --g-lr 1e-3 --steps 8000
# A paper-style GPU run:
#   run.sh --model hifigan_v2 --trainer default --g-lr 2e-4 --steps 500000 -- trainer.device=cuda
# Vocos on the CPU (trainer cpu_vocos: 5000 steps, about 14 minutes of CPU time on one thread), scored beside a
# hifigan_gl_small run:
#   run.sh --model vocos_small --out RUN_V --compare hifigan_gl_small=RUN_H/checkpoints/last.ckpt
# Vocos at the paper's size on a GPU: run.sh --model vocos --trainer vocos_gpu -- trainer.device=cuda
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"

stage=0
stop_stage=2
data="$repo/runs/vocoder_hifigan/flite"
out="$repo/runs/vocoder_hifigan/hifigan_gl_small"
model=hifigan_gl_small
trainer=""
steps=""
holdout=10
g_lr=""
gl_iters="32"
compare=()
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
    --compare) compare+=("$2"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# Per-model defaults: the measured CPU runs of README.md.
case "$model" in
  vocos_small_integrated|vocos_stream_small) trainer="${trainer:-cpu_vocos_adv}" ;;  # as measured
  vocos*) trainer="${trainer:-cpu_vocos}" ;;                       # lr, steps and time limit: the config's
  hifigan_gl*) trainer="${trainer:-cpu_gl}"; steps="${steps:-5000}"; g_lr="${g_lr:-1e-4}" ;;
  *) trainer="${trainer:-cpu_gl}"; steps="${steps:-5000}" ;;
esac
overrides=()
[[ -n "$steps" ]] && overrides+=("trainer.max_steps=$steps")
[[ -n "$g_lr" ]] && overrides+=("optimizer.generator.lr=$g_lr")
if [[ "$out" == "$repo/runs/vocoder_hifigan/hifigan_gl_small" && "$model" != hifigan_gl_small ]]; then
  out="$repo/runs/vocoder_hifigan/$model"
fi

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
  echo "== stage 1: train $model ($trainer${steps:+, $steps steps}) in $out"
  tool voiceconv-train-vocoder voiceconv.cli.train_vocoder \
    "data.dirs=[$data/rms,$data/slt]" "data.holdout=$holdout" "out_dir=$out" \
    "model=$model" "trainer=$trainer" ${overrides[@]+"${overrides[@]}"} \
    ${extra[@]+"${extra[@]}"}
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  echo "== stage 2: held-out resynthesis, $model vs Griffin-Lim${compare[*]:+ and ${compare[*]}}"
  # shellcheck disable=SC2086  # gl_iters is a list of numbers
  "$py" "$repo/scripts/eval_vocoder.py" --run "$out" --out "$out/eval" --gl-iters $gl_iters \
    --vocoder "${model%%_*}=$out/checkpoints/last.ckpt" ${compare[@]+"${compare[@]}"}
fi
