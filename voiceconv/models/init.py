"""Weight initialisation in the style of pytorch-CycleGAN-and-pix2pix.

Isola et al. and Zhu et al. draw convolution / linear weights from N(0, 0.02) and
batch-norm scales from N(1, 0.02); DCGAN (Radford et al.) uses the same. The other
schemes are there for experiments.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torch.nn.utils import parametrize

from voiceconv.errors import ConfigError

InitKind = Literal["normal", "xavier", "kaiming", "orthogonal"]
_KINDS = ("normal", "xavier", "kaiming", "orthogonal")

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)


def _raw_weight(module: nn.Module) -> Tensor:
    """The stored weight tensor, looking through parametrisations such as spectral norm."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def init_weights(module: nn.Module, kind: InitKind | str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise every conv / linear / batch-norm layer inside ``module`` in place.

    conv and linear weights: ``normal`` -> N(0, gain); ``xavier`` -> Xavier-normal with
    ``gain``; ``kaiming`` -> Kaiming-normal (fan-in, ReLU); ``orthogonal`` -> orthogonal
    with ``gain``; their biases -> 0. Batch-norm scale -> N(1, gain), shift -> 0
    (as pytorch-CycleGAN-and-pix2pix). Instance-norm affine parameters and embeddings keep
    PyTorch's defaults. Returns ``module`` for chaining.
    """
    if kind not in _KINDS:
        raise ConfigError(f"unknown init kind {kind!r} (expected one of {_KINDS})")
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            w = _raw_weight(m)
            if kind == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(w, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(w, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module


__all__ = ["InitKind", "init_weights"]
