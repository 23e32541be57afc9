"""Choosing a vocoder: the :class:`Vocoder` protocol and :func:`load_vocoder`.

Conversion turns log-mels back into audio with whichever vocoder the user names:
``"griffinlim"`` (no training needed; ``"griffinlim:64"`` sets the iteration count and
``"griffinlim:32:30"`` also the NNLS iterations: quality/speed knobs) or the path of a neural vocoder checkpoint (e.g. HiFi-GAN).
Whatever it is, it must have been made for the *same* :class:`MelConfig` as the VC
model whose output it reads: a vocoder trained on other mel settings produces noise,
not an error, so :func:`load_vocoder` refuses it up front with
:class:`~voiceconv.errors.MelConfigMismatch` naming the file and every differing field.

Two checkpoint layouts are accepted, both read with ``torch.load(weights_only=True)``:

* a bare model payload as written by :func:`voiceconv.models.base.save_model`
  (``{"class", "hparams", "state_dict"}``);
* a training checkpoint holding that payload under ``"model"`` (or ``"generator"``),
  optionally with a top-level ``"mel_config"``.

The vocoder's MelConfig is taken from its hparams (``hparams["mel_config"]``), else
from the checkpoint's top-level ``"mel_config"``, else from a ``mel_config`` attribute
of the rebuilt model; a checkpoint that records none is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import CheckpointError, ConfigError
from voiceconv.models.base import build_from_description
from voiceconv.vocoders.griffinlim import GriffinLim

#: spec name of the Griffin-Lim vocoder (``"griffinlim"`` or ``"griffinlim:<iterations>"``)
GRIFFIN_LIM = "griffinlim"

#: checkpoint keys under which a training checkpoint may hold the vocoder's model payload
_PAYLOAD_KEYS = ("model", "generator")


@runtime_checkable
class Vocoder(Protocol):
    """What conversion needs from a vocoder.

    ``mel_config`` is the MelConfig of the log-mels it reads. Calling it maps natural-log
    mels ``(B, n_mels, T)`` to waveforms ``(B, samples)`` at ``mel_config.sample_rate``,
    with frame ``t`` at about sample ``t * hop_length`` (``samples`` is about
    ``T * hop_length``; callers trim or pad to the length they need). ``to(device)``
    moves it and returns it.
    """

    mel_config: MelConfig

    def __call__(self, log_mel: Tensor) -> Tensor: ...

    def to(self, device: torch.device | str) -> Any: ...


class NeuralVocoder(nn.Module):
    """Adapter giving a neural vocoder network (e.g. a HiFi-GAN generator) the
    :class:`Vocoder` interface: eval mode, no gradients, ``(B, samples)`` output.

    The network is called as ``net(log_mel)``; a ``(B, 1, samples)`` result (the
    usual 1-channel waveform of MelGAN-style nets) is squeezed to ``(B, samples)``.
    A network with a ``remove_weight_norm()`` method (HiFi-GAN) has its weight
    normalisation folded into plain weights first (same outputs, faster).
    """

    def __init__(self, net: nn.Module, mel_config: MelConfig, source: str | None = None) -> None:
        super().__init__()
        remove_weight_norm = getattr(net, "remove_weight_norm", None)
        if callable(remove_weight_norm):  # HiFi-GAN: same outputs, one convolution less each
            remove_weight_norm()
        self.net = net.eval()
        self.mel_config = mel_config
        self.source = source

    def extra_repr(self) -> str:
        return f"source={self.source!r}"

    @torch.inference_mode()
    def forward(self, log_mel: Tensor) -> Tensor:
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        x = log_mel.to(dtype=dtype)
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
        wav = self.net(x)
        if wav.dim() == 3 and wav.shape[1] == 1:
            wav = wav[:, 0]
        if wav.dim() != 2:
            raise ConfigError(
                f"vocoder {self.source}: expected (B, samples) or (B, 1, samples) output, "
                f"got shape {tuple(wav.shape)}"
            )
        wav = wav.float()
        return wav[0] if squeeze else wav


def parse_griffinlim_spec(spec: str) -> tuple[int | None, int | None]:
    """(iterations, NNLS iterations) of a ``"griffinlim[:N[:M]]"`` spec; None = default.

    ``N`` is the Griffin-Lim phase iteration count, ``M`` the number of NNLS updates
    of the mel -> linear inversion (see :class:`~voiceconv.vocoders.griffinlim.GriffinLim`);
    both are quality/speed knobs. Raises ConfigError for anything else.
    """
    name, *counts = spec.strip().split(":")
    if name.lower() != GRIFFIN_LIM:
        raise ConfigError(f"not a Griffin-Lim vocoder spec: {spec!r}")
    if len(counts) > 2:
        raise ConfigError(f"vocoder {spec!r}: expected 'griffinlim', 'griffinlim:N' or 'griffinlim:N:M'")
    values: list[int | None] = [None, None]
    for i, text in enumerate(counts):
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise ConfigError(
                f"vocoder {spec!r}: Griffin-Lim iterations must be whole numbers >= 0 "
                "(e.g. 'griffinlim:32' or 'griffinlim:32:100')"
            )
        values[i] = value
    return values[0], values[1]


def _is_griffinlim_spec(spec: str | os.PathLike[str]) -> bool:
    return isinstance(spec, str) and spec.strip().lower().partition(":")[0] == GRIFFIN_LIM


def _payload_and_mel(state: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(model payload, top-level mel_config dict or None) of a loaded checkpoint object."""
    if not isinstance(state, Mapping):
        raise CheckpointError(path, "not a vocoder checkpoint (not a dict)")
    top_mel = state.get("mel_config")
    if "state_dict" in state and "class" in state:
        return dict(state), top_mel if isinstance(top_mel, Mapping) else None
    for key in _PAYLOAD_KEYS:
        inner = state.get(key)
        if isinstance(inner, Mapping) and "state_dict" in inner and "class" in inner:
            return dict(inner), top_mel if isinstance(top_mel, Mapping) else None
    raise CheckpointError(
        path, "not a vocoder checkpoint (no model payload with class, hparams and state_dict)"
    )


def _vocoder_mel_config(
    payload: Mapping[str, Any], top_mel: Mapping[str, Any] | None, net: nn.Module, path: Path
) -> MelConfig:
    hp_mel = (payload.get("hparams") or {}).get("mel_config")
    for found in (hp_mel, top_mel, getattr(net, "mel_config", None)):
        if isinstance(found, MelConfig):
            return found
        if isinstance(found, Mapping):
            try:
                return MelConfig.from_dict(dict(found))
            except (ConfigError, TypeError) as exc:
                raise CheckpointError(path, f"unusable mel_config in vocoder checkpoint: {exc}") from None
    raise CheckpointError(path, "vocoder checkpoint does not record the MelConfig it was trained on")


def load_vocoder_checkpoint(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> NeuralVocoder:
    """Rebuild a neural vocoder from ``path`` (either layout, see the module docstring).

    Raises :class:`CheckpointError` naming ``path`` for a missing, unreadable or
    foreign file, a class outside voiceconv, weights that do not fit, or no MelConfig.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such vocoder checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a torch file, unsafe content
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(path, f"cannot read vocoder checkpoint ({type(exc).__name__}: {first})") from None
    payload, top_mel = _payload_and_mel(state, path)
    try:
        net = build_from_description(payload)
    except CheckpointError as exc:
        raise CheckpointError(path, exc.problem) from None
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"cannot build vocoder {payload.get('class')!r}: {exc}") from None
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(path, f"vocoder weights do not fit {payload.get('class')!r}: {first}") from None
    mel_config = _vocoder_mel_config(payload, top_mel, net, path)
    return NeuralVocoder(net, mel_config, source=str(path)).to(device)


def load_vocoder(
    spec: str | os.PathLike[str],
    mel_config: MelConfig,
    device: torch.device | str = "cpu",
) -> Vocoder:
    """The vocoder named by ``spec``, checked against the VC model's ``mel_config``.

    ``spec``: ``"griffinlim"``, ``"griffinlim:<iterations>"`` (default 32; fewer is
    faster and rougher), ``"griffinlim:<iterations>:<nnls iterations>"`` (default 100;
    on CPU the NNLS mel inversion takes most of Griffin-Lim's time), or the path of a
    vocoder checkpoint. Griffin-Lim is built for
    ``mel_config`` itself. A checkpoint whose MelConfig differs from ``mel_config``
    raises :class:`~voiceconv.errors.MelConfigMismatch` (``"vocoder <path> was made
    with another MelConfig: field=value (expected value), ..."``).
    """
    if _is_griffinlim_spec(spec):
        n_iter, nnls_iter = parse_griffinlim_spec(str(spec))
        options = {k: v for k, v in (("n_iter", n_iter), ("nnls_iter", nnls_iter)) if v is not None}
        return GriffinLim(mel_config, **options).to(device).eval()
    vocoder = load_vocoder_checkpoint(spec, device)
    mel_config.check_same(vocoder.mel_config, what=f"vocoder {Path(spec)}")
    return vocoder


def describe_vocoder(vocoder: Vocoder) -> str:
    """Short human-readable name (``"griffinlim:32:100"`` or the checkpoint path)."""
    if isinstance(vocoder, GriffinLim):
        return f"{GRIFFIN_LIM}:{vocoder.n_iter}:{vocoder.nnls_iter}"
    source = getattr(vocoder, "source", None)
    return str(source) if source else type(vocoder).__name__


__all__ = [
    "GRIFFIN_LIM",
    "NeuralVocoder",
    "Vocoder",
    "describe_vocoder",
    "load_vocoder",
    "load_vocoder_checkpoint",
    "parse_griffinlim_spec",
]
