"""Probe: the gans recipe's conditional GAN alone (train_cgan + judge_cgan, exactly as
exp_gans runs them), with Hydra overrides; the judge is cached per seed and precision.

    python recipes/images/probes/cgan_recipe.py --seed 1 --threads 1 --tag c16 \
        gans.cgan_placement_canvas=16 optim.cgan.precision=auto optim.cgan.channels_last=true
"""
import argparse
import json

import torch
from _gans_probe import ROOT, gans_cfg, judge_cache

from voiceconv.images.experiments.common import data_of  # noqa: E402
from voiceconv.images.experiments.gans import judge_cgan, train_cgan  # noqa: E402
from voiceconv.images.experiments.judge import train_judge  # noqa: E402
from voiceconv.models.base import save_model  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--tag", default="x")
p.add_argument("overrides", nargs="*")
a = p.parse_args()
cfg = gans_cfg(a.threads, [f"seed={a.seed}", *a.overrides])
out = ROOT / f"runs/images/probes/cgr_{a.tag}_s{a.seed}"
out.mkdir(parents=True, exist_ok=True)
sets = data_of(cfg)
jp = judge_cache(cfg)
if jp.exists():
    judge = torch.load(jp, weights_only=False)
else:
    judge = train_judge(cfg, sets, out)
    torch.save(judge, jp)
cg = train_cgan(cfg, sets.train, sets.num_classes, sets.image_shape[0])
save_model(cg["models"]["cgan"], out / "cgan.pt")
res = judge_cgan(cfg, cg["models"]["cgan"].eval(), judge, sets.classes, out)
res.update(train_seconds=cg["train_seconds"], overrides=a.overrides, seed=a.seed, threads=a.threads)
(out / "result.json").write_text(json.dumps(res, indent=1))
print(a.tag, a.seed, {k: res[k] for k in ("conditional_accuracy", "within_class_pixel_std", "fd", "train_seconds")},
      res["predicted_class_histogram"], flush=True)
