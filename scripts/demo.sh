#!/usr/bin/env bash
# Install everything (first run) and run the flite demo end to end:
# render corpus -> preprocess -> train -> train the Vocos vocoder -> convert -> evaluate.
# Extra arguments go to voiceconv-demo (--vocoder griffinlim skips the vocoder training).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/voiceconv-demo --out runs/demo "$@"
