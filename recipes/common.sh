# Shared helpers for the staged recipes: --stage N / --stop-stage M parsing and a stage guard.
# Usage in a recipe:   source "$(dirname "$0")/../common.sh"; parse_stages "$@"; if stage 0; then ...; fi
stage_from=0
stage_to=100
extra_args=()
parse_stages() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --stage) stage_from="$2"; shift 2 ;;
            --stop-stage) stage_to="$2"; shift 2 ;;
            --*=*) key="${1%%=*}"; key="${key#--}"; key="${key//-/_}"; printf -v "$key" '%s' "${1#*=}"; shift ;;
            --*) key="${1#--}"; key="${key//-/_}"; printf -v "$key" '%s' "$2"; shift 2 ;;
            *) extra_args+=("$1"); shift ;;
        esac
    done
}
stage() { [ "$1" -ge "$stage_from" ] && [ "$1" -le "$stage_to" ]; }
say() { echo -e "\n== stage $1: $2"; }
# The console scripts of the venv beside the repo, or the ones on PATH.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$REPO/.venv/bin/voiceconv-train" ]; then BIN="$REPO/.venv/bin/"; else BIN=""; fi
