"""``voiceconv-train``: train a CycleGAN-VC model from two folders of speech (Hydra).

Examples::

    voiceconv-train data.a_dir=wavs/rms data.b_dir=wavs/slt trainer.max_steps=2000 out_dir=runs/demo
    voiceconv-train data.a_dir=wavs/rms data.b_dir=wavs/slt trainer.max_steps=4000 out_dir=runs/demo  # resumes
    voiceconv-train experiment=flite_demo data.root=wavs out_dir=runs/flite
    torchrun --nproc_per_node 2 -m voiceconv.cli.train ... out_dir=runs/ddp     # data parallel

The configuration tree is the repository's top-level ``conf/`` (found from this
file in an editable install) or the folder named by ``VOICECONV_CONF_DIR``. The
run writes everything into ``out_dir`` (required, so that every torchrun rank agrees
on it; Hydra creates no folders of its own): features are cached in
``data.cache_dir`` (default ``out_dir/cache``) the first time, then reused.
A ``VoiceconvError`` (bad folder, bad file, mismatched settings, divergence) prints
one line and exits with status 1.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF_DIR_ENV = "VOICECONV_CONF_DIR"
ROLES = ("A", "B")


def conf_dir() -> Path:
    """``$VOICECONV_CONF_DIR`` if set, else ``<repo>/conf`` beside the package."""
    env = os.environ.get(CONF_DIR_ENV)
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2] / "conf"


def _speaker_names(data: DictConfig) -> dict[str, str]:
    names = {
        "A": data.get("speaker_a") or Path(str(data.a_dir)).resolve().name,
        "B": data.get("speaker_b") or Path(str(data.b_dir)).resolve().name,
    }
    if names["A"] == names["B"]:
        from voiceconv.errors import ConfigError

        raise ConfigError(
            f"speakers A and B are both named {names['A']!r}: set data.speaker_a and data.speaker_b"
        )
    return names


def prepare_features(data: DictConfig, mel_cfg: Any, ctx: Any) -> tuple[Any, dict[str, str]]:
    """Make sure a feature cache holds both speakers; returns ``(FeatureCache, names)``.

    ``data.kind == "folders"``: rank 0 reads ``data.a_dir``/``data.b_dir`` and
    preprocesses them into ``data.cache_dir`` (finished utterances are skipped, so a
    second run costs nothing) while the other ranks wait. ``data.kind == "cache"``:
    use an existing cache as it is; its MelConfig must equal ``mel``.
    """
    from voiceconv.data.cache import FeatureCache, preprocess
    from voiceconv.data.corpora import read_speaker_folder
    from voiceconv.errors import ConfigError, CorpusError
    from voiceconv.training.distributed import barrier

    cache_dir = Path(str(data.cache_dir))
    if data.kind == "folders":
        names = _speaker_names(data)
        if ctx.is_main:
            corpus = {}
            for role, folder in (("A", data.a_dir), ("B", data.b_dir)):
                corpus.update(read_speaker_folder(str(folder), speaker=names[role]))
            summary = preprocess(
                corpus, cache_dir, mel_cfg, workers=int(data.workers),
                trim_top_db=data.trim_top_db, normalize=data.normalize, progress=True,
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


def _griffin_lim_vocoder(mel_cfg: Any) -> Any:
    """A ``log_mel -> waveform`` callable for TensorBoard audio (Griffin-Lim, 32 iterations)."""
    import torch

    from voiceconv.vocoders.griffinlim import GriffinLim

    gl = GriffinLim(mel_cfg, n_iter=32)

    def vocode(log_mel: Any) -> Any:
        return gl(torch.as_tensor(log_mel, dtype=torch.float32)).cpu().numpy()

    return vocode


def run(
    cfg: DictConfig,
    stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, Mapping[str, float]], None] | None = None,
) -> Any:
    """Train with a composed config (what ``voiceconv-train`` runs); returns the TrainResult.

    ``stop`` and ``on_step`` go to :meth:`VCTrainer.fit` (the web app's Stop button
    and live progress).
    """
    from hydra.utils import instantiate

    from voiceconv.audio.mel import MelConfig
    from voiceconv.data.crops import CropSampler
    from voiceconv.training.distributed import cleanup, init_distributed
    from voiceconv.training.seeding import seed_everything
    from voiceconv.training.vc_trainer import RunInfo, TrainerSettings, VCTrainer

    if cfg.trainer.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.trainer.threads))
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
        make_opt_g = instantiate(cfg.optimizer.generator)
        make_opt_d = instantiate(cfg.optimizer.discriminator)
        fields = {f.name for f in dataclasses.fields(TrainerSettings)}
        trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
        settings = TrainerSettings(
            **{k: v for k, v in trainer_cfg.items() if k in fields}, seed=int(cfg.seed)
        )
        info = RunInfo(mel_config=mel_cfg, stats=stats, speakers=names,
                       config=OmegaConf.to_container(cfg, resolve=True))
        vocode = _griffin_lim_vocoder(mel_cfg) if cfg.trainer.get("audio", False) else None
        trainer = VCTrainer(model, make_opt_g, make_opt_d, sampler, settings, cfg.out_dir,
                            info, ctx=ctx, vocode=vocode)
        result = trainer.fit(stop=stop, on_step=on_step)
        if ctx.is_main:
            how = "stopped at" if result.stopped else "step"
            print(f"voiceconv-train: {how} {result.step}, checkpoint {result.last_checkpoint}")
        return result
    finally:
        cleanup(ctx)


def _hydra_entry(cfg: DictConfig) -> None:
    from omegaconf.errors import MissingMandatoryValue

    from voiceconv.errors import VoiceconvError

    try:
        if OmegaConf.is_missing(cfg, "out_dir"):
            raise MissingMandatoryValue("out_dir")
        run(cfg)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or str(err).split(":")[-1].strip() or "?"
        print(f"voiceconv-train: missing setting {key}: give it on the command line ({key}=...)",
              file=sys.stderr)
        sys.exit(1)
    except VoiceconvError as err:
        print(f"voiceconv-train: {err}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """Console entry point (``voiceconv-train``)."""
    import hydra

    folder = conf_dir()
    if not (folder / "train.yaml").is_file():
        print(f"voiceconv-train: {folder}: no train.yaml here; set {CONF_DIR_ENV} to the conf/ folder",
              file=sys.stderr)
        sys.exit(2)
    hydra.main(config_path=str(folder), config_name="train", version_base="1.3")(_hydra_entry)()


if __name__ == "__main__":
    main()
