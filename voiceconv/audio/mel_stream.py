"""The front end's log-mel, computed on a stream of samples.

:class:`StreamingLogMel` returns, piece by piece, exactly the frames
:class:`~voiceconv.audio.mel.LogMel` gives for the whole signal (``center=True``,
reflect padding): the first frame waits for ``n_fft // 2 + 1`` samples (the reflection of
the start needs them), every later frame for the ``n_fft // 2`` samples after its centre,
and :meth:`StreamingLogMel.flush` reflects the end. It holds fewer than ``n_fft + hop``
samples between calls.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.errors import AudioError, ConfigError


class StreamingLogMel:
    """``push(samples) -> (n_mels, new_frames)`` log-mels; ``flush()`` the last frames."""

    def __init__(self, mel_config: MelConfig) -> None:
        if not mel_config.center or mel_config.pad_mode != "reflect":
            raise ConfigError("StreamingLogMel follows the front end's centred, reflect-padded frames")
        self.cfg = mel_config
        self._mel = LogMel(dataclasses.replace(mel_config, center=False))
        self.half = mel_config.n_fft // 2
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._buf = np.zeros(0, dtype=np.float32)  # padded-domain samples not yet fully used
        self._started = False
        self._n_in = 0
        self._frames_out = 0

    @property
    def samples_in(self) -> int:
        return self._n_in

    def _frames(self, padded: np.ndarray) -> Tensor:
        """All complete frames of padded-domain samples ``padded`` (hop-spaced from its start)."""
        n = self.cfg.n_fft
        if padded.shape[0] < n:
            return torch.zeros(self.cfg.n_mels, 0)
        count = (padded.shape[0] - n) // self.cfg.hop_length + 1
        used = padded[: (count - 1) * self.cfg.hop_length + n]
        with torch.inference_mode():
            return self._mel(torch.from_numpy(np.ascontiguousarray(used)))

    def _emit(self) -> Tensor:
        out = self._frames(self._buf)
        if out.shape[-1]:
            self._buf = self._buf[out.shape[-1] * self.cfg.hop_length :]
            self._frames_out += out.shape[-1]
        return out

    def push(self, samples: np.ndarray) -> Tensor:
        """Frames completed by ``samples`` (float32 mono), ``(n_mels, k)`` with ``k >= 0``."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._n_in += x.shape[0]
        self._buf = np.concatenate([self._buf, x])
        if not self._started:
            if self._buf.shape[0] <= self.half:
                return torch.zeros(self.cfg.n_mels, 0)
            # reflect the start as np.pad(mode="reflect") does: x[half], ..., x[1]
            self._buf = np.concatenate([self._buf[1 : self.half + 1][::-1], self._buf])
            self._started = True
        return self._emit()

    def flush(self) -> Tensor:
        """The remaining frames (the end reflected); the total is ``1 + samples // hop``."""
        if not self._started:
            raise AudioError(None, f"stream too short: {self._buf.shape[0]} samples, the front end "
                                   f"needs more than {self.half}")
        tail = self._buf  # holds at least the last n_fft - hop samples of the signal
        if tail.shape[0] <= self.half:
            raise AudioError(None, "stream ended inside the first analysis window")
        self._buf = np.concatenate([tail, tail[-self.half - 1 : -1][::-1]])
        out = self._emit()
        total = 1 + self._n_in // self.cfg.hop_length
        return out[:, : max(0, total - (self._frames_out - out.shape[-1]))]


__all__ = ["StreamingLogMel"]
