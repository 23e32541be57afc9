"""The image side: data (procedural shapes, folders, MNIST), training loops, metrics
and the experiments of ``recipes/images``.

The models themselves are the shared core in :mod:`voiceconv.models` (this room
imports it; it never imports this room). Import pieces from their modules, e.g.
``from voiceconv.images.data import ShapesDataset`` or
``from voiceconv.images.experiments import run_experiment``.
"""
