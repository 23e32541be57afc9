"""Project exception types.

Every error a user can cause (a bad file, a wrong setting, a checkpoint from
somewhere else) is raised as a :class:`VoiceconvError` subclass whose message is
one line that names the offending file and the problem. Command-line tools catch
``VoiceconvError``, print ``str(err)`` and carry on with the next input; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class VoiceconvError(Exception):
    """Base class of every error voiceconv raises on purpose."""


class FileProblem(VoiceconvError):
    """A problem tied to one file: ``str(err)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        where = str(self.path) if self.path is not None else "<array>"
        super().__init__(f"{where}: {problem}")


class AudioError(FileProblem):
    """An audio input that cannot be used (unreadable, empty, silent, NaN, ...)."""


class OutputExists(FileProblem):
    """An output file exists already (or appeared while it was being made) and
    overwriting was not asked for; the existing file is kept."""


class CorpusError(FileProblem):
    """A corpus folder that does not have the layout its reader expects."""


class CheckpointError(FileProblem):
    """A checkpoint that is missing, corrupt, or made with incompatible settings."""


class ConfigError(VoiceconvError):
    """Settings that contradict each other or the data they are applied to."""


class MelConfigMismatch(ConfigError):
    """Mel features made with one :class:`~voiceconv.audio.mel.MelConfig` fed to a
    model trained on another (the commonest cause of noisy vocoder output)."""


class TrainingDiverged(VoiceconvError):
    """A non-finite loss; the run stops and the last good checkpoint is kept."""


class AudioDeviceError(VoiceconvError):
    """Live audio that cannot start: sounddevice or PortAudio missing, no such device,
    a device that refuses the stream's settings."""


class ExportParityError(FileProblem):
    """An exported graph whose output differs from PyTorch's by more than the tolerance;
    ``max_abs_diff`` holds the figure (NaN when not measured) and nothing was written."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str,
                 max_abs_diff: float = float("nan")) -> None:
        super().__init__(path, problem)
        self.max_abs_diff = max_abs_diff
