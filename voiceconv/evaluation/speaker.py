"""A small speaker classifier used to score speaker similarity of converted speech.

Features are utterance-level statistics of the log-mel spectrogram (per-bin mean and
standard deviation over non-silent frames, 2 x n_mels values), standardised, then a
multinomial logistic regression fitted by L-BFGS with L2 regularisation. It is small,
deterministic and trains in seconds on the training corpus; "speaker accuracy" is the
share of converted files it labels as the target speaker. It is a coarse timbre
judge (no x-vectors: we ship no pretrained weights and fetch none), so treat its
accuracy as a sanity check next to MCD, not as a perceptual similarity score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from voiceconv.audio.mel import MelConfig
from voiceconv.errors import CheckpointError, ConfigError
from voiceconv.utils.atomic import atomic_path


def utterance_embedding(log_mel: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """(2*n_mels,) mean and std of log-mel frames whose energy is within ``floor_db`` of the peak."""
    lm = np.asarray(log_mel, dtype=np.float64)
    energy = lm.mean(axis=0)
    keep = energy >= energy.max() - floor_db / (20.0 / np.log(10.0))
    frames = lm[:, keep] if keep.sum() >= 2 else lm
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)])


class SpeakerClassifier:
    """Logistic-regression speaker classifier over :func:`utterance_embedding` vectors."""

    def __init__(self, speakers: Sequence[str], mel_config: MelConfig, l2: float = 1e-2) -> None:
        self.speakers = list(speakers)
        self.mel_config = mel_config
        self.l2 = l2
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def fit(self, mels_by_speaker: Mapping[str, Sequence[np.ndarray]], steps: int = 200) -> SpeakerClassifier:
        """Fit on log-mels of each speaker (keys must be ``self.speakers``)."""
        xs, ys = [], []
        for k, spk in enumerate(self.speakers):
            mels = mels_by_speaker.get(spk, [])
            if not mels:
                raise ConfigError(f"SpeakerClassifier: no training utterances for speaker {spk!r}")
            xs += [utterance_embedding(m) for m in mels]
            ys += [k] * len(mels)
        x = np.stack(xs)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy((x - self.mean) / self.scale).float()
        yt = torch.tensor(ys)
        torch.manual_seed(0)
        w = torch.zeros(xt.shape[1], len(self.speakers), requires_grad=True)
        b = torch.zeros(len(self.speakers), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + self.l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.weight, self.bias = w.detach(), b.detach()
        return self

    def probabilities(self, log_mels: Sequence[np.ndarray]) -> np.ndarray:
        """(N, n_speakers) class probabilities."""
        if self.weight is None or self.mean is None or self.scale is None or self.bias is None:
            raise ConfigError("SpeakerClassifier used before fit()")
        x = np.stack([utterance_embedding(m) for m in log_mels])
        xt = torch.from_numpy((x - self.mean) / self.scale).float()
        return torch.softmax(xt @ self.weight + self.bias, dim=1).numpy()

    def predict(self, log_mels: Sequence[np.ndarray]) -> list[str]:
        return [self.speakers[i] for i in self.probabilities(log_mels).argmax(1)]

    def save(self, path: str | os.PathLike[str]) -> None:
        if self.weight is None:
            raise ConfigError("SpeakerClassifier: nothing to save before fit()")
        payload = {
            "speakers": self.speakers, "mel_config": self.mel_config.to_dict(), "l2": self.l2,
            "mean": torch.from_numpy(self.mean), "scale": torch.from_numpy(self.scale),
            "weight": self.weight, "bias": self.bias,
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SpeakerClassifier:
        path = Path(path)
        try:
            p = torch.load(path, map_location="cpu", weights_only=True)
            clf = cls(p["speakers"], MelConfig.from_dict(p["mel_config"]), p["l2"])
            clf.mean, clf.scale = p["mean"].numpy(), p["scale"].numpy()
            clf.weight, clf.bias = p["weight"], p["bias"]
        except (OSError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(path, f"not a speaker-classifier file ({exc})") from exc
        return clf
