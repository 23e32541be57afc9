"""Probe: train cGAN variants, judge them (judge cached per seed)."""
import sys, time, json, os
from pathlib import Path
import torch, numpy as np
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from voiceconv.images.experiments.common import data_of, loop_of, in_chunks, save_grid
from voiceconv.images.experiments.judge import train_judge, Judge
from voiceconv.images.experiments.gans import class_rows
from voiceconv.images.loops import fit_cgan, to_unit, batched
from voiceconv.models.cgan import ConditionalGAN
import argparse
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--gw", type=int, default=1)
p.add_argument("--dw", type=int, default=1)
p.add_argument("--g_aux", type=float, default=None)
p.add_argument("--aux", type=float, default=1.0)
p.add_argument("--mismatch", type=float, default=1.0)
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--dlr", type=float, default=1e-3)
p.add_argument("--dnorm", default="batch")
p.add_argument("--sn", type=int, default=0)
p.add_argument("--joint", type=int, default=0)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--tag", default="x")
p.add_argument("--flat", type=int, default=0)
p.add_argument("--sep", type=int, default=0)
p.add_argument("--dstem", type=int, default=0)
p.add_argument("--concat", type=int, default=0)
p.add_argument("--warm", type=int, default=0)
p.add_argument("--warmlr", type=float, default=2e-3)
p.add_argument("--loss", default="hinge")
p.add_argument("--dsteps", type=int, default=1)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--ema", type=float, default=0.0)
p.add_argument("--kp1", type=float, default=0.0)  # weight of a (K+1)-way softmax head: real -> y, fake -> K
p.add_argument("--kp1_only", type=int, default=0)  # drop the projection / aux / mismatch losses
p.add_argument("--decay", type=float, default=0.0)  # linear lr decay to 0 over this last fraction of steps
p.add_argument("--pose", type=int, default=0)  # canonical shape + affine placement generator (LR-GAN-like)
p.add_argument("--pose_scale", type=float, default=2.5)  # initial sampling zoom (canonical -> output)
a = p.parse_args()
torch.set_num_threads(a.threads)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=gans", "size=small", f"seed={a.seed}"])
out = Path(f"runs/images/probes/cg_{a.tag}"); out.mkdir(exist_ok=True, parents=True)
sets = data_of(cfg)
jp = Path(f"runs/images/probes/judge_s{a.seed}.pt")
if jp.exists():
    judge = torch.load(jp, weights_only=False)
else:
    judge = train_judge(cfg, sets, out); torch.save(judge, jp)
w = int(cfg.size.width)
torch.manual_seed(a.seed)
cg = ConditionalGAN(num_classes=sets.num_classes, latent_dim=64, channels=1, image_size=32, base_channels=a.gw*w,
    gan_mode=a.loss, g_norm="conditional_batch", d_norm=a.dnorm, spectral_norm=bool(a.sn), d_base_channels=a.dw*w,
    mismatch_weight=a.mismatch, aux_weight=a.aux, g_aux_weight=a.g_aux)
if a.pose:
    from torch import nn
    from voiceconv.models.cgan import ConditionalBatchNorm2d
    from voiceconv.models.init import init_weights
    import math

    class PoseGenerator(nn.Module):
        """Draw a class's shape in a canonical frame (CBN DCGAN stack -> logits), then place it:
        an affine warp (zoom, rotation, shift) predicted from z, tanh after the warp."""
        def __init__(self, zdim, K, w):
            super().__init__()
            ch = [8 * w, 4 * w, 2 * w, w]
            self.convs = nn.ModuleList([nn.ConvTranspose2d(zdim, ch[0], 4, 1, 0, bias=False)])
            self.norms = nn.ModuleList([ConditionalBatchNorm2d(ch[0], K)])
            for i in range(3):
                self.convs.append(nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False))
                self.norms.append(ConditionalBatchNorm2d(ch[i + 1], K))
            self.out = nn.Conv2d(w, 1, 3, 1, 1)
            for m in (*self.convs, self.out):
                init_weights(m)
            self.pose = nn.Sequential(nn.Linear(zdim, 64), nn.ReLU(), nn.Linear(64, 4))
            nn.init.zeros_(self.pose[2].weight); nn.init.zeros_(self.pose[2].bias)
            self.zdim = zdim
        def forward(self, z, labels):
            zc, zp = z, z
            h = zc[:, :, None, None]
            for conv, norm in zip(self.convs, self.norms):
                h = torch.relu(norm(conv(h), labels))
            logits = self.out(h) * 4.0 - 2.0
            p = self.pose(zp)
            # pose from fixed random directions of z plus a learned correction
            s = a.pose_scale * torch.exp(0.35 * torch.tanh(p[:, 0] + zp[:, 0]))
            th = math.pi * torch.tanh(p[:, 1] + zp[:, 1])
            tx = 0.75 * torch.tanh(p[:, 2] + 0.6 * zp[:, 2])
            ty = 0.75 * torch.tanh(p[:, 3] + 0.6 * zp[:, 3])
            A = torch.stack([torch.stack([s * torch.cos(th), -s * torch.sin(th), -tx * s], 1),
                             torch.stack([s * torch.sin(th), s * torch.cos(th), -ty * s], 1)], 1)
            grid = F.affine_grid(A, (z.shape[0], 1, 32, 32), align_corners=False)
            warped = F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)
            return torch.tanh(warped)

    cg.generator = PoseGenerator(64, sets.num_classes, a.gw * w)
if a.dstem:
    from torch import nn
    from voiceconv.models.init import init_weights
    c0 = cg.d_net.trunk[0]
    stem = nn.Sequential(nn.Conv2d(1, a.dstem * w, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(a.dstem * w, c0.out_channels, 4, 2, 1))
    init_weights(stem); cg.d_net.trunk[0] = stem
if a.flat:
    from torch import nn
    from voiceconv.models.init import init_weights
    f = cg.d_net.feature_channels * 16
    cg.d_linear = init_weights(nn.Linear(f, 1))
    cg.d_projection = nn.Embedding(sets.num_classes, f); nn.init.normal_(cg.d_projection.weight, 0.0, 0.02)
    if cg.d_aux is not None: cg.d_aux = init_weights(nn.Linear(f, sets.num_classes))
    cg._pooled = lambda x, self=cg: self.d_act(self.d_net.features(x)).flatten(1)
if a.concat:
    from voiceconv.models.gan import DCGANDiscriminator
    K = sets.num_classes
    cg.d_net = DCGANDiscriminator(1 + K, 32, a.dw * w, a.dnorm, bool(a.sn), head=False)
    def catl(x, labels): return torch.cat([x, F.one_hot(labels, K).float()[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])], 1)
    def pooled_l(x, labels, self=cg): return self.d_act(self.d_net.features(catl(x, labels))).sum(dim=(2, 3))
    def dloss(real, labels, fake=None, self=cg):
        with torch.no_grad():
            fake = self.generate(torch.randn(labels.shape[0], self.latent_dim), labels)
        loss = self.gan_loss.discriminator_loss(self._logit(pooled_l(real, labels), labels), self._logit(pooled_l(fake, labels), labels))
        wrong = (labels + torch.randint_like(labels, 1, K)) % K
        return loss + a.mismatch * self.gan_loss.loss(self._logit(pooled_l(real, wrong), wrong), False)
    def gloss(labels, self=cg):
        fake = self.generate(torch.randn(labels.shape[0], self.latent_dim), labels)
        return self.gan_loss.generator_loss(self._logit(pooled_l(fake, labels), labels))
    cg.discriminator_loss = dloss; cg.generator_loss = gloss
if a.sep:
    from torch import nn
    def blk(i, o): return [nn.Conv2d(i, o, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(o, o, 4, 2, 1), nn.LeakyReLU(0.2)]
    cg.d_aux_net = nn.Sequential(*blk(1, w), *blk(w, 2 * w), *blk(2 * w, 4 * w), nn.Flatten(), nn.Linear(4 * w * 16, sets.num_classes))
    cg.aux_weight = 0.0; cg.d_aux = None
    orig_d, orig_g = cg.discriminator_loss, cg.generator_loss
    def dloss(real, labels, fake=None, self=cg):
        return orig_d(real, labels) + F.cross_entropy(self.d_aux_net(real), labels)
    def gloss(labels, self=cg):
        z = torch.randn(labels.shape[0], self.latent_dim)
        fake = self.generate(z, labels)
        h = self._pooled(fake)
        return self.gan_loss.generator_loss(self._logit(h, labels)) + a.g_aux * F.cross_entropy(self.d_aux_net(fake), labels)
    cg.discriminator_loss = dloss; cg.generator_loss = gloss
    _dp = cg.discriminator_parameters
    cg.discriminator_parameters = lambda self=cg: list(_dp()) + list(self.d_aux_net.parameters())
if a.joint:
    def dloss(real, labels, fake=None, self=cg):
        with torch.no_grad():
            z = torch.randn(labels.shape[0], self.latent_dim); fake = self.generate(z, labels)
        n = real.shape[0]
        h = self._pooled(torch.cat([real, fake]))
        h_real, h_fake = h[:n], h[n:]
        loss = self.gan_loss.discriminator_loss(self._logit(h_real, labels), self._logit(h_fake, labels))
        if self.d_aux is not None:
            loss = loss + self.aux_weight * F.cross_entropy(self.d_aux(h_real), labels)
        if self.mismatch_weight > 0:
            wrong = (labels + torch.randint_like(labels, 1, self.num_classes)) % self.num_classes
            loss = loss + self.mismatch_weight * self.gan_loss.loss(self._logit(h_real, wrong), False)
        self._last_real = real.detach()
        return loss
    def gloss(labels, self=cg):
        z = torch.randn(labels.shape[0], self.latent_dim)
        fake = self.generate(z, labels); n = fake.shape[0]
        h = self._pooled(torch.cat([self._last_real, fake]))[n:]
        loss = self.gan_loss.generator_loss(self._logit(h, labels))
        if self.d_aux is not None:
            loss = loss + self.g_aux_weight * F.cross_entropy(self.d_aux(h), labels)
        return loss
    cg.discriminator_loss = dloss; cg.generator_loss = gloss
if a.kp1:
    from torch import nn
    from voiceconv.models.init import init_weights
    K = sets.num_classes
    cg.d_kp1 = init_weights(nn.Linear(cg.d_net.feature_channels, K + 1))
    base_d, base_g = cg.discriminator_loss, cg.generator_loss
    def dloss(real, labels, fake=None, self=cg):
        with torch.no_grad():
            fake = self.generate(torch.randn(labels.shape[0], self.latent_dim), labels)
        hr, hf = self._pooled(real), self._pooled(fake)
        loss = a.kp1 * (F.cross_entropy(self.d_kp1(hr), labels) + F.cross_entropy(self.d_kp1(hf), torch.full_like(labels, K)))
        if not a.kp1_only:
            loss = loss + base_d(real, labels, fake)
        return loss
    def gloss(labels, self=cg):
        fake = self.generate(torch.randn(labels.shape[0], self.latent_dim), labels)
        h = self._pooled(fake)
        loss = a.kp1 * F.cross_entropy(self.d_kp1(h), labels)
        if not a.kp1_only:
            loss = loss + self.gan_loss.generator_loss(self._logit(h, labels))
            if self.d_aux is not None:
                loss = loss + self.g_aux_weight * F.cross_entropy(self.d_aux(h), labels)
        return loss
    cg.discriminator_loss = dloss; cg.generator_loss = gloss
    _dp2 = cg.discriminator_parameters
    cg.discriminator_parameters = lambda self=cg: list(_dp2()) + list(self.d_kp1.parameters())
lc = loop_of(cfg, "cgan")
lc.steps = a.steps; lc.lr = a.lr; lc.d_lr = a.dlr; lc.batch_size = a.bs
t0 = time.time()
if a.warm:
    from voiceconv.images.loops import random_batches, to_signed
    clf = (lambda x: cg.d_aux_net(x)) if a.sep else (lambda x: cg.d_aux(cg._pooled(x)))
    params = list(cg.d_aux_net.parameters()) if a.sep else list(cg.d_net.parameters()) + list(cg.d_aux.parameters())
    opt = torch.optim.Adam(params, lr=a.warmlr)
    bt = random_batches(sets.train, 64, a.seed + 99, None, "cpu")
    cg.train()
    for i in range(a.warm):
        b = next(bt); l = F.cross_entropy(clf(to_signed(b[0])), b[-1].long()); opt.zero_grad(); l.backward(); opt.step()
    with torch.no_grad():
        b = next(bt); print("warm acc", (clf(to_signed(b[0])).argmax(1) == b[-1]).float().mean().item(), flush=True)
if a.ema or a.decay:
    import copy
    from voiceconv.images.loops import random_batches, to_signed
    g_opt = torch.optim.Adam(list(cg.generator_parameters()), lr=a.lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(list(cg.discriminator_parameters()), lr=a.dlr, betas=(0.5, 0.999))
    ema_g = copy.deepcopy(cg.generator) if a.ema else None
    bt = random_batches(sets.train, a.bs, a.seed, None, "cpu")
    cg.train(); torch.manual_seed(a.seed)
    start = int(a.steps * (1 - a.decay)) if a.decay else a.steps
    for step in range(a.steps):
        if step >= start:
            f = 1 - (step - start) / max(1, a.steps - start)
            for o, base in ((g_opt, a.lr), (d_opt, a.dlr)):
                for gr in o.param_groups: gr["lr"] = base * f
        for _ in range(a.dsteps):
            b = next(bt); real = to_signed(b[0]); lab = b[-1].long()
            l = cg.discriminator_loss(real, lab); d_opt.zero_grad(); l.backward(); d_opt.step()
        l = cg.generator_loss(lab); g_opt.zero_grad(); l.backward(); g_opt.step()
        if ema_g is not None:
            with torch.no_grad():
                for pe, pl in zip(ema_g.parameters(), cg.generator.parameters()): pe.lerp_(pl, 1 - a.ema)
                for be, bl in zip(ema_g.buffers(), cg.generator.buffers()): be.copy_(bl)
    if ema_g is not None:
        live = cg.generator
        # standing statistics for the EMA generator's batch norms
        for m in ema_g.modules():
            if isinstance(m, torch.nn.BatchNorm2d): m.reset_running_stats(); m.momentum = None
        ema_g.train()
        with torch.no_grad():
            for i in range(100):
                lab = torch.arange(64) % sets.num_classes
                ema_g(torch.randn(64, cg.latent_dim), lab)
        cg.generator = ema_g
else:
    fit_cgan(cg, sets.train, lc, label_index=-1, d_steps=a.dsteps)
secs = time.time() - t0
cg.eval()
labels = torch.arange(2000) % sets.num_classes
torch.manual_seed(a.seed + 1)
fakes = in_chunks(lambda lab: to_unit(cg.sample(lab)), labels)
sc = judge.score(fakes, labels)
pred = batched(judge.clf, fakes, device="cpu").argmax(1)
conf = np.zeros((5, 5), int)
for t, q in zip(labels.numpy(), pred.numpy()): conf[t, q] += 1
# binarised
sb = judge.score((fakes > 0.5).float(), labels)
save_grid(out / "by_class.png", class_rows(fakes, labels, sets.classes, 8), "by class")
tr = {}
for t in (0.8, 0.6, 0.4):
    torch.manual_seed(a.seed + 1)
    def samp(lab, t=t):
        z = torch.randn(lab.shape[0], cg.latent_dim) * t
        with torch.no_grad(): return to_unit(cg.generate(z, lab))
    ft = in_chunks(samp, labels); st = judge.score(ft, labels)
    tr[t] = (st["conditional_accuracy"], round(st["within_class_pixel_std"], 4), round(st["fd"], 2))
torch.save(cg.state_dict(), out / "cg.pt")
res = dict(vars(a), trunc=tr, secs=round(secs), acc=sc["conditional_accuracy"], wstd=round(sc["within_class_pixel_std"], 4),
           fd=round(sc["fd"], 2), acc_bin=sb["conditional_accuracy"], conf=conf.tolist())
print(json.dumps(res)); open("runs/images/probes/cgan_results.jsonl", "a").write(json.dumps(res) + "\n")
