#!/usr/bin/env python
"""Is the plain training command as fast as the best explicit setting on this machine?

Runs ``voiceconv-train`` on the same data for the same number of steps, once as a user
would (``precision`` and ``threads`` left at ``auto``) and once for every explicit
precision x thread setting, in one session, and prints seconds per step and each
setting's time relative to the fastest::

    python scripts/bench_settings.py --a-dir runs/demo/train/rms --b-dir runs/demo/train/slt \\
        [--model maskcyclegan_vc_small] [--steps 60] [--out /tmp/bench_settings]

The feature cache is shared (made by the first run), and the auto run goes once
before the timed runs so that its one-off measurement is cached, as it is for a user's
second run; that first run's time is printed too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from voiceconv.utils.machine import available_cores, describe_cpu, has_native_bf16


def _train(args: argparse.Namespace, name: str, extra: list[str]) -> float:
    out = args.out / name
    cmd = [sys.executable, "-m", "voiceconv.cli.train", f"data.a_dir={args.a_dir}", f"data.b_dir={args.b_dir}",
           f"data.cache_dir={args.out / 'cache'}", f"model={args.model}", "trainer=cpu_small",
           f"trainer.max_steps={args.steps}", "trainer.progress=false", "trainer.ckpt_every=100000",
           "trainer.log_every=0", "trainer.image_every=0", f"out_dir={out}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "VOICECONV_CACHE_DIR": str(args.out)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{name}: voiceconv-train failed:\n{proc.stderr[-2000:]}")
    chosen = [line for line in proc.stdout.splitlines() if line.startswith("trainer:")]
    if chosen:
        print(f"   {name}: {chosen[0]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a-dir", required=True, type=Path)
    ap.add_argument("--b-dir", required=True, type=Path)
    ap.add_argument("--model", default="maskcyclegan_vc_small")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_settings"))
    args = ap.parse_args()
    cores = available_cores()
    precisions = ["fp32", "bf16"] if has_native_bf16() else ["fp32"]
    counts = sorted({1, max(1, cores // 2), cores})
    print(f"# {describe_cpu()}; load avg {os.getloadavg()[0]:.2f}; {args.model}, {args.steps} steps per run")
    first = _train(args, "auto_first", [])
    print(f"   auto, first run (makes the cache and measures): {first:.1f} s")
    walls = {"auto (plain command)": _train(args, "auto", [])}
    for prec in precisions:
        for n in counts:
            walls[f"{prec} x{n}"] = _train(args, f"{prec}_{n}", [f"trainer.precision={prec}", f"trainer.threads={n}"])
    best = min(v for k, v in walls.items() if not k.startswith("auto"))
    print("\n| setting | wall s | s/step (incl. start-up) | / fastest explicit |\n|---|---|---|---|")
    for name, wall in walls.items():
        print(f"| {name} | {wall:.1f} | {wall / args.steps:.3f} | {wall / best:.2f} |")
    print(f"# load avg after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
