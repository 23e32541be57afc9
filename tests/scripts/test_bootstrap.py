"""scripts/bootstrap.sh: a failed pip install or import check stops it (exit 1, a clear
"[bootstrap] ..." message, no stamp); success writes the stamp; a stamped venv is reused.

Nothing is installed: ``PYTHON`` is a stand-in whose ``-m venv DIR`` makes a fake
``DIR/bin/python``. That fake answers ``-m pip`` with exit status ``$FAKE_PIP_RC``
and runs anything else (the import check) with this interpreter, where every
module asked for is a stub (``$FAKE_MISSING`` ones raise ModuleNotFoundError).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"

FAKE_VENV_PYTHON = r"""#!/usr/bin/env bash
if [ "${1:-}" = "-m" ] && [ "${2:-}" = "pip" ]; then
    echo "fake pip: $*"
    exit "${FAKE_PIP_RC:-0}"
fi
stubs="$(dirname "$0")/../stubs"
mkdir -p "$stubs"
for arg in "$@"; do
    case "$arg" in -*) continue ;; esac
    if [[ " ${FAKE_MISSING:-} " == *" $arg "* ]]; then
        echo "raise ModuleNotFoundError(\"No module named '$arg'\", name='$arg')" > "$stubs/$arg.py"
    else
        : > "$stubs/$arg.py"
    fi
done
PYTHONPATH="$stubs" exec "@REAL_PYTHON@" "$@"
"""

FAKE_PYTHON = r"""#!/usr/bin/env bash
# stand-in for python3: only "-m venv DIR" is needed
[ "$1 $2" = "-m venv" ] || { echo "fake python3: unexpected $*" >&2; exit 2; }
mkdir -p "$3/bin"
cp "@FAKE_VENV_PYTHON@" "$3/bin/python"
chmod +x "$3/bin/python"
"""


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, str]:
    """Environment for bootstrap.sh with the stand-ins (and ``flite``/``chromium`` on
    PATH, so that no apt-get runs)."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    venv_python = tmp_path / "fake_venv_python"
    venv_python.write_text(FAKE_VENV_PYTHON.replace("@REAL_PYTHON@", sys.executable))
    python = bin_dir / "fake-python3"
    python.write_text(FAKE_PYTHON.replace("@FAKE_VENV_PYTHON@", str(venv_python)))
    for name in ("flite", "chromium"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    for exe in (venv_python, python):
        exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "VOICECONV_", "PYTHON"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHON=str(python),
               VOICECONV_VENV=str(tmp_path / "venv"))
    return env


def bootstrap(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BOOTSTRAP)], env={**env, **extra}, capture_output=True,
                          text=True, timeout=120)


def stamp(env: dict[str, str]) -> Path:
    return Path(env["VOICECONV_VENV"]) / ".voiceconv-installed"


def test_failed_pip_install_stops_without_stamp(fakes: dict[str, str]) -> None:
    res = bootstrap(fakes, FAKE_PIP_RC="1")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "[bootstrap] pip install failed" in res.stderr
    assert "checking imports" not in res.stdout  # stopped at the first failing install
    assert not stamp(fakes).exists()


def test_failed_import_check_names_the_module_and_stops_without_stamp(fakes: dict[str, str]) -> None:
    res = bootstrap(fakes, FAKE_MISSING="pysptk")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "[bootstrap] cannot import: pysptk (ModuleNotFoundError: No module named 'pysptk')" in res.stderr
    assert "[bootstrap] import check failed" in res.stderr
    assert not stamp(fakes).exists()


def test_success_stamps_and_a_stamped_venv_is_reused(fakes: dict[str, str]) -> None:
    res = bootstrap(fakes)
    assert res.returncode == 0, res.stdout + res.stderr
    assert stamp(fakes).is_file()
    for stage in ("1/3", "2/3", "3/3"):
        assert f"[bootstrap] {stage}" in res.stdout
    assert "ready in" in res.stdout
    again = bootstrap(fakes, FAKE_PIP_RC="1")  # would fail if it installed again
    assert again.returncode == 0 and "fake pip" not in again.stdout
