#!/usr/bin/env python
"""Training-step benchmark of MaskCycleGAN-VC (paper size, 80 mel bins x 64 frames).

Times two ways of doing one full CycleGAN training step (generator update, then
discriminator update) on the same nets, interleaved step by step so both see the
same machine load, and prints medians:

* **ours** — the faithful step of :class:`voiceconv.models.cyclegan.CycleGAN`:
  generator step with the discriminators frozen (6 generator passes with the
  identity loss on, 4 with it off), then the discriminator step on the *detached*
  fakes and cycled features kept from the generator step (no generator pass).
* **reference** — the step *structure* of the public PyTorch MaskCycleGAN-VC
  re-created with our nets and losses: the generator step leaves the
  discriminators trainable (their weight gradients are computed and thrown away),
  and the discriminator step re-runs the four generator forwards (fake and cycled
  features for both directions, not detached) and back-propagates the
  discriminator loss through both generators: 10 generator passes per step with
  identity on, 8 with it off.

Both use Adam (lr 2e-4 for G, 1e-4 for D, betas (0.5, 0.999)), LSGAN, the paper's
loss weights and random normal "mel" crops. GFLOP per step is counted once per
batch size with :class:`torch.utils.flop_counter.FlopCounterMode` over a whole step
(forward + backward of G and D; optimiser arithmetic is not counted), run on a twin
of the model on the ``meta`` device (same graph, no arithmetic; the count does not
depend on the dtype); achieved
GFLOP/s = GFLOP per step / median seconds per step. Training frames/s counts the
frames of both domains' crops: ``2 * batch * frames / (s/step)``. On a GPU the share
of peak FLOP/s is printed, with the peak from ``--peak-tflops`` or a small table of
dense bf16 / fp32 figures (H100, H200, A100 datasheets).

    python scripts/bench_train.py --steps 3 --warmup 1                 # CPU, fp32, batch 1,2,4
    python scripts/bench_train.py --dtype bf16 --steps 3 --batch-sizes 1
    python scripts/bench_train.py --device cuda --dtype bf16 --compile   # GPU: batch 1..256 until OOM

On CPU the batch list stops after the first batch size whose median step exceeds
``--time-budget`` seconds. With ``--compile`` the warm-up steps include compilation.
Shared machines make single timings noisy: quote medians. On a CPU shared with other
busy processes use ``--threads 1`` (two OpenMP threads on two contended cores wait on
each other at every barrier) and read the CPU-seconds columns.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from voiceconv.models.cyclegan import CycleGAN
from voiceconv.models.vc import build_vc_model, count_parameters
from voiceconv.utils.machine import describe_cpu, resolve_precision

#: dense (no sparsity) peak TFLOP/s by (device-name fragment, dtype), datasheet values;
#: the first matching fragment wins, so more specific names come first.
PEAK_TFLOPS: list[tuple[str, str, float]] = [
    ("H200", "bf16", 989.4), ("H200", "fp32", 66.9),
    ("H100 PCIe", "bf16", 756.0), ("H100 PCIe", "fp32", 51.2),
    ("H100 NVL", "bf16", 835.0), ("H100 NVL", "fp32", 60.0),
    ("H100", "bf16", 989.4), ("H100", "fp32", 66.9),
    ("A100", "bf16", 312.0), ("A100", "fp32", 19.5),
]


def default_peak(device: torch.device, dtype: str) -> float | None:
    """Datasheet peak TFLOP/s of the current CUDA device for ``dtype``, if in the table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, kind, tflops in PEAK_TFLOPS:
        if fragment in name and kind == dtype:
            return tflops
    return None


@dataclass
class Trainer:
    """The model, its two optimisers and the autocast settings of one benchmark run."""

    model: CycleGAN
    device: torch.device
    dtype: str
    step_index: int
    opt_g: torch.optim.Optimizer = field(init=False)
    opt_d: torch.optim.Optimizer = field(init=False)

    def __post_init__(self) -> None:
        self.opt_g = torch.optim.Adam(self.model.generator_parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.model.discriminator_parameters(), lr=1e-4,
                                      betas=(0.5, 0.999))

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def ours(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Faithful step: frozen D during the G step; D step on detached fakes."""
        m = self.model
        m.set_discriminators_trainable(False)
        with self.autocast():
            out = m.generator_step(a, b, self.step_index)
        self.opt_g.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt_g.step()
        m.set_discriminators_trainable(True)
        with self.autocast():
            d_loss, _ = m.discriminator_loss(a, b, out)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

    def reference(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Public-implementation structure: D trainable in the G step; D step re-runs G."""
        m = self.model
        with self.autocast():
            out = m.generator_step(a, b, self.step_index)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            fake_b = m.translate(m.g_ab, a, "forward")
            cycle_a = m.translate(m.g_ba, fake_b, "cycle")
            fake_a = m.translate(m.g_ba, b, "forward")
            cycle_b = m.translate(m.g_ab, fake_a, "cycle")
            gl = m.gan_loss
            d_loss = 0.5 * (gl.discriminator_loss(m.d_a(a), m.d_a(fake_a))
                            + gl.discriminator_loss(m.d_b(b), m.d_b(fake_b)))
            if m.d2_a is not None and m.d2_b is not None:
                d_loss = d_loss + 0.5 * (gl.discriminator_loss(m.d2_a(a), m.d2_a(cycle_a))
                                         + gl.discriminator_loss(m.d2_b(b), m.d2_b(cycle_b)))
        d_loss.backward()  # also fills both generators' gradients, unused
        self.opt_d.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


StepFn = Callable[[torch.Tensor, torch.Tensor], None]


def timed(fn: StepFn, a: torch.Tensor, b: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn(a, b)``, device synchronised around it."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn(a, b)
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def count_flops(fn: StepFn, a: torch.Tensor, b: torch.Tensor) -> int:
    """FLOPs of ``fn(a, b)`` as counted by ``FlopCounterMode`` (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn(a, b)
    return int(counter.get_total_flops())


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class Timings:
    """Per-step wall and CPU seconds of one step kind at one batch size."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, sample: tuple[float, float]) -> None:
        self.wall.append(sample[0])
        self.cpu.append(sample[1])

    def median_wall(self) -> float:
        return statistics.median(self.wall) if self.wall else float("nan")

    def median_cpu(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")


def measure(trainer: Trainer, a: torch.Tensor, b: torch.Tensor, warmup: int, steps: int,
            reference: bool) -> tuple[Timings, Timings]:
    """Interleave our step and the reference step; keep the timings after ``warmup``."""
    ours, ref = Timings(), Timings()
    for i in range(warmup + steps):
        t_ours = timed(trainer.ours, a, b, trainer.device)
        t_ref = timed(trainer.reference, a, b, trainer.device) if reference else None
        if i >= warmup:
            ours.add(t_ours)
            if t_ref is not None:
                ref.add(t_ref)
    return ours, ref


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="maskcyclegan_vc", help="build_vc_model name")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="bf16 runs the forward passes under torch.autocast; auto (default): bf16 where "
                        "the device computes it natively, else fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile every net")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10 GPU, 3 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3 GPU, 1 CPU)")
    p.add_argument("--batch-sizes", default=None,
                   help="comma list (default 1,2,4 on CPU; 1,2,4,...,256 on GPU, stopping at OOM)")
    p.add_argument("--n-mels", type=int, default=80)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--no-identity", action="store_true",
                   help="time a step after identity_steps (identity loss off: 4 G passes)")
    p.add_argument("--no-reference", action="store_true", help="time only our step")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop the batch list once a step takes longer (s; default 60 CPU, none GPU)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s for the share-of-peak column (default: table for H100/H200/A100)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    args.dtype = resolve_precision(args.dtype, device)
    print(f"# {describe_cpu()}; --dtype {args.dtype}")
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps if args.steps is not None else (10 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    if steps < 1 or warmup < 0:
        print("bench_train: need --steps >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.batch_sizes:
        batches = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    else:
        batches = [2**i for i in range(9)] if gpu else [1, 2, 4]
    budget = args.time_budget if args.time_budget is not None else (None if gpu else 60.0)
    peak = args.peak_tflops if args.peak_tflops is not None else default_peak(device, args.dtype)
    torch.manual_seed(args.seed)

    model = build_vc_model(args.model, n_mels=args.n_mels).to(device).train()
    identity_steps = model.identity_steps
    step_index = identity_steps if (args.no_identity and identity_steps is not None) else 0
    trainer = Trainer(model, device, args.dtype, step_index)
    # FLOPs are counted on a twin built on the meta device: same graph, no arithmetic
    with torch.device("meta"):
        twin = build_vc_model(args.model, n_mels=args.n_mels).train()
    flop_trainer = Trainer(twin, torch.device("meta"), "fp32", step_index)
    if args.compile:
        for net in [*model.generators(), *model.discriminators()]:
            net.compile()
    counts = count_parameters(model)
    g_passes = 6 if model.identity_weight(step_index) > 0 else 4

    print(f"# bench_train: {args.model}, {args.n_mels} mels x {args.frames} frames, "
          f"dtype {args.dtype}, compile={args.compile}")
    where = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    print(f"# device {device} ({where}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}")
    print(f"# params: generator {counts['g_ab'] / 1e6:.2f}M per direction, discriminator "
          f"{counts['d_a'] / 1e6:.2f}M each, total {counts['total'] / 1e6:.1f}M")
    print(f"# G passes per step: ours {g_passes}, reference {g_passes + 4}; medians of {steps} "
          f"steps after {warmup} warm-up; peak {peak if peak else 'n/a'} TFLOP/s")
    print("# s/step = wall seconds; cpu-s = process CPU seconds per step (on a shared CPU, "
          "GFLOP/cpu-s is the throughput per busy core)")
    cols = ["batch", "ours s/step", "ref s/step", "ref/ours", "GFLOP ours", "GFLOP ref",
            "GFLOP/s ours", "GFLOP/s ref", "frames/s"]
    cols += ["%peak ours", "GiB peak"] if gpu else ["cpu-s ours", "cpu-s ref", "GFLOP/cpu-s"]
    print("  ".join(cols))

    rows: list[tuple[int, float, float]] = []
    for batch in batches:
        gen = torch.Generator().manual_seed(args.seed + batch)
        a = torch.randn(batch, args.n_mels, args.frames, generator=gen).to(device)
        b = torch.randn(batch, args.n_mels, args.frames, generator=gen).to(device)
        ma, mb = torch.empty_like(a, device="meta"), torch.empty_like(b, device="meta")
        flops_ours = count_flops(flop_trainer.ours, ma, mb)
        flops_ref = float("nan") if args.no_reference else count_flops(flop_trainer.reference, ma, mb)
        if gpu:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            ours, ref = measure(trainer, a, b, warmup, steps, not args.no_reference)
        except RuntimeError as exc:
            if gpu and is_oom(exc):
                print(f"{batch:>5}  out of memory; stopping")
                torch.cuda.empty_cache()
                break
            raise
        s_ours, s_ref = ours.median_wall(), ref.median_wall()
        gfs_ours = flops_ours / 1e9 / s_ours
        values = [f"{batch:>5}", f"{s_ours:>11.3f}", f"{s_ref:>10.3f}", f"{s_ref / s_ours:>8.2f}",
                  f"{flops_ours / 1e9:>10.1f}", f"{flops_ref / 1e9:>9.1f}", f"{gfs_ours:>12.1f}",
                  f"{flops_ref / 1e9 / s_ref:>11.1f}", f"{2 * batch * args.frames / s_ours:>8.0f}"]
        if gpu:
            share = f"{100 * gfs_ours / (peak * 1e3):.1f}" if peak else "n/a"
            gib = torch.cuda.max_memory_allocated(device) / 2**30
            values += [f"{share:>10}", f"{gib:>8.1f}"]
        else:
            c_ours = ours.median_cpu()
            values += [f"{c_ours:>10.3f}", f"{ref.median_cpu():>9.3f}",
                       f"{flops_ours / 1e9 / c_ours:>11.1f}"]
        print("  ".join(values), flush=True)
        rows.append((batch, s_ours, gfs_ours))
        if budget is not None and s_ours > budget:
            print(f"# step took {s_ours:.1f} s > budget {budget:.0f} s; stopping the batch list")
            break

    if rows and not gpu and args.dtype == "bf16" and rows[0][0] == 1:
        verdict = "met" if rows[0][1] <= 1.5 else "NOT met"
        print(f"# target <= 1.5 s/step at batch 1, bf16, CPU: {rows[0][1]:.2f} s -> {verdict}")
    if rows and gpu and peak and args.dtype == "bf16":
        big = [r for r in rows if r[0] >= 16]
        if big:
            best = max(big, key=lambda r: r[2])
            pct = 100 * best[2] / (peak * 1e3)
            print(f"# target >= 40% of peak at batch >= 16, bf16: best {pct:.1f}% (batch {best[0]})"
                  f" -> {'met' if pct >= 40 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
