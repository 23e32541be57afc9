#!/usr/bin/env bash
# Streaming recipe: the flite demo's voices, a generator and a Vocos trained to stream, then the
# stream measured against offline conversion (quality) and over 10 minutes (compute, memory).
#
#   recipes/streaming/run.sh [--stage N] [--stop-stage N] [--out DIR] [--threads N]
#
#   stage 0  voiceconv-demo with model=maskcyclegan_vc_stream_small (renders the corpus, splits it,
#            trains 1000 steps, converts and scores the held-out set offline with Griffin-Lim)
#   stage 1  voiceconv-train-vocoder model=vocos_stream_small on the demo's training halves
#            (trainer cpu_vocos_adv: 15 minutes of CPU time on one thread)
#   stage 2  scripts/eval_stream.py: exact mode (this generator) and window mode (an offline demo
#            model, if OUT/offline_demo exists or --offline CKPT is given) on the 20 held-out pairs
#   stage 3  voiceconv-stream file mode over the held-out files for 600 s without reset, 1 thread
#   stage 4  the ONNX step graph (voiceconv-export-stream) and the same stream through onnxruntime
#
# Each stage skips what an earlier run finished (the demo and the trainer resume).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
bin="$(dirname "$py")"

stage=0
stop_stage=4
out="$repo/runs/stream"
threads=1
offline=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --offline) offline="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

demo="$out/demo_stream"
ckpt="$demo/train_run/checkpoints/last.ckpt"
vocos="$out/vocos_stream_small/checkpoints/last.ckpt"
export OMP_WAIT_POLICY=PASSIVE

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  echo "== stage 0: streaming generator on the flite demo in $demo"
  "$bin/voiceconv-demo" --out "$demo" --model maskcyclegan_vc_stream_small --threads 1 --precision fp32
fi

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  echo "== stage 1: streaming Vocos in $out/vocos_stream_small"
  "$bin/voiceconv-train-vocoder" "data.dirs=[$demo/train/rms,$demo/train/slt]" data.holdout=10 \
    "out_dir=$out/vocos_stream_small" model=vocos_stream_small trainer=cpu_vocos_adv
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  echo "== stage 2: streamed vs offline on the held-out pairs"
  systems=(--system "exact=$ckpt")
  [[ -n "$offline" ]] && systems+=(--system "window=$offline")
  "$py" "$repo/scripts/eval_stream.py" --vocoder "$vocos" "${systems[@]}" \
    --source "$demo/eval/rms" --target "$demo/eval/slt" --threads "$threads" --json "$out/eval_stream.json"
fi

if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  echo "== stage 3: 600 s of stream, file mode"
  "$bin/voiceconv-stream" --checkpoint "$ckpt" --direction a2b --vocoder "$vocos" --threads "$threads" \
    --gain auto --input "$demo/eval/rms" --min-seconds 600 --out "$out/streamed" --overwrite \
    --report-json "$out/stream_600s.json"
fi

if [[ $stage -le 4 && $stop_stage -ge 4 ]]; then
  echo "== stage 4: the ONNX step graph, and the same stream through onnxruntime"
  "$bin/voiceconv-export-stream" --checkpoint "$ckpt" --direction a2b --vocoder "$vocos" \
    --out "$out/step_a2b.onnx" --check-audio "$(ls "$demo"/eval/rms/*.wav | head -1)" --overwrite
  "$bin/voiceconv-stream" --checkpoint "$ckpt" --direction a2b --vocoder "$vocos" --threads "$threads" \
    --backend onnx --onnx "$out/step_a2b.onnx" --onnx-threads "$threads" --gain auto \
    --input "$demo/eval/rms" --min-seconds 600 --out "$out/streamed_onnx" --overwrite \
    --report-json "$out/stream_600s_onnx.json"
fi
