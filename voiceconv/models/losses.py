"""Adversarial losses on discriminator *logits* (no sigmoid inside the discriminators).

With ``r`` the logits on real data and ``f`` those on generated data
(``softplus(x) = log(1 + e^x)``, so ``-log sigmoid(x) = softplus(-x)``):

============== ======================================= ===========================
mode           discriminator loss                      generator loss
============== ======================================= ===========================
vanilla        ``softplus(-r) + softplus(f)``          ``-softplus(f)``  (= log(1 - D(G(z))))
nonsaturating  ``softplus(-r) + softplus(f)``          ``softplus(-f)``  (= -log D(G(z)))
lsgan          ``(r - 1)^2 + f^2``                     ``(f - 1)^2``
hinge          ``relu(1 - r) + relu(1 + f)``           ``-f``
============== ======================================= ===========================

each averaged over all logits. ``vanilla`` is Goodfellow et al.'s minimax game with
its saturating generator loss; ``nonsaturating`` is the variant they recommend in
practice (what pytorch-CycleGAN-and-pix2pix calls "vanilla"). ``lsgan`` is Mao et
al.'s least-squares GAN with a=0, b=c=1; the paper's 1/2 factors are left out (a
constant scale); CycleGAN's halving of the discriminator loss is applied by the
CycleGAN container. ``hinge`` is Lim & Ye / Miyato et al.

Multi-scale discriminators: every function also accepts a sequence of logit tensors
(one per scale) and returns the **sum** of the per-scale losses (pix2pixHD, HiFi-GAN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from voiceconv.errors import ConfigError

GANMode = Literal["vanilla", "nonsaturating", "lsgan", "hinge"]
GAN_MODES: tuple[str, ...] = ("vanilla", "nonsaturating", "lsgan", "hinge")
Logits = Tensor | Sequence[Tensor]


def _as_list(logits: Logits) -> list[Tensor]:
    if isinstance(logits, Tensor):
        return [logits]
    out = list(logits)
    if not out:
        raise ValueError("empty list of logits")
    return out


class GANLoss:
    """Adversarial loss of one ``mode`` (see the module docstring for the formulas).

    ``generator_loss(fake_logits)`` and ``discriminator_loss(real_logits, fake_logits)``
    give the two players' losses. ``loss(logits, target_is_real)`` (also ``__call__``)
    is the classic pytorch-CycleGAN-and-pix2pix criterion — the discriminator-side
    term for one target: BCE against 1/0 (vanilla, nonsaturating), squared error
    against 1/0 (lsgan), ``relu(1 -+ x)`` (hinge).
    """

    def __init__(self, mode: GANMode | str = "lsgan") -> None:
        if mode not in GAN_MODES:
            raise ConfigError(f"unknown GAN loss mode {mode!r} (expected one of {GAN_MODES})")
        self.mode = str(mode)

    def __repr__(self) -> str:
        return f"GANLoss(mode={self.mode!r})"

    def _term(self, x: Tensor, target_is_real: bool) -> Tensor:
        if self.mode in ("vanilla", "nonsaturating"):
            return F.softplus(-x).mean() if target_is_real else F.softplus(x).mean()
        if self.mode == "lsgan":
            return ((x - 1.0) ** 2).mean() if target_is_real else (x**2).mean()
        return F.relu(1.0 - x).mean() if target_is_real else F.relu(1.0 + x).mean()

    def loss(self, logits: Logits, target_is_real: bool) -> Tensor:
        """Discriminator-side loss pushing ``logits`` towards "real" or "fake" (summed over scales)."""
        return torch.stack([self._term(x, target_is_real) for x in _as_list(logits)]).sum()

    __call__ = loss

    def discriminator_loss(self, real_logits: Logits, fake_logits: Logits) -> Tensor:
        """Real term + fake term (summed over scales)."""
        real, fake = _as_list(real_logits), _as_list(fake_logits)
        if len(real) != len(fake):
            raise ValueError(f"{len(real)} real vs {len(fake)} fake logit tensors")
        return self.loss(real, True) + self.loss(fake, False)

    def generator_loss(self, fake_logits: Logits) -> Tensor:
        """The generator's loss on the discriminator's logits for generated data."""
        terms = []
        for f in _as_list(fake_logits):
            if self.mode == "vanilla":
                terms.append(-F.softplus(f).mean())
            elif self.mode == "nonsaturating":
                terms.append(F.softplus(-f).mean())
            elif self.mode == "lsgan":
                terms.append(((f - 1.0) ** 2).mean())
            else:
                terms.append(-f.mean())
        return torch.stack(terms).sum()


def gradient_penalty(critic_output: Tensor, inputs: Tensor, target_norm: float = 1.0) -> Tensor:
    """WGAN-GP penalty ``E[(||grad_x D(x)||_2 - target)^2]`` (Gulrajani et al. 2017).

    ``critic_output`` must have been computed from ``inputs`` (which requires grad);
    the graph is kept so the penalty can be back-propagated into the critic.
    """
    (grad,) = torch.autograd.grad(critic_output.sum(), inputs, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return ((norms - target_norm) ** 2).mean()


__all__ = ["GANLoss", "GANMode", "GAN_MODES", "gradient_penalty"]
