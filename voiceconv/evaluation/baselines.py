"""The yardsticks a conversion is scored beside, and the speaker judges trained for it.

* :func:`render_statistics_only`: the source files with each mel bin's mean and
  variance moved to the target speaker's (a :class:`~voiceconv.conversion.VoiceConverter`
  without its generator), prepared and vocoded exactly as the conversion is;
* :func:`fit_speaker_classifiers`: both speaker classifiers, fitted on a training
  feature cache (the training halves only, never the held-out files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from voiceconv.conversion.converter import FileResult, VoiceConverter
from voiceconv.data.cache import FeatureCache
from voiceconv.errors import ConfigError
from voiceconv.evaluation.speaker import FrameSpeakerClassifier, SpeakerClassifier
from voiceconv.vocoders.base import Vocoder

STATISTICS_ONLY_DIR = "statistics_only"


def statistics_only_converter(
    checkpoint: str | os.PathLike[str] | None = None,
    cache: FeatureCache | None = None,
    source_speaker: str | None = None,
    target_speaker: str | None = None,
    vocoder: Vocoder | str | os.PathLike[str] = "griffinlim",
    device: str = "cpu",
) -> tuple[VoiceConverter, str]:
    """``(converter, direction)`` for the statistics-only baseline.

    From a training ``checkpoint`` (its statistics, preparation and mel settings; the
    direction is the one whose target is ``target_speaker``, default a2b), or else from
    a feature ``cache`` and the two speakers' names (the source defaults to the cache's
    other speaker when it holds two).
    """
    if checkpoint is not None:
        vc = VoiceConverter.from_checkpoint(checkpoint, device=device, vocoder=vocoder,
                                            precision="fp32", statistics_only=True)
        direction = "b2a" if target_speaker is not None and vc.speakers.get("A") == target_speaker else "a2b"
        return vc, direction
    if cache is None or target_speaker is None:
        raise ConfigError("the statistics-only baseline needs a checkpoint, or a feature cache and the target speaker")
    if source_speaker is None:
        others = [s for s in cache.speakers if s != target_speaker]
        if len(others) != 1:
            raise ConfigError(f"name the source speaker: the cache holds {cache.speakers}")
        source_speaker = others[0]
    stats = {"A": cache.stats(source_speaker), "B": cache.stats(target_speaker)}
    vc = VoiceConverter(None, cache.mel_config, stats, vocoder, device=device, precision="fp32",
                        speakers={"A": source_speaker, "B": target_speaker}, preparation=cache.preparation)
    return vc, "a2b"


def render_statistics_only(
    sources: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
    converter: VoiceConverter, direction: str = "a2b",
) -> list[FileResult]:
    """Write the statistics-only rendering of each source file into ``out_dir/<stem>.wav``."""
    if converter.model is not None:
        raise ConfigError("render_statistics_only needs a converter without generator (statistics_only=True)")
    return converter.convert_files([Path(p) for p in sources], out_dir, direction=direction, overwrite=True)


def fit_speaker_classifiers(cache: FeatureCache) -> tuple[SpeakerClassifier, FrameSpeakerClassifier]:
    """Both speaker classifiers fitted on every speaker of a training feature cache."""
    mels = {s: cache.load_mels(s) for s in cache.speakers}
    return (SpeakerClassifier(cache.speakers, cache.mel_config).fit(mels),
            FrameSpeakerClassifier(cache.speakers, cache.mel_config).fit(mels))


__all__ = ["STATISTICS_ONLY_DIR", "fit_speaker_classifiers", "render_statistics_only",
           "statistics_only_converter"]
