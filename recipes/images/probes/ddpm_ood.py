"""Probe: DDPM trained without one class; per-t denoising errors as outlier scores."""
import sys, time, json
from pathlib import Path
import torch, numpy as np
from hydra import compose, initialize_config_dir
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.experiments.common import data_of, loop_of
from voiceconv.images.experiments.outliers import _as_tensors
from voiceconv.images.loops import fit_diffusion, fit_vae, batched, to_signed
from voiceconv.images.metrics import auroc
from voiceconv.models.diffusion import DDPM
from voiceconv.models.pixelcnn import LocalPixelCNN
held_name = sys.argv[1]; steps = int(sys.argv[2]); width = int(sys.argv[3]) if len(sys.argv) > 3 else 16
torch.set_num_threads(1)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=diffusion", "size=small", "seed=0"])
sets = data_of(cfg); train, test = _as_tensors(sets.train), _as_tensors(sets.test)
held = sets.classes.index(held_name); tr = train.select(train.labels != held)
torch.manual_seed(0)
ddpm = DDPM(1, 32, width=width, channel_mults=[1, 2, 2], num_res_blocks=1, timesteps=1000, schedule="cosine", num_classes=0, prediction="v")
lc = loop_of(cfg, "diffusion"); lc.steps = steps
t0 = time.time(); fit_diffusion(ddpm, tr, lc, label_index=None); secs = time.time() - t0
ddpm.eval()
torch.manual_seed(0); bg = LocalPixelCNN(1, 5, 32); fit_vae(bg, tr, loop_of(cfg, "background")); bg.eval()
x = to_signed(test.images); lab = test.labels.numpy(); inl = lab != held
ts = [50, 100, 200, 300, 400, 500, 600, 700]
errs = {}
g = torch.Generator().manual_seed(1)
noise = torch.randn(x.shape, generator=g)
with torch.no_grad():
    for t in ts:
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        xt = ddpm.q_sample(x, tt, noise)
        x0 = batched(lambda b: ddpm.predict_x0(b[0], b[1]), (xt, tt), device="cpu") if False else torch.cat([ddpm.predict_x0(xt[i:i+250], tt[i:i+250]) for i in range(0, len(x), 250)])
        errs[t] = ((x0 - x) ** 2).flatten(1).sum(1).numpy()
bn = batched(bg.nll, test.images, device="cpu").numpy()
res = {"held": held_name, "steps": steps, "secs": round(secs)}
for t in ts:
    e = errs[t]; res[t] = (round(auroc(e[inl], e[~inl]), 3), round(auroc((e / (bn + 1))[inl], (e / (bn + 1))[~inl]), 3))
tot = sum(errs[t] for t in ts); res["sum"] = round(auroc(tot[inl], tot[~inl]), 3)
print(json.dumps(res)); open("runs/images/probes/ddpm_ood.jsonl", "a").write(json.dumps(res) + "\n")
np.savez(f"runs/images/probes/ddpm_ood_{held_name}.npz", bn=bn, lab=lab, **{str(t): errs[t] for t in ts})
