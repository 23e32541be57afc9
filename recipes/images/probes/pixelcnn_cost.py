"""Probe: training-step cost of the outlier experiment's pixel models (batch 32 of 32x32
binary images, Adam), fp32 and bf16 autocast, median of 20 steps after 5 warm-up.

usage: pixelcnn_cost.py [--threads N]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN, PixelCNN  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
x = (torch.rand(32, 1, 32, 32) > 0.8).float()
models = [("local 5x5 (background)", LocalPixelCNN(1, 5, 32)), ("PixelCNN w32 L6 dilated", PixelCNN(1, 32, 6, True)),
          ("GatedPixelCNN w32 L6 k5", GatedPixelCNN(1, 32, 6, 5)), ("GatedPixelCNN w16 L6 k5", GatedPixelCNN(1, 16, 6, 5))]
for name, m in models:
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for bf16 in (False, True):
        ts = []
        for _ in range(25):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = m.loss(x)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            ts.append(time.perf_counter() - t)
        ts = sorted(ts[5:])
        n = sum(q.numel() for q in m.parameters())
        print(f"{name:26s} {'bf16' if bf16 else 'fp32'}  {ts[len(ts) // 2] * 1e3:7.1f} ms/step  {n} parameters")
