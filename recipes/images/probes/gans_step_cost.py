"""Probe: milliseconds per training step of each gans-recipe model (judge, DCGAN, cGAN,
progressive GAN averaged over its four stages), fp32 against bf16 autocast + channels-last,
30 steps each after one warm-up run, through the recipe's loops.

    python recipes/images/probes/gans_step_cost.py --threads 1 [hydra overrides]
"""
import argparse
import dataclasses
import time

from _gans_probe import gans_cfg

from voiceconv.images.experiments.common import data_of, loop_of  # noqa: E402
from voiceconv.images.experiments.gans import build_cgan, build_dcgan  # noqa: E402
from voiceconv.images.loops import (  # noqa: E402
    SmallClassifier,
    fit_cgan,
    fit_classifier,
    fit_gan,
    fit_progressive,
)
from voiceconv.models.progressive import ProgressiveGAN  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1)
p.add_argument("--steps", type=int, default=30)
p.add_argument("overrides", nargs="*")
a = p.parse_args()
cfg = gans_cfg(a.threads, ["size.n_train=2000", *a.overrides])
sets = data_of(cfg)
w, ch, n = int(cfg.size.width), sets.image_shape[0], a.steps


def ms_per_step(fn):
    fn()  # warm-up (oneDNN primitive creation)
    t = time.perf_counter()
    fn()
    return round((time.perf_counter() - t) / n * 1000, 1)


for prec, cl in [("fp32", False), ("bf16", True)]:
    def loop(kind):
        return dataclasses.replace(loop_of(cfg, kind), steps=n, precision=prec, channels_last=cl)

    dc, cg = build_dcgan(cfg, ch), build_cgan(cfg, sets.num_classes, ch)
    clf = SmallClassifier(ch, sets.num_classes, width=w)
    pg = ProgressiveGAN(latent_dim=int(cfg.gans.latent_dim), channels=ch, max_resolution=int(cfg.size.image_size),
                        max_channels=8 * w, channel_base=32 * w, loss=str(cfg.gans.progressive_loss))
    res = {"judge": ms_per_step(lambda: fit_classifier(clf, sets.train, loop("classifier"), label_index=-1)),
           "dcgan": ms_per_step(lambda: fit_gan(dc, sets.train, loop("gan"))),
           "cgan": ms_per_step(lambda: fit_cgan(cg, sets.train, loop("cgan"))),
           "progressive": ms_per_step(lambda: fit_progressive(pg, sets.train, loop("progressive")))}
    print(f"{prec}{' channels-last' if cl else ''}: ms per step {res}", flush=True)
