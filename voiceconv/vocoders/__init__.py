"""Vocoders: log-mel -> waveform. Griffin-Lim here; neural ones load from checkpoints.

Pick one with :func:`load_vocoder` (``"griffinlim"``, ``"griffinlim:64"`` or a
checkpoint path); it refuses a vocoder made for another MelConfig.
"""

from voiceconv.vocoders.base import (
    GRIFFIN_LIM,
    NeuralVocoder,
    Vocoder,
    describe_vocoder,
    load_vocoder,
    load_vocoder_checkpoint,
    parse_griffinlim_spec,
)
from voiceconv.vocoders.griffinlim import GriffinLim, fast_griffin_lim, mel_to_magnitude

__all__ = [
    "GRIFFIN_LIM",
    "GriffinLim",
    "NeuralVocoder",
    "Vocoder",
    "describe_vocoder",
    "fast_griffin_lim",
    "load_vocoder",
    "load_vocoder_checkpoint",
    "mel_to_magnitude",
    "parse_griffinlim_spec",
]
