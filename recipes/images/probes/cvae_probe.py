"""Probe: class-conditional VAE as a mixture over inlier classes for outliers."""
import sys, time, json
from pathlib import Path
import torch, numpy as np
from hydra import compose, initialize_config_dir
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.experiments.common import data_of, loop_of, save_grid
from voiceconv.images.experiments.outliers import _as_tensors
from voiceconv.images.loops import fit_vae, batched
from voiceconv.images.metrics import auroc
from voiceconv.models.pixelcnn import LocalPixelCNN
from voiceconv.models.vae import ConditionalVAE
from voiceconv.images.data.sources import TensorImages
import argparse
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--held", default="heart")
p.add_argument("--hidden", default="32,64")
p.add_argument("--latent", type=int, default=8)
p.add_argument("--steps", type=int, default=6000)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--tag", default="x")
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=outliers", "size=small", f"seed={a.seed}"])
out = Path(f"runs/images/probes/cv_{a.tag}"); out.mkdir(exist_ok=True, parents=True)
sets = data_of(cfg)
train, test = _as_tensors(sets.train), _as_tensors(sets.test)
held = sets.classes.index(a.held)
keep = [c for c in range(len(sets.classes)) if c != held]
remap = torch.full((len(sets.classes),), -1, dtype=torch.long); remap[keep] = torch.arange(len(keep))
tr = train.select(train.labels != held); tr = TensorImages(tr.images, remap[tr.labels])
torch.manual_seed(a.seed)
vae = ConditionalVAE(1, 32, a.latent, len(keep), tuple(int(h) for h in a.hidden.split(",")))
lc = loop_of(cfg, "vae"); lc.steps = a.steps; lc.batch_size = a.bs; lc.lr = a.lr
t0 = time.time(); fit_vae(vae, tr, lc, label_index=-1); secs = time.time() - t0
torch.manual_seed(a.seed)
bg = LocalPixelCNN(1, 5, 32)
lb = loop_of(cfg, "background")
t1 = time.time(); fit_vae(bg, tr, lb); bsecs = time.time() - t1
vae.eval(); bg.eval()
torch.manual_seed(a.seed + 1)
x_all = test.images
E = np.stack([batched(lambda b, y=y: -vae.elbo(b, y, n_samples=4), x_all, device="cpu").numpy() for y in range(len(keep))], 1)
prior = np.bincount(tr.labels.numpy(), minlength=len(keep)) / len(tr)
ne = -np.logaddexp.reduce(-E + np.log(prior), axis=1)
bn = batched(bg.nll, x_all, device="cpu").numpy()
lab = test.labels.numpy(); inl = lab != held
lr = ne - bn
res = dict(vars(a), secs=round(secs), bsecs=round(bsecs),
           auc_elbo=round(auroc(ne[inl], ne[~inl]), 3), auc_lr=round(auroc(lr[inl], lr[~inl]), 3),
           mean_elbo={c: round(float(ne[lab == i].mean()), 1) for i, c in enumerate(sets.classes)},
           mean_lr={c: round(float(lr[lab == i].mean()), 1) for i, c in enumerate(sets.classes)},
           best_label_acc=float((E[inl].argmin(1) == remap[torch.as_tensor(lab[inl])].numpy()).mean()))
np.savez(out / "scores.npz", ne=ne, bn=bn, lab=lab, E=E)
rows = []
for i in range(5):
    xi = x_all[lab == i][:8]
    yb = torch.as_tensor(E[lab == i][:8].argmin(1))
    rows += [xi, vae.reconstruct(xi, yb).detach()]
save_grid(out / "rec.png", torch.stack(rows), "per class: images, recon with best label")
torch.save(vae.state_dict(), out / "vae.pt")
print(json.dumps(res)); open("runs/images/probes/cvae_results.jsonl", "a").write(json.dumps(res) + "\n")
