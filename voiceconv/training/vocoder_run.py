"""A vocoder training run from a composed Hydra config (what ``voiceconv-train-vocoder`` does).

The training audio goes through the same :class:`~voiceconv.audio.preparation.Preparation`
chain as the VC features (``data.trim_top_db``, ``data.normalize``), so the vocoder
learns the waveforms that the mels it will be given were made from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from voiceconv.audio.preparation import Preparation
from voiceconv.data.corpora import read_speaker_folder
from voiceconv.errors import ConfigError, CorpusError

PROG = "voiceconv-train-vocoder"


def split_files(dirs: list[str], holdout: int) -> tuple[list[Path], list[Path]]:
    """``(training files, held-out files)``: per folder, the last ``holdout`` by id are held out."""
    if holdout < 0:
        raise ConfigError(f"data.holdout must be >= 0, got {holdout}")
    train: list[Path] = []
    held: list[Path] = []
    for folder in dirs:
        for speaker, utts in read_speaker_folder(folder).items():
            ordered = sorted(utts, key=lambda u: u.utt_id)
            if holdout >= len(ordered):
                raise CorpusError(Path(folder), f"{len(ordered)} files of {speaker}, cannot hold out {holdout}")
            cut = len(ordered) - holdout
            train += [u.path for u in ordered[:cut]]
            held += [u.path for u in ordered[cut:]]
    return train, held



def model_discriminators(model: DictConfig) -> dict[str, Any]:
    """The discriminator configs of a ``conf/vocoder/model`` entry, by name.

    A config names them under ``discriminators`` (Vocos: ``mpd`` and ``mrd``); the HiFi-GAN
    configs keep their top-level ``mpd`` and ``msd`` entries, so their checkpoints, which
    store the discriminators under those names, keep resuming.
    """
    if model.get("discriminators") is not None:
        found = dict(model.discriminators.items())
    else:
        found = {name: model[name] for name in ("mpd", "msd") if model.get(name) is not None}
    if not found:
        raise ConfigError("the vocoder model config names no discriminator (model.discriminators or model.mpd/msd)")
    return found


def train_vocoder(cfg: DictConfig) -> Any:
    """Train with a composed ``conf/vocoder/config.yaml`` config; returns the result."""
    import torch
    from hydra.utils import instantiate

    from voiceconv.audio.mel import MelConfig, log_mel
    from voiceconv.errors import VoiceconvError
    from voiceconv.training.distributed import resolve_device
    from voiceconv.training.seeding import seed_everything
    from voiceconv.training.vocoder_trainer import SegmentSampler, VocoderSettings, VocoderTrainer
    from voiceconv.utils.atomic import atomic_write_text

    threads = cfg.trainer.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    seed_everything(int(cfg.seed))
    mel_cfg = MelConfig.from_dict(OmegaConf.to_container(cfg.mel, resolve=True))
    data = cfg.data
    dirs = [str(d) for d in (data.dirs if OmegaConf.is_list(data.dirs) else [data.dirs])]
    if not dirs:
        raise ConfigError("data.dirs names no folder")
    train_files, held = split_files(dirs, int(data.holdout))
    out_dir = Path(str(cfg.out_dir))
    atomic_write_text(out_dir / "holdout.txt", "".join(f"{p.resolve()}\n" for p in held))

    prep = Preparation.from_data_config(data)
    waves = []
    for path in train_files:
        try:
            waves.append(prep.load(path, mel_cfg.sample_rate, min_samples=mel_cfg.n_fft))
        except VoiceconvError as err:
            print(f"skipped {err}", file=sys.stderr)
    settings = VocoderSettings.from_mapping(OmegaConf.to_container(cfg.trainer, resolve=True),
                                            seed=int(cfg.seed))
    sampler = SegmentSampler(waves, mel_cfg, settings.segment_size, settings.batch_size, seed=int(cfg.seed))
    example = None
    if data.get("example", True):
        ex_path = held[0] if held else train_files[0]
        ex_wav = torch.from_numpy(prep.load(ex_path, mel_cfg.sample_rate, min_samples=mel_cfg.n_fft))
        example = (ex_wav, log_mel(ex_wav, mel_cfg))
    generator = instantiate(cfg.model.generator, mel_config=mel_cfg.to_dict())
    discriminators = {name: instantiate(node) for name, node in model_discriminators(cfg.model).items()}
    device = resolve_device(cfg.trainer.get("device", "auto"))
    trainer = VocoderTrainer(
        generator, discriminators, sampler, settings, out_dir,
        make_opt_g=instantiate(cfg.optimizer.generator), make_opt_d=instantiate(cfg.optimizer.discriminator),
        config=OmegaConf.to_container(cfg, resolve=True), device=device, example=example,
    )
    result = trainer.fit()
    print(f"{PROG}: step {result.step}, checkpoint {trainer.checkpoints.last_path}")
    return result


__all__ = ["model_discriminators", "split_files", "train_vocoder"]
