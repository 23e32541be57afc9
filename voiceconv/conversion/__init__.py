"""Conversion: trained checkpoint + audio in, converted audio out.

:class:`VoiceConverter` is the Python API (``from_checkpoint``, ``convert``,
``convert_file``, ``convert_files``); :mod:`voiceconv.conversion.chunking` keeps
memory bounded for long inputs; ``voiceconv-convert`` is the command line.
:mod:`voiceconv.conversion.export` (``voiceconv-export``) writes the step after analysis
as one ONNX graph and :mod:`voiceconv.conversion.onnx_backend` runs it (imported on
demand: they need the ``onnx`` extra).
"""

from voiceconv.conversion.chunking import (
    Window,
    log_mel_chunked,
    map_frames_chunked,
    plan_windows,
    vocode_chunked,
)
from voiceconv.conversion.converter import (
    DIRECTIONS,
    FileResult,
    OutputExists,
    VoiceConverter,
)

__all__ = [
    "DIRECTIONS",
    "FileResult",
    "OutputExists",
    "VoiceConverter",
    "Window",
    "log_mel_chunked",
    "map_frames_chunked",
    "plan_windows",
    "vocode_chunked",
]
