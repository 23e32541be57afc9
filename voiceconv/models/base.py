"""Self-describing models: a checkpoint holds the class, its constructor arguments
and its weights, so ``load_model(path)`` needs nothing else.

Every model in :mod:`voiceconv.models` derives from :class:`SavableModule` and
passes its constructor arguments (plain Python values only: numbers, strings,
bools, None, lists/tuples/dicts of those) up through ``self.save_hparams(...)``.
Loading uses ``torch.load(..., weights_only=True)`` and only re-creates classes
that live inside ``voiceconv.``, so a checkpoint cannot name arbitrary code.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voiceconv.errors import CheckpointError
from voiceconv.utils.atomic import atomic_path


class SavableModule(nn.Module):
    """An ``nn.Module`` that remembers how it was built.

    Subclasses call ``self.save_hparams(arg=value, ...)`` in ``__init__`` with every
    constructor argument; :meth:`hparams` returns them and :func:`load_model`
    passes them back to the constructor.
    """

    _hparams: dict[str, Any]

    def save_hparams(self, **kwargs: Any) -> None:
        """Record constructor arguments (plain values only) for :func:`load_model`."""
        object.__setattr__(self, "_hparams", dict(kwargs))

    @property
    def hparams(self) -> dict[str, Any]:
        """The recorded constructor arguments (a copy)."""
        return dict(getattr(self, "_hparams", {}))

    def describe(self) -> dict[str, Any]:
        """``{"class": "module.Class", "hparams": {...}}``."""
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "hparams": self.hparams}

    @classmethod
    def upgrade_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Saved hparams -> constructor arguments. A class whose constructor gained an
        argument with a new default overrides this to give checkpoints written before
        that argument existed the value they were built with."""
        return hparams

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def model_payload(model: SavableModule) -> dict[str, Any]:
    """The dict :func:`save_model` writes: class, hparams and state_dict."""
    return {**model.describe(), "state_dict": model.state_dict()}


def build_from_description(desc: dict[str, Any]) -> SavableModule:
    """Instantiate ``desc["class"]`` (which must live in ``voiceconv.``) with its hparams."""
    qualname = str(desc.get("class", ""))
    if not qualname.startswith("voiceconv."):
        raise CheckpointError(None, f"refusing to build class {qualname!r} outside voiceconv")
    module_name, _, cls_name = qualname.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(None, f"unknown model class {qualname!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SavableModule)):
        raise CheckpointError(None, f"{qualname!r} is not a SavableModule")
    return cls(**cls.upgrade_hparams(dict(desc.get("hparams", {}))))


def model_from_payload(payload: dict[str, Any]) -> SavableModule:
    """The inverse of :func:`model_payload`: build the class with its hparams and load
    the weights."""
    model = build_from_description(payload)
    model.load_state_dict(payload["state_dict"])
    return model


def save_model(model: SavableModule, path: str | os.PathLike[str]) -> None:
    """Save class, hparams and weights atomically to ``path``."""
    with atomic_path(path) as tmp:
        torch.save(model_payload(model), tmp)


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> SavableModule:
    """Rebuild a model saved by :func:`save_model` (weights_only loading)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a torch file
        raise CheckpointError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(path, "not a voiceconv model checkpoint (no state_dict)")
    try:
        return model_from_payload(payload)
    except CheckpointError as exc:
        raise CheckpointError(path, exc.problem) from exc


@contextlib.contextmanager
def frozen(params: Iterable[nn.Parameter]) -> Iterator[None]:
    """``requires_grad`` off for ``params`` inside the block, each restored afterwards: a
    generator step's backward pass then fills no discriminator gradients."""
    params = list(params)
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
