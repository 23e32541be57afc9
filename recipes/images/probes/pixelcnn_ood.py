"""Probe: a full-receptive-field PixelCNN trained without one class; AUROC of its NLL and
of its likelihood ratio to the local pixel model (Schirrmeister et al. 2020's general-vs-
specific ratio), against held-in test shapes.

usage: pixelcnn_ood.py HELD_OUT [--steps N] [--width W] [--layers L] [--bg_steps N]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.experiments.common import data_of, loop_of, take  # noqa: E402
from voiceconv.images.loops import batched, fit_vae  # noqa: E402
from voiceconv.images.metrics import auroc  # noqa: E402
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN, PixelCNN  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("held")
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--bg_steps", type=int, default=1000)
p.add_argument("--width", type=int, default=32)
p.add_argument("--layers", type=int, default=6)
p.add_argument("--dilate", type=int, default=0)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--save", default="", help="save both models here (prefix)")
p.add_argument("--gated", type=int, default=0, help="GatedPixelCNN with this kernel (0: the plain PixelCNN)")
a = p.parse_args()
torch.set_num_threads(a.threads)


with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=outliers", "size=small", f"seed={a.seed}"])
sets = data_of(cfg)
held = sets.classes.index(a.held)
_b = take(sets.train); xtr, ytr = _b[0], _b[-1]
_b = take(sets.test); xte, yte = _b[0], _b[-1]
from voiceconv.images.data.sources import TensorImages  # noqa: E402
tr = TensorImages(xtr[ytr != held], ytr[ytr != held])
torch.manual_seed(a.seed)
full = GatedPixelCNN(1, a.width, a.layers, a.gated) if a.gated else PixelCNN(1, a.width, a.layers, bool(a.dilate))
lc = loop_of(cfg, "vae")
lc.steps, lc.lr, lc.batch_size = a.steps, a.lr, a.bs
t0 = time.time()
fit_vae(full, tr, lc)
secs = time.time() - t0
torch.manual_seed(a.seed)
bg = LocalPixelCNN(1, 5, 32)
lb = loop_of(cfg, "background")
lb.steps = a.bg_steps
fit_vae(bg, tr, lb)
full.eval(); bg.eval()
if a.save:
    from voiceconv.models.base import save_model  # noqa: E402
    save_model(full, a.save + "_fg.pt"); save_model(bg, a.save + "_bg.pt")
xin, xout = xte[yte != held], xte[yte == held]
nf_in, nf_out = batched(full.nll, xin).numpy(), batched(full.nll, xout).numpy()
nb_in, nb_out = batched(bg.nll, xin).numpy(), batched(bg.nll, xout).numpy()
per_class = {sets.classes[c]: round(float((batched(full.nll, xte[yte == c]) - batched(bg.nll, xte[yte == c])).mean()), 2)
             for c in range(len(sets.classes))}
res = dict(vars(a), secs=round(secs), nll_in=round(float(nf_in.mean()), 2), nll_out=round(float(nf_out.mean()), 2),
           auroc_nll=round(auroc(nf_in, nf_out), 4), auroc_lr=round(auroc(nf_in - nb_in, nf_out - nb_out), 4),
           lr_per_class=per_class)
print(json.dumps(res))
Path("runs/images/probes").mkdir(parents=True, exist_ok=True)
open("runs/images/probes/pixelcnn_ood.jsonl", "a").write(json.dumps(res) + "\n")
