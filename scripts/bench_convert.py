#!/usr/bin/env python
"""Conversion speed (real-time factor) and the effect of bf16 on the output.

Input: ``--seconds`` (default 60) of speech, CMU ARCTIC prompts (../shared/data)
rendered with flite (``--voice``, default slt; 16 kHz) and concatenated, or a synthetic harmonic
signal with ``--synthetic``. Each configuration converts it with
:class:`voiceconv.conversion.VoiceConverter` (the same stages as ``convert()``:
resample -> log-mel -> generator -> Griffin-Lim or a neural vocoder, chunked as
in production) and we report, per configuration, the median over ``--repeats`` runs
of the total and of each stage, and "x real time" = audio seconds / median seconds.

Models: ``--checkpoint CKPT`` converts with a TRAINED checkpoint: its model, its
MelConfig and its own speaker statistics (direction a2b), as ``voiceconv-convert``
does. Otherwise MaskCycleGAN-VC at paper size and small (widths / 4) with UNTRAINED
seeded weights and the input's own statistics: speed does not depend on the weight
values, but the output is not speech, so the bf16 figures are then marked as on
untrained weights (they measure the perturbation of a random network, which need
not be that of a trained one).

bf16 effect (per model): MCD (voiceconv.evaluation.mcd: WORLD + SPTK, DTW) between
the fp32 and bf16 outputs (same Griffin-Lim seed), the max abs and relative
difference of the converted log-mels, and as a yardstick the MCD between two fp32
outputs that differ only in Griffin-Lim's random start (seed 0 vs 1).

The machine's current matrix-multiply rate is printed first (fp32 and bf16 GEMM,
2048^3): on a shared CPU the timings scale with it, so quote it with them.

    python scripts/bench_convert.py                       # 60 s, both models, fp32 + bf16
    python scripts/bench_convert.py --quick               # 10 s, small model, 1 repeat
    python scripts/bench_convert.py --models paper --gl-iters 32,16 --repeats 3
    python scripts/bench_convert.py --vocoder-ckpt runs/hifigan/checkpoints/last.ckpt
    python scripts/bench_convert.py --checkpoint runs/demo/train_run/checkpoints/last.ckpt --voice rms --threads 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voiceconv.audio.io import load_audio
from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.audio.processing import resample
from voiceconv.audio.stats import SpeakerStats
from voiceconv.conversion import VoiceConverter
from voiceconv.data.prompts import load_prompts
from voiceconv.models.cyclegan import CycleGAN
from voiceconv.models.vc import build_vc_model
from voiceconv.training.checkpoint import load_checkpoint
from voiceconv.utils.machine import describe_cpu, resolve_precision
from voiceconv.vocoders import GriffinLim, parse_griffinlim_spec

REPO = Path(__file__).resolve().parents[1]
ARCTIC = Path(os.environ.get("VOICECONV_ARCTIC", REPO.parent / "shared" / "data" / "arctic_a.data"))
MODELS = {"paper": "maskcyclegan_vc", "small": "maskcyclegan_vc_small"}


def flite_speech(seconds: float, sr: int = 16000, voice: str = "slt") -> np.ndarray | None:
    """ARCTIC prompts rendered with flite (``voice``) and concatenated to ``seconds``."""
    if shutil.which("flite") is None or not ARCTIC.is_file():
        return None
    parts, total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (_, text) in enumerate(load_prompts(ARCTIC)):
            out = Path(tmp) / f"{i}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True)
            wav, _ = load_audio(out, sr)
            parts.append(wav)
            total += wav.size
            if total >= seconds * sr:
                break
    return np.concatenate(parts)[: int(seconds * sr)]


def synthetic_speech(seconds: float, sr: int = 16000) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.2 + 0.8 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def gemm_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n x n matrix product in ``dtype`` right now."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def generator_gflop_per_minute(model: CycleGAN, cfg: MelConfig) -> float:
    """Multiply-add FLOPs of one a2b generator pass over a minute of frames (conv layers)."""
    flops = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops
        k = int(np.prod(mod.kernel_size))
        flops += 2 * out.numel() * (mod.in_channels // mod.groups) * k

    frames = cfg.frames(60 * cfg.sample_rate) // 4 * 4
    g = model.g_ab
    handles = [m.register_forward_hook(hook) for m in g.modules()
               if isinstance(m, nn.Conv1d | nn.Conv2d | nn.ConvTranspose1d | nn.ConvTranspose2d)]
    with torch.inference_mode():
        model.eval().convert(torch.zeros(1, cfg.n_mels, 256), "a2b")
    for h in handles:
        h.remove()
    return flops * frames / 256 / 1e9


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def convert_timed(vc: VoiceConverter, wav: np.ndarray, sr: int) -> tuple[np.ndarray, dict[str, float]]:
    """``vc.convert(wav, sr)`` stage by stage (the same calls), with the time of each."""
    times: dict[str, float] = {}
    dev = vc.device
    t0 = _now(dev)
    x = vc.prepare(wav, sr)
    t1 = _now(dev)
    mel = vc.analyse(x)
    t2 = _now(dev)
    conv = vc.convert_mel(mel, "a2b")
    t3 = _now(dev)
    out = vc.vocode(conv, x.shape[-1])
    t4 = _now(dev)
    times.update(resample=t1 - t0, mel=t2 - t1, generator=t3 - t2, vocoder=t4 - t3, total=t4 - t0)
    return out, times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--synthetic", action="store_true", help="synthetic signal instead of flite speech")
    ap.add_argument("--voice", default="slt",
                    help="flite voice of the input (default slt; use the checkpoint's speaker A, e.g. rms)")
    ap.add_argument("--checkpoint", type=Path,
                    help="a trained checkpoint (its model, MelConfig and statistics) instead of --models")
    ap.add_argument("--models", default="paper,small", help="comma list of: paper, small (untrained)")
    ap.add_argument("--precisions", default=None,
                    help="comma list (default: fp32,bf16 where the CPU/GPU has native bf16, else fp32)")
    ap.add_argument("--gl-iters", default="32",
                    help="comma list of Griffin-Lim settings N or N:M (N iterations, M NNLS iterations)")
    ap.add_argument("--vocoder-ckpt", type=Path, nargs="*", default=[],
                    help="also time these neural vocoder checkpoints (HiFi-GAN, Vocos)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-mcd", action="store_true", help="skip the bf16 MCD comparison")
    ap.add_argument("--mcd-seconds", type=float, default=20.0,
                    help="MCD over the first this many seconds of the outputs (WORLD is slow)")
    ap.add_argument("--quick", action="store_true", help="10 s, small model, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.models, args.repeats = 10.0, "small", 1
    if args.precisions is None:
        args.precisions = "fp32,bf16" if resolve_precision("auto", args.device) == "bf16" else "fp32"
    print(f"# {describe_cpu()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    in_sr = 16000
    wav = None if args.synthetic else flite_speech(args.seconds, in_sr, args.voice)
    source = f"flite speech (ARCTIC prompts, voice {args.voice})"
    if wav is None:
        wav, source = synthetic_speech(args.seconds, in_sr), "synthetic harmonic signal"
    seconds = wav.size / in_sr
    # label -> (model, MelConfig, statistics {"A", "B"})
    subjects: dict[str, tuple[CycleGAN, MelConfig, dict[str, SpeakerStats]]] = {}
    if args.checkpoint is not None:
        trained = VoiceConverter.from_checkpoint(args.checkpoint)
        step = load_checkpoint(args.checkpoint, map_location="cpu").get("step")
        subjects[args.checkpoint.name] = (trained.model, trained.mel_config, trained.stats)
        weights = (f"checkpoint {args.checkpoint}, trained for {step} steps ({trained.describe_direction('a2b')}, "
                   "its own model, MelConfig and statistics)")
    else:
        cfg = MelConfig()
        own = SpeakerStats.from_mels([log_mel(resample(wav, in_sr, cfg.sample_rate), cfg)])
        for size in [m.strip() for m in args.models.split(",") if m.strip()]:
            torch.manual_seed(0)
            subjects[size] = (build_vc_model(MODELS[size]), cfg, {"A": own, "B": own})
        weights = "UNTRAINED seeded weights (speed only; the output is not speech; bf16 figures on untrained weights)"
    print(f"# conversion benchmark: {seconds:.1f} s of {source} at {in_sr} Hz; device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} repeat(s), medians")
    gemm = {"fp32": gemm_rate(torch.float32), "bf16": gemm_rate(torch.bfloat16)}
    print(f"# machine now: fp32 GEMM {gemm['fp32']:.0f} GFLOP/s, bf16 GEMM {gemm['bf16']:.0f} GFLOP/s "
          "(2048^3 matmul; on shared CPUs timings scale with these)")
    print(f"# {weights}")

    vocoders = [f"griffinlim:{n.strip()}" for n in args.gl_iters.split(",") if n.strip()]
    vocoders += [str(p) for p in args.vocoder_ckpt]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rows = []
    outputs: dict[tuple[str, str, str], np.ndarray] = {}
    mels: dict[tuple[str, str], torch.Tensor] = {}
    converters: dict[str, VoiceConverter] = {}
    for label, (model, cfg, stats) in subjects.items():
        gflop = generator_gflop_per_minute(model, cfg)
        bound = ", ".join(f"{p} <= {60 * gemm[p] / gflop:.1f}x" for p in ("fp32", "bf16"))
        print(f"# {label} ({type(model).__name__}): generator {sum(p.numel() for p in model.g_ab.parameters()) / 1e6:.1f} M "
              f"parameters, {gflop / 1000:.2f} TFLOP per minute of audio at {cfg.sample_rate} Hz; generator "
              f"alone at the GEMM rates above: {bound} real time")
        for voc in vocoders:
            for prec in precisions:
                vc = VoiceConverter(model, cfg, stats, voc, device=args.device, precision=prec)
                converters[label] = vc
                convert_timed(vc, wav[: 2 * in_sr], in_sr)  # warm-up
                runs = [convert_timed(vc, wav, in_sr) for _ in range(args.repeats)]
                med = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
                outputs[(label, voc, prec)] = runs[0][0]
                rows.append((label, voc, prec, med))
                print(f"{label:6s} {voc:16s} {prec:5s} total {med['total']:7.2f} s  "
                      f"{seconds / med['total']:6.2f}x real time   (resample {med['resample']:.2f}, "
                      f"mel {med['mel']:.2f}, generator {med['generator']:.2f}, vocoder {med['vocoder']:.2f} s)",
                      flush=True)
                if voc == vocoders[0]:
                    with torch.inference_mode():
                        mels[(label, prec)] = vc.convert_mel(vc.analyse(vc.prepare(wav, in_sr)), "a2b").cpu()

    print("\n| model | vocoder | precision | median s | x real time | resample | mel | generator | vocoder |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for size, voc, prec, med in rows:
        print(f"| {size} | {voc} | {prec} | {med['total']:.2f} | {seconds / med['total']:.2f} | "
              f"{med['resample']:.2f} | {med['mel']:.2f} | {med['generator']:.2f} | {med['vocoder']:.2f} |")

    if args.no_mcd or not {"fp32", "bf16"} <= set(precisions):
        return 0
    from voiceconv.evaluation.mcd import mcd

    kind = f"checkpoint {args.checkpoint.name}" if args.checkpoint is not None else "UNTRAINED weights"
    print(f"\nbf16 effect on {kind} ({vocoders[0]}; MCD over the first {args.mcd_seconds:g} s; log-mel "
          "differences over the whole input, relative to the spread of the fp32 log-mels)")
    print("| model | MCD fp32 vs bf16 (dB) | MCD GL seed 0 vs 1 (dB) | max abs log-mel diff | rel. log-mel diff |")
    print("|---|---:|---:|---:|---:|")
    for label in dict.fromkeys(r[0] for r in rows):
        vc = converters[label]
        sr = vc.sample_rate
        n = int(args.mcd_seconds * sr)
        a, b = outputs[(label, vocoders[0], "fp32")][:n], outputs[(label, vocoders[0], "bf16")][:n]
        m32, m16 = mels[(label, "fp32")], mels[(label, "bf16")]
        spread = torch.linalg.vector_norm(m32 - m32.mean(dim=-1, keepdim=True))
        rel = float(torch.linalg.vector_norm(m16 - m32) / spread)
        n_iter, nnls_iter = parse_griffinlim_spec(vocoders[0])
        options = {k: v for k, v in (("n_iter", n_iter), ("nnls_iter", nnls_iter)) if v is not None}
        vc.vocoder = GriffinLim(vc.mel_config, seed=1, **options)
        with torch.inference_mode():
            reseeded = vc.vocode(m32, outputs[(label, vocoders[0], "fp32")].size)[:n]
        print(f"| {label} | {mcd(a, b, sr):.3f} | {mcd(a, reseeded, sr):.3f} | "
              f"{float((m16 - m32).abs().max()):.4f} | {rel:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
