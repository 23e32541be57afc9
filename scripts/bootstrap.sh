#!/usr/bin/env bash
# Create ./.venv with voiceconv[dev,eval,app,onnx,live] and make sure Debian's flite and chromium are present.
# Idempotent: a second run only reinstalls when pyproject.toml changed. A failed pip
# install or import check stops here (exit 1, one "[bootstrap] ..." line saying what)
# and writes no stamp, so the next run tries again. VOICECONV_VENV picks the folder,
# PYTHON the interpreter that creates it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VOICECONV_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
IMPORTS=(voiceconv torch torchaudio librosa soundfile hydra pyworld pysptk gradio gradio_client playwright onnx onnxruntime)
START=$SECONDS

say() { echo "[bootstrap] $*"; }
die() { echo "[bootstrap] $*" >&2; exit 1; }
elapsed() { echo "$((SECONDS - START)) s"; }

# apt_install PACKAGE COMMAND WHY: install a Debian package unless COMMAND exists.
apt_install() {
    local pkg="$1" cmd="$2" why="$3" sudo=""
    command -v "$cmd" >/dev/null 2>&1 && return 0
    say "installing Debian's $pkg ($why)"
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$pkg" >/dev/null
}

# pip_install ARGS...: pip with its progress lines shown (less Debian's location
# notices); any failure stops the bootstrap.
pip_install() {
    if ! "$VENV/bin/python" -m pip install "$@" 2>&1 \
            | { grep -v "^WARNING: Location" || true; }; then
        die "pip install failed ($*); see pip's messages above. Nothing was stamped; fix it and run again."
    fi
}

apt_install flite flite "speech synthesiser for the demo corpus" \
    || say "WARNING: could not install flite; demo corpus rendering will fail"

apt_install chromium chromium "headless browser for the web app's tests" \
    || say "WARNING: could not install chromium; the web app's browser tests will fail"

# PortAudio for the live mode's sounddevice (a library, so look for it rather than a command)
if ! ldconfig -p 2>/dev/null | grep -q libportaudio; then
    apt_install libportaudio2 /nonexistent-command "audio devices for voiceconv-stream --live" \
        || say "WARNING: could not install libportaudio2; voiceconv-stream --live will say so"
fi

stamp="$VENV/.voiceconv-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "1/3 creating $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV with $PYTHON (python3-venv missing?)"
    say "2/3 installing voiceconv[dev,eval,app,onnx,live]: torch 2.11 with its CUDA libraries, ~3 GB to download, 5.3 GB installed (2-6 minutes measured on a fresh 2-core machine, mostly downloading)"
    pip_install -q --upgrade pip
    pip_install -e ".[dev,eval,app,onnx,live]"
    say "3/3 checking imports ($(elapsed) so far): ${IMPORTS[*]}"
    "$VENV/bin/python" - "${IMPORTS[@]}" <<'EOF' || die "import check failed; nothing was stamped (see the line above)"
import importlib
import sys

missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report every broken module, not just the first
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
if missing:
    print("[bootstrap] cannot import: " + "; ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF
    touch "$stamp"
    say "ok: $VENV ready in $(elapsed)"
fi
