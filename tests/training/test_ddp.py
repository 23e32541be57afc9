"""Data-parallel training with 2 gloo processes on CPU."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from vc_tiny import DDP_SETUP, ConcatSampler, ddp_worker, flat_params, make_trainer, rank_sampler

from voiceconv.errors import ConfigError
from voiceconv.training.checkpoint import load_checkpoint
from voiceconv.training.distributed import (
    DistContext,
    all_gather_objects,
    all_true,
    init_distributed,
    resolve_device,
    unwrap,
    wrap_ddp,
)

torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_train_in_sync_like_one_process_on_both_batches(tmp_path):
    result_file = tmp_path / "result.pt"
    mp.start_processes(ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), str(result_file)),
                       nprocs=2, join=True, start_method="spawn")
    result = torch.load(result_file, weights_only=True)

    # every rank holds the same weights, and the ranks drew different crops
    p0, p1 = result["params"]
    assert torch.equal(p0, p1)
    assert not torch.equal(result["crops"][0], result["crops"][1])

    # reference: one process, one batch holding both ranks' crops. With per-sample
    # (instance) normalisation and batch-mean losses its gradient is the average DDP
    # computes, so the weights must agree; D gradients left over from the generator
    # step (they must be discarded under DDP) would make them differ. Float64 and SGD
    # keep the comparison about the algorithm: in float32 these tiny nets (instance
    # norm over 2x2 patches) turn summation-order rounding into ~1e-3 relative gradient
    # differences, and Adam's first steps (~lr*sign(grad)) turn rounding noise on
    # zero-gradient weights (conv biases before instance norm) into lr-sized ones.
    reference = make_trainer(tmp_path / "single", max_steps=2, **DDP_SETUP,
                             sampler=ConcatSampler([rank_sampler(0), rank_sampler(1)]))
    reference.fit()
    torch.testing.assert_close(p0, flat_params(reference.model), rtol=0, atol=1e-9)

    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 2 and ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not any(k.startswith(("g_ab.module", "d_a.module")) for k in ckpt["model"]["state_dict"])
    torch.testing.assert_close(
        torch.cat([v.reshape(-1) for k, v in ckpt["model"]["state_dict"].items()
                   if k.startswith("g_ab.")]),
        torch.cat([p.detach().reshape(-1) for p in reference.model.g_ab.parameters()]),
        rtol=0, atol=1e-9,
    )


def test_without_torchrun_everything_is_single_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed(device="cpu")
    assert ctx == DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert ctx.is_main and not ctx.distributed
    net = torch.nn.Linear(2, 2)
    assert wrap_ddp(net, ctx) is net
    assert all_gather_objects(ctx, {"x": 1}) == [{"x": 1}]
    assert all_true(ctx, True) and not all_true(ctx, False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports
def test_unwrap_strips_compile_wrapper():
    net = torch.nn.Linear(2, 2)
    assert unwrap(torch.compile(net)) is net  # compiles lazily: nothing is compiled here


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda_is_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
