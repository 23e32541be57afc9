"""Training: the CycleGAN-VC loop, checkpoints, schedules, distributed set-up, logging.

Models stay plain ``nn.Module``s in :mod:`voiceconv.models`; everything about
optimising them lives here. Import the pieces from their modules, e.g.
``from voiceconv.training.vc_trainer import VCTrainer``.
"""
