"""The audio front end: I/O, the one log-mel implementation, statistics, pitch.

The lowest room above ``utils``/``errors``: nothing here imports another voiceconv room.
"""

from voiceconv.audio.io import audio_info, load_audio, save_audio
from voiceconv.audio.mel import LogMel, MelConfig, log_mel, mel_filterbank
from voiceconv.audio.pitch import F0Track, extract_f0
from voiceconv.audio.stats import SpeakerStats

__all__ = [
    "F0Track", "LogMel", "MelConfig", "SpeakerStats", "audio_info", "extract_f0", "load_audio",
    "log_mel", "mel_filterbank", "save_audio",
]
