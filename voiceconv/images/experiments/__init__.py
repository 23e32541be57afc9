"""The image experiments (one module each) and :func:`run_experiment`, which the
Hydra entry ``recipes/images/run.py`` calls."""

from voiceconv.images.experiments.runner import EXPERIMENTS, run_experiment

__all__ = ["EXPERIMENTS", "run_experiment"]
