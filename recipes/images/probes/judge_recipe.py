"""Probe: the gans recipe's judge (train_judge, as exp_gans runs it) with Hydra overrides;
prints its real test accuracy, confusion matrix and training time, and caches it where
cgan_recipe.py looks for it.

    python recipes/images/probes/judge_recipe.py --seed 1 optim.classifier.schedule=cosine
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.experiments.common import data_of, take  # noqa: E402
from voiceconv.images.experiments.judge import train_judge  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("overrides", nargs="*")
a = p.parse_args()
torch.set_num_threads(a.threads)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=gans", "size=small", f"seed={a.seed}", *a.overrides])
sets = data_of(cfg)
oc = cfg.optim.classifier
jtag = f"{oc.get('precision', 'fp32')}_{oc.get('schedule', 'constant')}_{cfg.size.steps.classifier}"
out = ROOT / f"runs/images/probes/judge_{jtag}_s{a.seed}"
out.mkdir(parents=True, exist_ok=True)
t = time.perf_counter()
judge = train_judge(cfg, sets, out)
secs = time.perf_counter() - t
torch.save(judge, ROOT / f"runs/images/probes/judge_recipe_s{a.seed}_{jtag}.pt")
x, *_, y = take(sets.test)
with torch.no_grad():
    pred = judge.clf(x).argmax(1)
conf = torch.zeros(sets.num_classes, sets.num_classes, dtype=torch.long)
for i, j in zip(y.long(), pred):
    conf[i, j] += 1
print(jtag, a.seed, judge.report["real_test_accuracy"], f"{secs:.0f} s", conf.tolist(), flush=True)
