"""CycleGAN (Zhu et al. 2017): a generic two-domain container, plus its ResNet generator.

:class:`CycleGAN` holds two generators and two (or four) discriminators and knows
the CycleGAN objective; it does not know what its nets look like, so the same class
trains image-to-image CycleGANs on ``(B, C, H, W)`` images and the voice-conversion
models of :mod:`voiceconv.models.vc` on ``(B, n_mels, T)`` mel spectrograms.
Subclasses change behaviour through :meth:`CycleGAN.translate` (e.g. MaskCycleGAN-VC
masks the input of the forward pass) and :meth:`CycleGAN.convert`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from voiceconv.errors import ConfigError
from voiceconv.models.base import SavableModule, build_from_description, frozen
from voiceconv.models.blocks import ConvNormAct, NormKind, ResidualBlock
from voiceconv.models.image_pool import ImagePool
from voiceconv.models.losses import GANLoss

TranslateKind = Literal["forward", "cycle", "identity"]
Direction = Literal["a2b", "b2a"]


class ResnetGenerator(SavableModule):
    """ResNet-based CycleGAN generator (Zhu et al. 2017, after Johnson et al. 2016), 1D or 2D.

    ``c7s1-base, d(2*base), d(4*base), R(4*base) x n_blocks, u(2*base), u(base), c7s1-out``:
    reflection-padded 7-wide convolutions at both ends, ``n_downsampling`` stride-2
    convolutions, plain residual blocks, transposed convolutions back up.
    ``output_activation="tanh"`` (the paper, for images in [-1, 1]); use ``"none"`` for
    unbounded targets such as normalised log-mels. Spatial sizes must be divisible by
    ``2 ** n_downsampling`` for the output to match the input.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        n_blocks: int = 9,
        dim: int = 2,
        norm: NormKind | str = "instance",
        n_downsampling: int = 2,
        dropout: float = 0.0,
        output_activation: Literal["tanh", "none"] | str = "tanh",
    ) -> None:
        super().__init__()
        self.save_hparams(in_channels=in_channels, out_channels=out_channels,
                          base_channels=base_channels, n_blocks=n_blocks, dim=dim, norm=norm,
                          n_downsampling=n_downsampling, dropout=dropout,
                          output_activation=output_activation)
        if output_activation not in ("tanh", "none"):
            raise ConfigError(f"output_activation must be 'tanh' or 'none', got {output_activation!r}")
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, base_channels, 7, 1, 3, dim, norm, "relu",
                        padding_mode="reflect")
        ]
        ch = base_channels
        for _ in range(n_downsampling):
            layers.append(ConvNormAct(ch, ch * 2, 3, 2, 1, dim, norm, "relu"))
            ch *= 2
        for _ in range(n_blocks):
            layers.append(ResidualBlock(ch, dim, norm, "plain", dropout=dropout))
        for _ in range(n_downsampling):
            layers.append(ConvNormAct(ch, ch // 2, 3, 2, 1, dim, norm, "relu", transpose=True,
                                      output_padding=1))
            ch //= 2
        layers.append(ConvNormAct(ch, out_channels, 7, 1, 3, dim, "none", output_activation,
                                  bias=True, padding_mode="reflect"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@dataclass
class GeneratorOutput:
    """Result of :meth:`CycleGAN.generator_step`.

    ``loss`` carries the graph; ``logs`` are detached scalars; the four tensors are
    detached copies for the discriminator step (so it never re-runs the generators).
    """

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    fake_a: Tensor | None = None
    fake_b: Tensor | None = None
    cycle_a: Tensor | None = None
    cycle_b: Tensor | None = None


def _child(value: Any, name: str, optional: bool = False) -> SavableModule | None:
    """Accept a built SavableModule or its ``describe()`` dict (the load path)."""
    if value is None:
        if optional:
            return None
        raise ConfigError(f"CycleGAN: {name} is required")
    if isinstance(value, SavableModule):
        return value
    if isinstance(value, dict):
        return build_from_description(value)
    raise ConfigError(
        f"CycleGAN: {name} must be a SavableModule or its describe() dict, got {type(value).__name__}"
    )


class CycleGAN(SavableModule):
    """Two-domain CycleGAN container (Zhu et al. 2017) with CycleGAN-VC/-VC2 options.

    Generator objective (:meth:`generator_step`)::

        adv(D_b(G_ab(a))) + adv(D_a(G_ba(b)))
        [+ adv(D2_a(G_ba(G_ab(a)))) + adv(D2_b(G_ab(G_ba(b))))]      two-step adversarial (VC2)
        + lambda_cycle * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)
        + w_id(step) * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1)

    ``adv`` is :meth:`GANLoss.generator_loss` of ``gan_mode`` (LSGAN by default, as in
    CycleGAN and CycleGAN-VC/-VC2). The identity term is weighted by
    :meth:`identity_weight` — CycleGAN-VC uses it only for the first 10^4 iterations
    (``identity_steps``); the identity passes are skipped entirely once the weight
    is zero. ``d2_a``/``d2_b`` are CycleGAN-VC2's second discriminators, judging
    *cycled* features against real ones.

    Discriminator objective (:meth:`discriminator_loss`): for each discriminator,
    ``0.5 * (real term + fake term)`` — the halving is CycleGAN's ("we divide the
    objective by 2 while optimizing D") and is applied in every ``gan_mode``; with
    LSGAN it makes the loss the average of the real and fake halves. Fakes come
    detached from the :class:`GeneratorOutput`, through an :class:`ImagePool` of
    ``pool_size`` (0 = off; Zhu et al. use 50). Cycled features for ``d2_*`` are not
    pooled.

    Saving: children are stored in the hparams as their ``describe()`` dicts and the
    constructor accepts either modules or those dicts, so ``save_model``/``load_model``
    round-trip the container with no special support from :mod:`voiceconv.models.base`.
    A subclass that takes plain constructor arguments and builds its own nets should
    call ``self.save_hparams(...)`` *after* ``super().__init__`` to replace these.
    """

    def __init__(
        self,
        g_ab: SavableModule | dict[str, Any],
        g_ba: SavableModule | dict[str, Any],
        d_a: SavableModule | dict[str, Any],
        d_b: SavableModule | dict[str, Any],
        d2_a: SavableModule | dict[str, Any] | None = None,
        d2_b: SavableModule | dict[str, Any] | None = None,
        *,
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 5.0,
        identity_steps: int | None = None,
        pool_size: int = 0,
    ) -> None:
        super().__init__()
        self.g_ab = _child(g_ab, "g_ab")
        self.g_ba = _child(g_ba, "g_ba")
        self.d_a = _child(d_a, "d_a")
        self.d_b = _child(d_b, "d_b")
        self.d2_a = _child(d2_a, "d2_a", optional=True)
        self.d2_b = _child(d2_b, "d2_b", optional=True)
        if (self.d2_a is None) != (self.d2_b is None):
            raise ConfigError("CycleGAN: give both second discriminators d2_a and d2_b, or neither")
        if lambda_cycle < 0 or lambda_identity < 0:
            raise ConfigError("CycleGAN: lambda_cycle and lambda_identity must be >= 0")
        if identity_steps is not None and identity_steps < 0:
            raise ConfigError(f"CycleGAN: identity_steps must be >= 0 or None, got {identity_steps}")
        self.gan_loss = GANLoss(gan_mode)
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = float(lambda_identity)
        self.identity_steps = identity_steps
        self.pool_a = ImagePool(pool_size)
        self.pool_b = ImagePool(pool_size)
        self.save_hparams(
            g_ab=self.g_ab.describe(), g_ba=self.g_ba.describe(),
            d_a=self.d_a.describe(), d_b=self.d_b.describe(),
            d2_a=self.d2_a.describe() if self.d2_a is not None else None,
            d2_b=self.d2_b.describe() if self.d2_b is not None else None,
            gan_mode=gan_mode, lambda_cycle=lambda_cycle, lambda_identity=lambda_identity,
            identity_steps=identity_steps, pool_size=pool_size,
        )

    @property
    def has_second_discriminators(self) -> bool:
        """True when the CycleGAN-VC2 two-step adversarial loss is on."""
        return self.d2_a is not None

    # ----------------------------------------------------------------- hooks
    def translate(self, g: nn.Module, x: Tensor, kind: TranslateKind | str) -> Tensor:
        """Run generator ``g`` on ``x`` for a ``kind`` of pass ("forward", "cycle", "identity").

        The base class ignores ``kind`` and returns ``g(x)``; subclasses override it
        (MaskCycleGAN-VC masks frames of the forward input).
        """
        return g(x)

    def identity_weight(self, step: int) -> float:
        """``lambda_identity`` while ``identity_steps`` is None or ``step < identity_steps``, else 0."""
        if self.identity_steps is None or step < self.identity_steps:
            return self.lambda_identity
        return 0.0

    # -------------------------------------------------------------- training
    def generator_step(
        self, real_a: Tensor, real_b: Tensor, step: int, identity_weight: float | None = None
    ) -> GeneratorOutput:
        """Generator loss for one batch of each domain (see the class docstring).

        ``identity_weight`` overrides :meth:`identity_weight` (a trainer whose identity
        schedule is a fraction of its run passes it in).
        """
        w_id = self.identity_weight(step) if identity_weight is None else float(identity_weight)
        fake_b = self.translate(self.g_ab, real_a, "forward")
        cycle_a = self.translate(self.g_ba, fake_b, "cycle")
        fake_a = self.translate(self.g_ba, real_b, "forward")
        cycle_b = self.translate(self.g_ab, fake_a, "cycle")

        adv = self.gan_loss.generator_loss(self.d_b(fake_b)) + self.gan_loss.generator_loss(
            self.d_a(fake_a)
        )
        zero = adv.new_zeros(())
        adv2 = zero
        if self.d2_a is not None and self.d2_b is not None:
            adv2 = self.gan_loss.generator_loss(self.d2_a(cycle_a)) + self.gan_loss.generator_loss(
                self.d2_b(cycle_b)
            )
        cycle = F.l1_loss(cycle_a, real_a) + F.l1_loss(cycle_b, real_b)
        identity = zero
        if w_id > 0:
            id_b = self.translate(self.g_ab, real_b, "identity")
            id_a = self.translate(self.g_ba, real_a, "identity")
            identity = F.l1_loss(id_b, real_b) + F.l1_loss(id_a, real_a)
        loss = adv + adv2 + self.lambda_cycle * cycle + w_id * identity
        logs = {
            "g_adv": adv.detach(),
            "g_adv2": adv2.detach(),
            "cycle": cycle.detach(),
            "identity": identity.detach(),
            "identity_weight": adv.new_tensor(w_id).detach(),
            "g_total": loss.detach(),
        }
        return GeneratorOutput(loss=loss, logs=logs, fake_a=fake_a.detach(), fake_b=fake_b.detach(),
                               cycle_a=cycle_a.detach(), cycle_b=cycle_b.detach())

    def _d_term(self, d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * self.gan_loss.discriminator_loss(d(real), d(fake.detach()))

    def discriminator_loss(
        self, real_a: Tensor, real_b: Tensor, out: GeneratorOutput
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator loss from ``out``'s detached fakes (no generator pass is run)."""
        if out.fake_a is None or out.fake_b is None:
            raise ValueError("discriminator_loss needs a GeneratorOutput with fake_a and fake_b")
        loss_a = self._d_term(self.d_a, real_a, self.pool_a.query(out.fake_a))
        loss_b = self._d_term(self.d_b, real_b, self.pool_b.query(out.fake_b))
        loss = loss_a + loss_b
        logs = {"d_a": loss_a.detach(), "d_b": loss_b.detach()}
        if self.d2_a is not None and self.d2_b is not None:
            if out.cycle_a is None or out.cycle_b is None:
                raise ValueError("second discriminators need cycle_a and cycle_b in the GeneratorOutput")
            loss2_a = self._d_term(self.d2_a, real_a, out.cycle_a)
            loss2_b = self._d_term(self.d2_b, real_b, out.cycle_b)
            loss = loss + loss2_a + loss2_b
            logs.update(d2_a=loss2_a.detach(), d2_b=loss2_b.detach())
        logs["d_total"] = loss.detach()
        return loss, logs

    def generators(self) -> list[nn.Module]:
        """``[g_ab, g_ba]``."""
        return [self.g_ab, self.g_ba]

    def discriminators(self) -> list[nn.Module]:
        """``[d_a, d_b]`` plus ``[d2_a, d2_b]`` when present."""
        ds: list[nn.Module] = [self.d_a, self.d_b]
        if self.d2_a is not None and self.d2_b is not None:
            ds += [self.d2_a, self.d2_b]
        return ds

    def generator_parameters(self) -> Iterator[Parameter]:
        """Parameters of both generators (for the generator optimiser)."""
        return itertools.chain.from_iterable(g.parameters() for g in self.generators())

    def discriminator_parameters(self) -> Iterator[Parameter]:
        """Parameters of every discriminator (for the discriminator optimiser)."""
        return itertools.chain.from_iterable(d.parameters() for d in self.discriminators())

    def set_discriminators_trainable(self, flag: bool) -> None:
        """Toggle ``requires_grad`` of all discriminator parameters.

        Call with ``False`` before the generator step so its backward pass does not
        fill discriminator weight gradients, and with ``True`` before the D step.
        """
        for p in self.discriminator_parameters():
            p.requires_grad_(flag)

    def discriminators_frozen(self) -> contextlib.AbstractContextManager[None]:
        """Discriminator ``requires_grad`` off inside the block, restored afterwards."""
        return frozen(self.discriminator_parameters())

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def convert(self, x: Tensor, direction: Direction | str) -> Tensor:
        """Translate ``x`` from A to B (``"a2b"``) or B to A (``"b2a"``), without gradients.

        Uses ``translate(kind="forward")``; subclasses may change inference (MaskCycleGAN-VC
        uses an all-ones mask). Put the model in ``eval()`` mode first.
        """
        if direction == "a2b":
            return self.translate(self.g_ab, x, "forward")
        if direction == "b2a":
            return self.translate(self.g_ba, x, "forward")
        raise ConfigError(f"direction must be 'a2b' or 'b2a', got {direction!r}")

    def forward(self, x: Tensor, direction: Direction | str = "a2b") -> Tensor:
        """Same as :meth:`convert` but keeps gradients."""
        if direction == "a2b":
            return self.translate(self.g_ab, x, "forward")
        if direction == "b2a":
            return self.translate(self.g_ba, x, "forward")
        raise ConfigError(f"direction must be 'a2b' or 'b2a', got {direction!r}")


__all__ = ["CycleGAN", "Direction", "GeneratorOutput", "ResnetGenerator", "TranslateKind"]
