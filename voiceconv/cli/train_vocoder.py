"""``voiceconv-train-vocoder``: train a HiFi-GAN vocoder on folders of speech (Hydra).

Examples::

    voiceconv-train-vocoder data.dirs=[wavs/rms,wavs/slt] out_dir=runs/voc trainer.max_steps=2000
    voiceconv-train-vocoder data.dirs=[wavs/rms,wavs/slt] out_dir=runs/voc trainer.max_steps=4000  # resumes
    voiceconv-train-vocoder data.dirs=[wavs/rms] out_dir=runs/voc_small model=hifigan_small trainer=cpu_small

The configuration tree is ``conf/vocoder/`` of the repository (found from this file
in an editable install, or ``$VOICECONV_CONF_DIR/vocoder``); the ``mel`` group comes
from ``conf/mel/``, the front end the VC models use, so the vocoder reads the same
numbers they write. The run writes into ``out_dir``: ``checkpoints/`` (the vocoder is
``checkpoints/last.ckpt``; ``voiceconv.vocoders.base.load_vocoder`` reads it),
``tb/``, ``config.yaml``, ``mel_config.json`` and ``holdout.txt`` (the audio files kept
out of training by ``data.holdout``, one path per line). A ``VoiceconvError`` (bad
folder, bad file, mismatched settings, divergence) prints one line and exits with
status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from voiceconv.cli.train import CONF_DIR_ENV, conf_dir

PROG = "voiceconv-train-vocoder"


def prepare_waveform(
    path: str | os.PathLike[str], sample_rate: int, normalize: str | None = "peak",
    trim_top_db: float | None = 40.0, min_samples: int = 1,
) -> np.ndarray:
    """Read one file for vocoder training or evaluation: mono, ``sample_rate``, trimmed, normalised.

    ``normalize``: ``"peak"`` (to 0.95, as the reference HiFi-GAN loader), ``"loudness"``
    or ``None``. Raises :class:`~voiceconv.errors.AudioError` naming the file.
    """
    from voiceconv.audio.io import load_audio
    from voiceconv.audio.processing import normalize_loudness, normalize_peak, trim_silence
    from voiceconv.errors import ConfigError

    wav, rate = load_audio(path, sample_rate, min_samples=min_samples)
    if trim_top_db is not None:
        wav = trim_silence(wav, rate, top_db=float(trim_top_db))
    if normalize == "peak":
        wav = normalize_peak(wav, 0.95)
    elif normalize == "loudness":
        wav = normalize_loudness(wav, rate)
    elif normalize is not None:
        raise ConfigError(f"data.normalize must be peak, loudness or null, got {normalize!r}")
    return np.asarray(wav, dtype=np.float32)


def split_files(dirs: list[str], holdout: int) -> tuple[list[Path], list[Path]]:
    """``(training files, held-out files)``: per folder, the last ``holdout`` by id are held out."""
    from voiceconv.data.corpora import read_speaker_folder
    from voiceconv.errors import ConfigError, CorpusError

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


def run(cfg: DictConfig) -> Any:
    """Train with a composed config (what ``voiceconv-train-vocoder`` runs); returns the result."""
    import torch
    from hydra.utils import instantiate

    from voiceconv.audio.mel import MelConfig
    from voiceconv.errors import ConfigError, VoiceconvError
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

    normalize = data.get("normalize")
    trim = data.get("trim_top_db")
    waves = []
    for path in train_files:
        try:
            waves.append(prepare_waveform(path, mel_cfg.sample_rate, normalize, trim, mel_cfg.n_fft))
        except VoiceconvError as err:
            print(f"skipped {err}", file=sys.stderr)
    settings = VocoderSettings.from_mapping(OmegaConf.to_container(cfg.trainer, resolve=True),
                                            seed=int(cfg.seed))
    sampler = SegmentSampler(waves, mel_cfg, settings.segment_size, settings.batch_size, seed=int(cfg.seed))
    example = None
    if data.get("example", True):
        ex_path = held[0] if held else train_files[0]
        ex_wav = torch.from_numpy(prepare_waveform(ex_path, mel_cfg.sample_rate, normalize, trim, mel_cfg.n_fft))
        from voiceconv.audio.mel import log_mel

        example = (ex_wav, log_mel(ex_wav, mel_cfg))
    generator = instantiate(cfg.model.generator, mel_config=mel_cfg.to_dict())
    mpd = instantiate(cfg.model.mpd)
    msd = instantiate(cfg.model.msd)
    device = resolve_device(cfg.trainer.get("device", "auto"))
    trainer = VocoderTrainer(
        generator, mpd, msd, sampler, settings, out_dir,
        make_opt_g=instantiate(cfg.optimizer.generator), make_opt_d=instantiate(cfg.optimizer.discriminator),
        config=OmegaConf.to_container(cfg, resolve=True), device=device, example=example,
    )
    result = trainer.fit()
    print(f"{PROG}: step {result.step}, checkpoint {trainer.checkpoints.last_path}")
    return result


def _hydra_entry(cfg: DictConfig) -> None:
    from voiceconv.errors import VoiceconvError

    try:
        run(cfg)
    except VoiceconvError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """Console entry point (``voiceconv-train-vocoder``)."""
    import hydra

    folder = conf_dir()
    if not (folder / "vocoder" / "config.yaml").is_file():
        print(f"{PROG}: {folder / 'vocoder'}: no config.yaml here; set {CONF_DIR_ENV} to the conf/ folder",
              file=sys.stderr)
        sys.exit(2)
    # conf/ goes on the search path so that the vocoder tree shares conf/mel/ with the VC trainer.
    if not any(arg.startswith(("hydra.searchpath=", "+hydra.searchpath=")) for arg in sys.argv[1:]):
        sys.argv.append(f"hydra.searchpath=[file://{folder}]")
    hydra.main(config_path=str(folder / "vocoder"), config_name="config", version_base="1.3")(_hydra_entry)()


if __name__ == "__main__":
    main()
