"""A CycleGAN-VC training run from a composed Hydra config (what ``voiceconv-train`` does).

:func:`prepare_features` turns the two speakers' folders into a feature cache (or
checks an existing one); :func:`train_vc` builds sampler, model, optimisers and
:class:`~voiceconv.training.vc_trainer.VCTrainer` from the config and trains. The demo,
the web app and the console script all call these, so that a run is made one way.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from voiceconv.audio.mel import MelConfig
from voiceconv.audio.preparation import Preparation
from voiceconv.data.cache import FeatureCache, preprocess
from voiceconv.data.corpora import read_speaker_folder
from voiceconv.errors import ConfigError, CorpusError
from voiceconv.training.distributed import DistContext, barrier

ROLES = ("A", "B")


def speaker_names(data: DictConfig) -> dict[str, str]:
    """``{"A": name, "B": name}``: ``data.speaker_a/_b`` or the folders' names."""
    names = {
        "A": data.get("speaker_a") or Path(str(data.a_dir)).resolve().name,
        "B": data.get("speaker_b") or Path(str(data.b_dir)).resolve().name,
    }
    if names["A"] == names["B"]:
        raise ConfigError(
            f"speakers A and B are both named {names['A']!r}: set data.speaker_a and data.speaker_b"
        )
    return names



def prepare_features(
    data: DictConfig, mel_cfg: MelConfig, ctx: DistContext
) -> tuple[FeatureCache, dict[str, str]]:
    """Make sure a feature cache holds both speakers; returns ``(FeatureCache, names)``.

    ``data.kind == "folders"``: rank 0 reads ``data.a_dir``/``data.b_dir`` and
    preprocesses them into ``data.cache_dir`` (finished utterances are skipped, so a
    second run costs nothing) while the other ranks wait. ``data.kind == "cache"``:
    use an existing cache as it is; its MelConfig must equal ``mel``.
    """
    cache_dir = Path(str(data.cache_dir))
    if data.kind == "folders":
        names = speaker_names(data)
        if ctx.is_main:
            corpus = {}
            for role, folder in (("A", data.a_dir), ("B", data.b_dir)):
                corpus.update(read_speaker_folder(str(folder), speaker=names[role]))
            prep = Preparation.from_data_config(data)
            summary = preprocess(
                corpus, cache_dir, mel_cfg, workers=int(data.workers),
                trim_top_db=prep.trim_top_db, normalize=prep.normalize, progress=True,
            )
            for path, message in summary.failed:
                print(f"skipped {path}: {message}", file=sys.stderr)
        barrier(ctx)
    elif data.kind == "cache":
        names = {"A": str(data.speaker_a), "B": str(data.speaker_b)}
    else:
        raise ConfigError(f"data.kind must be 'folders' or 'cache', got {data.kind!r}")
    cache = FeatureCache(cache_dir)
    mel_cfg.check_same(cache.mel_config, what=f"feature cache {cache_dir}")
    for role, name in names.items():
        if name not in cache.speakers:
            raise CorpusError(cache_dir, f"speaker {role} {name!r} has no features in this cache")
    return cache, names


def _griffin_lim_vocoder(mel_cfg: MelConfig) -> Any:
    """A ``log_mel -> waveform`` callable for TensorBoard audio (Griffin-Lim, 32 iterations)."""
    import torch

    from voiceconv.vocoders.griffinlim import GriffinLim

    gl = GriffinLim(mel_cfg, n_iter=32)

    def vocode(log_mel: Any) -> Any:
        return gl(torch.as_tensor(log_mel, dtype=torch.float32)).cpu().numpy()

    return vocode


def train_vc(
    cfg: DictConfig,
    stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, Mapping[str, float]], None] | None = None,
) -> Any:
    """Train with a composed ``conf/train.yaml`` config; returns the ``TrainResult``.

    ``trainer.precision``/``trainer.threads`` ``auto`` are resolved for the machine
    found (:mod:`voiceconv.training.autotune`). ``stop`` and ``on_step`` go to
    :meth:`~voiceconv.training.vc_trainer.VCTrainer.fit` (the web app's Stop button and
    live progress).
    """
    from hydra.utils import instantiate

    from voiceconv.data.crops import CropSampler
    from voiceconv.training.autotune import apply_machine_settings
    from voiceconv.training.distributed import cleanup, init_distributed
    from voiceconv.training.seeding import seed_everything
    from voiceconv.training.vc_trainer import RunInfo, TrainerSettings, VCTrainer

    ctx = init_distributed(device=cfg.trainer.get("device", "auto"))
    try:
        seed_everything(int(cfg.seed), ctx.rank)
        mel_cfg = MelConfig.from_dict(OmegaConf.to_container(cfg.mel, resolve=True))
        cache, names = prepare_features(cfg.data, mel_cfg, ctx)
        stats = {role: cache.stats(names[role]) for role in ROLES}
        sampler = CropSampler(
            cache.load_mels(names["A"]), cache.load_mels(names["B"]), stats["A"], stats["B"],
            crop_frames=int(cfg.data.crop_frames), batch_size=int(cfg.trainer.batch_size),
            seed=int(cfg.seed), rank=ctx.rank, short=str(cfg.data.short_utterances),
        )
        model = instantiate(cfg.model)
        trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
        trainer_cfg.update(apply_machine_settings(
            model, trainer_cfg, ctx.device, n_mels=mel_cfg.n_mels,
            crop_frames=int(cfg.data.crop_frames), verbose=ctx.is_main, measure=not ctx.distributed,
        ))
        make_opt_g = instantiate(cfg.optimizer.generator)
        make_opt_d = instantiate(cfg.optimizer.discriminator)
        fields = {f.name for f in dataclasses.fields(TrainerSettings)}
        settings = TrainerSettings(
            **{k: v for k, v in trainer_cfg.items() if k in fields}, seed=int(cfg.seed)
        )
        info = RunInfo(mel_config=mel_cfg, stats=stats, speakers=names,
                       config=OmegaConf.to_container(cfg, resolve=True),
                       preparation=cache.preparation)
        vocode = _griffin_lim_vocoder(mel_cfg) if cfg.trainer.get("audio", False) else None
        trainer = VCTrainer(model, make_opt_g, make_opt_d, sampler, settings, cfg.out_dir,
                            info, ctx=ctx, vocode=vocode)
        result = trainer.fit(stop=stop, on_step=on_step)
        if ctx.is_main:
            print(f"voiceconv-train: step {result.step}, checkpoint {result.last_checkpoint}")
        return result
    finally:
        cleanup(ctx)


__all__ = ["ROLES", "prepare_features", "speaker_names", "train_vc"]
