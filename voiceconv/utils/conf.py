"""Where the Hydra configuration tree lives."""

from __future__ import annotations

import os
from pathlib import Path

CONF_DIR_ENV = "VOICECONV_CONF_DIR"


def conf_dir() -> Path:
    """``$VOICECONV_CONF_DIR`` if set, else the repository's ``conf/`` beside the package."""
    env = os.environ.get(CONF_DIR_ENV)
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2] / "conf"


__all__ = ["CONF_DIR_ENV", "conf_dir"]
