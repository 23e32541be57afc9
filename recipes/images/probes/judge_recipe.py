"""Probe: the gans recipe's judge (train_judge, as exp_gans runs it) with Hydra overrides;
prints its real test accuracy, confusion matrix and training time, and caches it where
cgan_recipe.py looks for it.

    python recipes/images/probes/judge_recipe.py --seed 1 optim.classifier.schedule=cosine
"""
import argparse
import time

import torch
from _gans_probe import gans_cfg, judge_cache

from voiceconv.images.experiments.common import data_of, take  # noqa: E402
from voiceconv.images.experiments.judge import train_judge  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("overrides", nargs="*")
a = p.parse_args()
cfg = gans_cfg(a.threads, [f"seed={a.seed}", *a.overrides])
sets = data_of(cfg)
jp = judge_cache(cfg)
out = jp.with_suffix("")
out.mkdir(parents=True, exist_ok=True)
t = time.perf_counter()
judge = train_judge(cfg, sets, out)
secs = time.perf_counter() - t
torch.save(judge, jp)
x, *_, y = take(sets.test)
with torch.no_grad():
    pred = judge.clf(x).argmax(1)
conf = torch.zeros(sets.num_classes, sets.num_classes, dtype=torch.long)
for i, j in zip(y.long(), pred, strict=True):
    conf[i, j] += 1
print(jp.stem, judge.report["real_test_accuracy"], f"{secs:.0f} s", conf.tolist(), flush=True)
