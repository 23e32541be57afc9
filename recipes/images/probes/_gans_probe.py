"""Shared by the gans probes (cgan_recipe.py, judge_recipe.py, gans_step_cost.py): the
recipe's config at ``size=small`` with Hydra overrides, and where a config's judge is
cached (one key, so cgan_recipe.py finds the judge judge_recipe.py trained)."""
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def gans_cfg(threads: int, overrides: list[str]):
    """``experiment=gans size=small`` plus ``overrides``; torch set to ``threads`` threads."""
    torch.set_num_threads(threads)
    with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
        return compose("config", overrides=["experiment=gans", "size=small", *overrides])


def judge_cache(cfg) -> Path:
    """The cached judge of ``cfg``: keyed by seed, precision, schedule and steps."""
    oc = cfg.optim.classifier
    tag = f"{oc.get('precision', 'fp32')}_{oc.get('schedule', 'constant')}_{cfg.size.steps.classifier}"
    return ROOT / f"runs/images/probes/judge_recipe_s{cfg.seed}_{tag}.pt"
