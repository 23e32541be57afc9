#!/usr/bin/env bash
# Create ./.venv with voiceconv and its dependencies, and make sure Debian's flite is present.
# Idempotent: a second run only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VOICECONV_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if ! command -v flite >/dev/null 2>&1; then
    echo "[bootstrap] installing Debian's flite (speech synthesiser for the demo corpus)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq flite >/dev/null \
        || echo "[bootstrap] WARNING: could not install flite; demo corpus rendering will fail"
fi

if ! command -v chromium >/dev/null 2>&1; then
    echo "[bootstrap] installing Debian's chromium (headless browser for the web app's tests)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null \
        || echo "[bootstrap] WARNING: could not install chromium; the web app's browser tests will fail"
fi

stamp="$VENV/.voiceconv-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[bootstrap] creating $VENV and installing voiceconv[dev,eval,app] (torch 2.11 takes about a minute)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -m pip install -q -e ".[dev,eval,app]" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import voiceconv, torch, torchaudio, librosa, soundfile, hydra, pyworld, pysptk, gradio, gradio_client, playwright" && echo "[bootstrap] ok"
    touch "$stamp"
fi
