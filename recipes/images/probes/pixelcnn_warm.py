"""Probe: a shared warm start for the outlier experiment's gated PixelCNNs. Phase 1
trains one model on the classes that no run holds out (square, ellipse); phase 2
fine-tunes a copy on the inliers of HELD_OUT (everything but it). Prints the AUROC of
the PixelCNN / local ratio every --eval_every fine-tuning steps.

usage: pixelcnn_warm.py HELD_OUT [--shared N] [--steps M] [--seed S] [--threads T]
"""
import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.data.sources import TensorImages  # noqa: E402
from voiceconv.images.experiments.common import data_of, loop_of, take  # noqa: E402
from voiceconv.images.experiments.outliers import _nll_as_trained, build_pixelcnn  # noqa: E402
from voiceconv.images.loops import batched, fit_vae  # noqa: E402
from voiceconv.images.metrics import auroc  # noqa: E402
from voiceconv.models.pixelcnn import LocalPixelCNN  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("held")
p.add_argument("--shared", type=int, default=2000)
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--eval_every", type=int, default=500)
p.add_argument("--shared_lr", type=float, default=None)
p.add_argument("--lr", type=float, default=None)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=outliers", "size=small", f"seed={a.seed}"])
sets = data_of(cfg)
held_all = [sets.classes.index(c) for c in cfg.outliers.held_out]
held = sets.classes.index(a.held)
xtr, ytr = take(sets.train)[0], take(sets.train)[-1]
b = take(sets.test)
xte, yte = b[0], b[-1]
common = torch.ones_like(ytr, dtype=torch.bool)
for h in held_all:
    common &= ytr != h
tr = TensorImages(xtr[ytr != held], ytr[ytr != held])
shared = TensorImages(xtr[common], ytr[common])
torch.manual_seed(a.seed)
bg = LocalPixelCNN(1, 5, 32)
fit_vae(bg, tr, loop_of(cfg, "background"))
bg.eval()
xin, xout = xte[yte != held], xte[yte == held]
nb_in, nb_out = batched(bg.nll, xin).numpy(), batched(bg.nll, xout).numpy()
base = loop_of(cfg, "pixelcnn")
torch.manual_seed(a.seed)
m = build_pixelcnn(1, cfg.outliers.pixelcnn)
t0 = time.time()
if a.shared:
    fit_vae(m, shared, dataclasses.replace(base, steps=a.shared, lr=a.shared_lr or base.lr, seed=a.seed + 100))
t_shared = time.time() - t0
out = []
done = 0
while done < a.steps:
    # fine-tune in eval_every chunks of one cosine schedule would need a callback; instead
    # train separate copies from the warm start with steps = k * eval_every
    done += a.eval_every
    mm = copy.deepcopy(m)
    t = time.time()
    fit_vae(mm, tr, dataclasses.replace(base, steps=done, lr=a.lr or base.lr))
    secs = time.time() - t
    mm.eval()
    nf_in = _nll_as_trained(mm, xin, base, "cpu").numpy()
    nf_out = _nll_as_trained(mm, xout, base, "cpu").numpy()
    r = dict(held=a.held, seed=a.seed, shared=a.shared, steps=done, shared_s=round(t_shared), ft_s=round(secs),
             auroc_lr=round(auroc(nf_in - nb_in, nf_out - nb_out), 4), nll_in=round(float(nf_in.mean()), 2))
    print(json.dumps(r), flush=True)
    out.append(r)
open("runs/images/probes/pixelcnn_warm.jsonl", "a").write(json.dumps(dict(vars(a), trajectory=out)) + "\n")
