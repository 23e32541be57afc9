"""Probe: how fast can the outlier experiment's gated PixelCNN learn to flag a held-out
shape? Trains it with bf16 autocast and channels-last (optional), a constant or a
cosine learning rate, and prints the AUROC of its NLL and of its ratio to the local
background model every --eval_every steps (held-out class vs held-in test shapes).

usage: pixelcnn_fast.py HELD_OUT [--steps N] [--lr LR] [--sched const|cosine] [--bs B]
       [--bf16] [--cl] [--width W] [--layers L] [--kernel K] [--seed S] [--threads T]
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.data.sources import TensorImages  # noqa: E402
from voiceconv.images.experiments.common import data_of, loop_of, take  # noqa: E402
from voiceconv.images.loops import batched, fit_vae, random_batches  # noqa: E402
from voiceconv.images.metrics import auroc  # noqa: E402
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("held")
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--eval_every", type=int, default=250)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--sched", default="const")
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--bf16", action="store_true")
p.add_argument("--cl", action="store_true")
p.add_argument("--width", type=int, default=32)
p.add_argument("--layers", type=int, default=6)
p.add_argument("--kernel", type=int, default=5)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=outliers", "size=small", f"seed={a.seed}"])
sets = data_of(cfg)
held = sets.classes.index(a.held)
xtr, ytr = take(sets.train)[0], take(sets.train)[-1]
b = take(sets.test)
xte, yte = b[0], b[-1]
tr = TensorImages(xtr[ytr != held], ytr[ytr != held])
torch.manual_seed(a.seed)
bg = LocalPixelCNN(1, 5, 32)
fit_vae(bg, tr, loop_of(cfg, "background"))
bg.eval()
xin, xout = xte[yte != held], xte[yte == held]
nb_in, nb_out = batched(bg.nll, xin).numpy(), batched(bg.nll, xout).numpy()
torch.manual_seed(a.seed)
m = GatedPixelCNN(1, a.width, a.layers, a.kernel)
fmt = torch.channels_last if a.cl else torch.contiguous_format
m = m.to(memory_format=fmt)
opt = torch.optim.Adam(m.parameters(), a.lr)


def lr_at(s: int) -> float:
    if a.sched == "const":
        return a.lr
    w = min(1.0, (s + 1) / a.warmup)
    return a.lr * w * 0.5 * (1 + math.cos(math.pi * s / a.steps))


def nll(x):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        return m.nll(x.contiguous(memory_format=fmt)).float()


batches = random_batches(tr, a.bs, a.seed)
t0, train_s, out = time.time(), 0.0, []
for s in range(a.steps):
    t = time.perf_counter()
    for g in opt.param_groups:
        g["lr"] = lr_at(s)
    x = next(batches)[0].contiguous(memory_format=fmt)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        loss = m.nll(x).float().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    train_s += time.perf_counter() - t
    if (s + 1) % a.eval_every == 0 or s + 1 == a.steps:
        m.eval()
        nf_in, nf_out = batched(nll, xin).numpy(), batched(nll, xout).numpy()
        m.train()
        r = dict(step=s + 1, train_s=round(train_s), nll_in=round(float(nf_in.mean()), 2),
                 nll_out=round(float(nf_out.mean()), 2), auroc_nll=round(auroc(nf_in, nf_out), 4),
                 auroc_lr=round(auroc(nf_in - nb_in, nf_out - nb_out), 4))
        print(json.dumps(r), flush=True)
        out.append(r)
res = dict(vars(a), trajectory=out)
Path("runs/images/probes").mkdir(parents=True, exist_ok=True)
open("runs/images/probes/pixelcnn_fast.jsonl", "a").write(json.dumps(res) + "\n")
