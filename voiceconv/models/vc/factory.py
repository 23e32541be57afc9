"""Build the voice-conversion models by name, and count their parameters.

``build_vc_model("maskcyclegan_vc")`` is the paper-size MaskCycleGAN-VC;
``"..._small"`` names are the same models with every width / 4 (CPU demos, tests).
``"maskcyclegan_vc_stream_small"`` is the small MaskCycleGAN-VC with a generator that
streams (:data:`STREAM_GENERATOR`: causal convolutions, batch norm, a bounded look-ahead;
see :mod:`voiceconv.models.streaming`).
Keyword overrides go to the model constructor (``n_mels=...``, ``use_d2=False``,
``base_channels=...``, ...).
"""

from __future__ import annotations

from typing import Any

from voiceconv.errors import ConfigError
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.models.vc.cyclegan_vc2 import CycleGANVC2
from voiceconv.models.vc.maskcyclegan_vc import MaskCycleGANVC

#: the generator settings of the streaming variants: causal, 4 frames (46 ms) of look-ahead,
#: batch norm (running statistics at inference) instead of instance norm over time. Measured
#: on the flite demo (1000 steps, 20 held-out rms -> slt pairs, MCD; statistics-only shift
#: 8.81, source 9.09): batch 8.21, no norm 9.18, channel norm (over channels at each
#: position) 12.47: a per-position norm throws away the level contour the model must keep.
STREAM_GENERATOR: dict[str, Any] = {"lookahead": 4, "generator_norm": "batch"}

#: name -> (class, size preset, constructor defaults)
VC_MODELS: dict[str, tuple[type[CycleGANVC2], str, dict[str, Any]]] = {
    "maskcyclegan_vc": (MaskCycleGANVC, "paper", {}),
    "maskcyclegan_vc_small": (MaskCycleGANVC, "small", {}),
    "maskcyclegan_vc_stream_small": (MaskCycleGANVC, "small", STREAM_GENERATOR),
    "cyclegan_vc2": (CycleGANVC2, "paper", {}),
    "cyclegan_vc2_small": (CycleGANVC2, "small", {}),
}


def build_vc_model(name: str, **overrides: Any) -> CycleGANVC2:
    """A fresh VC model: one of :data:`VC_MODELS`, with constructor ``overrides``."""
    if name not in VC_MODELS:
        raise ConfigError(f"unknown VC model {name!r} (expected one of {sorted(VC_MODELS)})")
    cls, size, defaults = VC_MODELS[name]
    kwargs: dict[str, Any] = {"size": size, **defaults,
                              **{k: v for k, v in overrides.items() if v is not None or k not in defaults}}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # an override the constructor does not take
        raise ConfigError(f"build_vc_model({name!r}): {exc}") from exc


def count_parameters(model: CycleGAN, trainable_only: bool = False) -> dict[str, int]:
    """Parameter counts of a CycleGAN-style model.

    Keys: ``g_ab``, ``g_ba`` (one generator per direction), ``generators``, ``d_a``,
    ``d_b`` and, with second discriminators, ``d2_a``, ``d2_b``; ``discriminators``;
    ``total``.
    """

    def n(module: Any) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

    counts = {"g_ab": n(model.g_ab), "g_ba": n(model.g_ba)}
    counts["generators"] = counts["g_ab"] + counts["g_ba"]
    d_names = ["d_a", "d_b"] + (["d2_a", "d2_b"] if model.d2_a is not None else [])
    for name in d_names:
        counts[name] = n(getattr(model, name))
    counts["discriminators"] = sum(counts[name] for name in d_names)
    counts["total"] = n(model)
    return counts


__all__ = ["STREAM_GENERATOR", "VC_MODELS", "build_vc_model", "count_parameters"]
