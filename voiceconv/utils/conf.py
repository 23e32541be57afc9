"""Where the Hydra configuration tree lives, and composing from it outside a Hydra app."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONF_DIR_ENV = "VOICECONV_CONF_DIR"


def conf_dir() -> Path:
    """``$VOICECONV_CONF_DIR`` if set, else the repository's ``conf/`` beside the package."""
    env = os.environ.get(CONF_DIR_ENV)
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2] / "conf"


def compose_config(name: str, overrides: Sequence[str] = (), tree: str = "") -> Any:
    """The composed ``conf/<tree>/<name>.yaml`` with Hydra ``overrides`` (an OmegaConf
    ``DictConfig``), as the console scripts would see it. ``tree`` is a sub-tree with its own
    primary config (``"vocoder"``); the top of ``conf/`` stays on the search path so its
    groups (``mel``) resolve."""
    from hydra import compose, initialize_config_dir

    root = conf_dir()
    extra = [f"hydra.searchpath=[file://{root}]"] if tree else []
    with initialize_config_dir(config_dir=str(root / tree), version_base="1.3"):
        return compose(config_name=name, overrides=[*overrides, *extra])


__all__ = ["CONF_DIR_ENV", "compose_config", "conf_dir"]
