"""``voiceconv-train-vocoder``: train a HiFi-GAN or Vocos vocoder on folders of speech (Hydra).

Examples::

    voiceconv-train-vocoder data.dirs=[wavs/rms,wavs/slt] out_dir=runs/voc trainer.max_steps=2000
    voiceconv-train-vocoder data.dirs=[wavs/rms,wavs/slt] out_dir=runs/voc trainer.max_steps=4000  # resumes
    voiceconv-train-vocoder data.dirs=[wavs/rms] out_dir=runs/voc_small model=hifigan_small trainer=cpu_small
    voiceconv-train-vocoder data.dirs=[wavs/rms,wavs/slt] out_dir=runs/vocos model=vocos_small trainer=cpu_vocos

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

import sys

from omegaconf import DictConfig

from voiceconv.utils.conf import CONF_DIR_ENV, conf_dir

PROG = "voiceconv-train-vocoder"


def run(cfg: DictConfig) -> object:
    """Train with a composed config (:func:`voiceconv.training.vocoder_run.train_vocoder`)."""
    from voiceconv.training.vocoder_run import train_vocoder

    return train_vocoder(cfg)


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
