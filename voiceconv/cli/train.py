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

import sys

from omegaconf import DictConfig, OmegaConf

from voiceconv.utils.conf import CONF_DIR_ENV, conf_dir


def run(cfg: DictConfig) -> object:
    """Train with a composed config (:func:`voiceconv.training.vc_run.train_vc`)."""
    from voiceconv.training.vc_run import train_vc

    return train_vc(cfg)


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
