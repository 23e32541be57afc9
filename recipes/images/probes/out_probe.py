"""Probe: VAE variants for outlier detection (one held-out class)."""
import sys, time, json
from pathlib import Path
import torch, numpy as np
from hydra import compose, initialize_config_dir
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.experiments.common import data_of, loop_of, take, save_grid
from voiceconv.images.experiments.outliers import _as_tensors
from voiceconv.images.loops import fit_vae, batched
from voiceconv.images.metrics import auroc
from voiceconv.models.pixelcnn import LocalPixelCNN
from voiceconv.models.vae import VAE
import argparse
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--held", default="heart")
p.add_argument("--hidden", default="32,64")
p.add_argument("--latent", type=int, default=10)
p.add_argument("--steps", type=int, default=4000)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--bgk", type=int, default=5)
p.add_argument("--bgsteps", type=int, default=1000)
p.add_argument("--tag", default="x")
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=outliers", "size=small", f"seed={a.seed}"])
out = Path(f"runs/images/probes/ou_{a.tag}"); out.mkdir(exist_ok=True, parents=True)
sets = data_of(cfg)
train, test = _as_tensors(sets.train), _as_tensors(sets.test)
held = sets.classes.index(a.held)
tr, t_in, t_out = train.select(train.labels != held), test.select(test.labels != held), test.select(test.labels == held)
torch.manual_seed(a.seed)
vae = VAE(1, 32, a.latent, tuple(int(h) for h in a.hidden.split(",")), likelihood="bernoulli")
lc = loop_of(cfg, "vae"); lc.steps = a.steps; lc.batch_size = a.bs; lc.lr = a.lr
t0 = time.time(); fit_vae(vae, tr, lc); secs = time.time() - t0
torch.manual_seed(a.seed)
bg = LocalPixelCNN(1, a.bgk, 32)
lb = loop_of(cfg, "background"); lb.steps = a.bgsteps
t1 = time.time(); fit_vae(bg, tr, lb); bsecs = time.time() - t1
vae.eval(); bg.eval()
torch.manual_seed(a.seed + 1)
S = {}
x_all = test.images
ne = batched(lambda b: vae.outlier_score(b, n_samples=4), x_all, device="cpu").numpy()
bn = batched(bg.nll, x_all, device="cpu").numpy()
lab = test.labels.numpy()
inl = lab != held
res = dict(vars(a), secs=round(secs), bsecs=round(bsecs),
           auc_elbo=round(auroc(ne[inl], ne[~inl]), 3), auc_lr=round(auroc((ne - bn)[inl], (ne - bn)[~inl]), 3),
           mean_elbo={c: round(float(ne[lab == i].mean()), 1) for i, c in enumerate(sets.classes)},
           mean_lr={c: round(float((ne - bn)[lab == i].mean()), 1) for i, c in enumerate(sets.classes)})
np.savez(out / "scores.npz", ne=ne, bn=bn, lab=lab)
k = 8
rows = []
for i in range(5):
    xi = x_all[lab == i][:k]; rows += [xi, batched(vae.reconstruct, xi, device="cpu")]
save_grid(out / "rec.png", torch.stack(rows), "per class: images, recon")
torch.save(vae.state_dict(), out / "vae.pt")
print(json.dumps(res)); open("runs/images/probes/out_results.jsonl", "a").write(json.dumps(res) + "\n")
