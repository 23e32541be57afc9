"""Voice-conversion models built from the shared core: CycleGAN-VC2 and MaskCycleGAN-VC."""

from voiceconv.models.vc.cyclegan_vc2 import (
    SIZES,
    CycleGANVC2,
    Generator212,
    PatchDiscriminator2D,
    VC2Size,
)
from voiceconv.models.vc.factory import VC_MODELS, build_vc_model, count_parameters
from voiceconv.models.vc.maskcyclegan_vc import MaskCycleGANVC, make_temporal_mask

__all__ = [
    "SIZES",
    "VC_MODELS",
    "CycleGANVC2",
    "Generator212",
    "MaskCycleGANVC",
    "PatchDiscriminator2D",
    "VC2Size",
    "build_vc_model",
    "count_parameters",
    "make_temporal_mask",
]
