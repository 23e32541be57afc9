"""Image experiments of the shared generative-model core (thin Hydra entry).

    python recipes/images/run.py experiment=gans [size=debug|small|full] [data=shapes|folder|mnist data.root=DIR]

Experiments (``conf/images/experiment/``): ``vae_vs_betavae``, ``gans``,
``translation``, ``debias``, ``outliers``, ``diffusion``. The work is done by
:func:`voiceconv.images.experiments.run_experiment`; see ``recipes/images/README.md``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from voiceconv.images.experiments import EXPERIMENTS, run_experiment

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf" / "images")
__all__ = ["CONFIG_PATH", "EXPERIMENTS", "main", "run_experiment"]


@hydra.main(config_path="../../conf/images", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Command-line entry point (see the module docstring)."""
    metrics = run_experiment(cfg)
    print(f"{metrics['experiment']}: wrote {Path(str(cfg.out_dir)) / 'metrics.json'} ({metrics['wall_seconds']} s)")


if __name__ == "__main__":
    main()
