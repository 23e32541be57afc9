"""CycleGAN-VC2 and MaskCycleGAN-VC: shapes, parameter counts against the papers'
layer lists (closed form), FIF masks, real GLU gates, raw-logit discriminators, a
full training step, and checkpoint round trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.blocks import GatedConv, GatedUpsample
from voiceconv.models.vc import (
    SIZES,
    VC_MODELS,
    CycleGANVC2,
    Generator212,
    MaskCycleGANVC,
    PatchDiscriminator2D,
    build_vc_model,
    count_parameters,
    make_temporal_mask,
)

SMALL = ["maskcyclegan_vc_small", "cyclegan_vc2_small"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- closed forms
def conv(cin: int, cout: int, *kernel: int) -> int:
    """Weights + bias of a convolution."""
    return cin * cout * math.prod(kernel) + cout


def inorm(ch: int) -> int:
    """Affine instance norm: scale + shift."""
    return 2 * ch


def expected_generator_params(n_mels: int, in_ch: int, base: int, res: int, hidden: int,
                              n_res: int, gate: str = "split") -> int:
    """CycleGAN-VC2 Fig. 4 layer list; the upsampling GLUs as ``gate`` says (see Generator212)."""
    wide, flat = 2 * base, 2 * base * (n_mels // 4)
    total = 2 * conv(in_ch, base, 5, 15)                       # conv + gate, no norm
    total += 2 * (conv(base, wide, 5, 5) + inorm(wide))        # downsample 1
    total += 2 * (conv(wide, wide, 5, 5) + inorm(wide))        # downsample 2
    total += conv(flat, res, 1) + inorm(res)                   # 2D -> 1D
    block = 2 * (conv(res, hidden, 3) + inorm(hidden)) + conv(hidden, res, 3) + inorm(res)
    total += n_res * block
    total += conv(res, flat, 1) + inorm(flat)                  # 1D -> 2D
    if gate == "conv":  # separate value and gate convolutions of the listed width
        total += 2 * (conv(wide, 4 * wide, 5, 5) + inorm(wide))    # upsample 1 (pixel shuffle)
        total += 2 * (conv(wide, 4 * base, 5, 5) + inorm(base))    # upsample 2
        return total + conv(base, 1, 5, 15)                        # output
    # split: ONE convolution of the listed width (c1024 = 4 * wide, c512 = 4 * base) holds
    # value and gate; after the shuffle the GLU halves the channels
    total += conv(wide, 4 * wide, 5, 5) + inorm(wide)              # upsample 1 -> wide / 2
    total += conv(wide // 2, 4 * base, 5, 5) + inorm(base)         # upsample 2 -> base / 2
    return total + conv(base // 2, 1, 5, 15)                       # output


def batch_norm_dropped_biases(n_mels: int, base: int, res: int, hidden: int, n_res: int,
                              gate: str) -> int:
    """Bias values of the convolutions followed by a norm (dropped before batch norm)."""
    wide, flat = 2 * base, 2 * base * (n_mels // 4)
    up = 2 * (4 * wide + 4 * base) if gate == "conv" else 4 * wide + 4 * base
    return 2 * wide + 2 * wide + res + n_res * (2 * hidden + res) + flat + up


def expected_discriminator_params(c: int) -> int:
    total = 2 * conv(1, c, 3, 3)
    for cin, cout, k in [(c, 2 * c, (3, 3)), (2 * c, 4 * c, (3, 3)), (4 * c, 8 * c, (3, 3)),
                         (8 * c, 8 * c, (1, 5))]:
        total += 2 * (conv(cin, cout, *k) + inorm(cout))
    return total + conv(8 * c, 1, 1, 3)


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", SMALL)
def test_shapes_small(name: str) -> None:
    model = build_vc_model(name).eval()
    x = torch.randn(2, 80, 64)
    with torch.no_grad():
        assert model.g_ab(x).shape == (2, 80, 64)
        assert model.g_ba(x).shape == (2, 80, 64)
        for d in model.discriminators():
            assert d(x).shape == (2, 1, 10, 8)
        # whole utterances: any length converts to the same length
        for frames in (37, 64, 130):
            y = torch.randn(1, 80, frames)
            assert model.convert(y, "a2b").shape == (1, 80, frames)
            assert model.convert(y, "b2a").shape == (1, 80, frames)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maskcyclegan_vc", "cyclegan_vc2"])
def test_shapes_paper_size(name: str) -> None:
    model = build_vc_model(name, use_d2=False).eval()
    x = torch.randn(1, 80, 64)
    with torch.no_grad():
        assert model.convert(x, "a2b").shape == (1, 80, 64)
        assert model.d_a(x).shape == (1, 1, 10, 8)


def test_generator_rejects_wrong_mel_count() -> None:
    g = Generator212(n_mels=80, base_channels=8, residual_channels=8, residual_hidden=8,
                     n_residual=1)
    with pytest.raises(ConfigError):
        g(torch.randn(1, 40, 16))
    with pytest.raises(ConfigError):
        g(torch.randn(1, 80, 16), torch.ones(1, 80, 16))  # one-channel generator, mask given
    with pytest.raises(ConfigError):
        Generator212(n_mels=30)


# ---------------------------------------------------------- parameter counts
@pytest.mark.parametrize("gate", ["split", "conv"])
@pytest.mark.parametrize("name", list(VC_MODELS))
def test_parameter_counts_match_paper_layer_list(name: str, gate: str) -> None:
    model = build_vc_model(name, upsample_gate=gate)
    size = SIZES["small" if name.endswith("_small") else "paper"]
    in_ch = 2 if isinstance(model, MaskCycleGANVC) else 1
    counts = count_parameters(model)
    g = expected_generator_params(80, in_ch, size.base_channels, size.residual_channels,
                                  size.residual_hidden, size.n_residual, gate)
    if name.endswith("_stream_small"):  # batch norm: the convolutions before a norm drop their bias
        g -= batch_norm_dropped_biases(80, size.base_channels, size.residual_channels,
                                       size.residual_hidden, size.n_residual, gate)
    d = expected_discriminator_params(size.d_base_channels)
    assert counts["g_ab"] == counts["g_ba"] == g
    for key in ("d_a", "d_b", "d2_a", "d2_b"):
        assert counts[key] == d
    assert counts["generators"] == 2 * g
    assert counts["discriminators"] == 4 * d
    assert counts["total"] == 2 * g + 4 * d


def test_small_is_smaller_and_d2_optional() -> None:
    for kind in ("maskcyclegan_vc", "cyclegan_vc2"):
        paper = count_parameters(build_vc_model(kind, use_d2=False))
        small = count_parameters(build_vc_model(kind + "_small", use_d2=False))
        assert "d2_a" not in paper and "d2_a" not in small
        assert small["g_ab"] < paper["g_ab"] / 8
        assert small["d_a"] < paper["d_a"] / 8
        assert small["total"] < paper["total"]


def test_factory_overrides_and_errors() -> None:
    model = build_vc_model("cyclegan_vc2_small", n_mels=40, n_residual=2, use_d2=False)
    assert isinstance(model, CycleGANVC2) and not isinstance(model, MaskCycleGANVC)
    assert model.g_ab.hparams["n_mels"] == 40 and model.g_ab.hparams["n_residual"] == 2
    assert model.d2_a is None
    assert model.g_ab(torch.randn(1, 40, 16)).shape == (1, 40, 16)
    with pytest.raises(ConfigError):
        build_vc_model("stargan_vc")
    with pytest.raises(ConfigError):
        build_vc_model("cyclegan_vc2_small", not_an_argument=1)
    with pytest.raises(ConfigError):
        build_vc_model("cyclegan_vc2", size="huge")


# -------------------------------------------------------------------- masks
def _masked_spans(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of the zero run of each example; asserts the mask's structure."""
    spans = []
    for m in mask:
        assert torch.all((m == 0) | (m == 1))
        assert torch.all(m == m[0:1])  # the same frames in every mel bin
        zeros = torch.nonzero(m[0] == 0).flatten().tolist()
        if zeros:
            assert zeros == list(range(zeros[0], zeros[-1] + 1)), "masked frames not contiguous"
            spans.append((zeros[0], len(zeros)))
        else:
            spans.append((0, 0))
    return spans


def test_temporal_mask_is_one_contiguous_span_uniform_in_length() -> None:
    gen = torch.Generator().manual_seed(0)
    frames, max_len, n = 64, 25, 4000
    mask = make_temporal_mask(n, 3, frames, max_len, generator=gen)
    assert mask.shape == (n, 3, frames) and mask.dtype == torch.float32
    spans = _masked_spans(mask)
    lengths = torch.tensor([length for _, length in spans], dtype=torch.float64)
    assert lengths.max() == max_len and lengths.min() == 0
    assert set(lengths.long().tolist()) == set(range(max_len + 1))
    # uniform on 0..25: mean 12.5, sd 7.5 -> standard error 0.12 at n=4000
    assert abs(lengths.mean().item() - max_len / 2) < 0.6
    # the span can touch both ends of the crop
    starts = [s for s, length in spans if length > 0]
    ends = [s + length for s, length in spans if length > 0]
    assert min(starts) == 0 and max(ends) == frames


def test_temporal_mask_reproducible_and_bounded_by_crop() -> None:
    a = make_temporal_mask(8, 4, 10, 25, generator=torch.Generator().manual_seed(3))
    b = make_temporal_mask(8, 4, 10, 25, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert all(length <= 10 for _, length in _masked_spans(a))
    assert torch.all(make_temporal_mask(5, 2, 16, 0) == 1)
    with pytest.raises(ConfigError):
        make_temporal_mask(1, 80, 64, -1)


def test_mask_fraction_scales_with_crop_length() -> None:
    model = build_vc_model("maskcyclegan_vc_small", max_mask_fraction=25 / 64, use_d2=False)
    assert model.max_mask_len(64) == 25
    assert model.max_mask_len(128) == 50
    assert build_vc_model("maskcyclegan_vc_small", use_d2=False).max_mask_len(128) == 25
    with pytest.raises(ConfigError):
        build_vc_model("maskcyclegan_vc_small", max_mask_fraction=1.5)


class _Recorder:
    """Records, for each generator call, the input x and the 2-channel image the
    first convolution actually receives."""

    def __init__(self, model: MaskCycleGANVC) -> None:
        self.calls: list[dict] = []
        for name in ("g_ab", "g_ba"):
            g = getattr(model, name)
            g.register_forward_pre_hook(self._outer(name))
            g.conv_in.register_forward_pre_hook(self._inner)

    def _outer(self, name: str):
        def hook(_module, args):
            self.calls.append({"g": name, "x": args[0].detach()})
        return hook

    def _inner(self, _module, args):
        self.calls[-1]["img"] = args[0].detach()


def test_fif_masks_forward_only_and_feeds_masked_input() -> None:
    torch.manual_seed(0)
    model = build_vc_model("maskcyclegan_vc_small", base_channels=8, residual_channels=16,
                           residual_hidden=16, n_residual=1, d_base_channels=8)
    model.mask_generator = torch.Generator().manual_seed(1)
    rec = _Recorder(model)
    a, b = torch.randn(3, 80, 64), torch.randn(3, 80, 64)
    seen_zero = False
    for _ in range(3):
        rec.calls.clear()
        model.generator_step(a, b, step=0)  # identity on: 6 generator passes
        assert len(rec.calls) == 6
        kinds = []
        for call in rec.calls:
            x, img = call["x"], call["img"]
            assert img.shape == (3, 2, 80, 64)
            mask = img[:, 1]
            # channel 0 is x * mask, channel 1 is the mask
            assert torch.equal(img[:, 0], x * mask)
            if (call["g"], x.data_ptr()) in {("g_ab", a.data_ptr()), ("g_ba", b.data_ptr())}:
                kinds.append("forward")
                spans = _masked_spans(mask)
                assert all(length <= 25 for _, length in spans)
                seen_zero |= any(length > 0 for _, length in spans)
            else:  # identity (other domain's real input) or cycle (a fake)
                kinds.append("other")
                assert torch.all(mask == 1)
        assert kinds.count("forward") == 2
    assert seen_zero, "no forward pass was ever masked"

    rec.calls.clear()
    model.generator_step(a, b, step=10**6)  # identity off: 4 passes
    assert len(rec.calls) == 4

    model.eval()
    for direction in ("a2b", "b2a"):
        rec.calls.clear()
        model.convert(a, direction)
        model(a, direction)
        assert len(rec.calls) == 2
        assert all(torch.all(c["img"][:, 1] == 1) for c in rec.calls)


# ------------------------------------------------------------- GLUs / logits
def _branch(conv_mod: nn.Module, norm_mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """norm(conv(x)) from torch primitives."""
    y = F.conv2d(x, conv_mod.weight, conv_mod.bias, conv_mod.stride, conv_mod.padding)
    if isinstance(norm_mod, nn.Identity):
        return y
    return F.instance_norm(y, weight=norm_mod.weight, bias=norm_mod.bias, eps=norm_mod.eps)


@pytest.mark.parametrize("name", SMALL)
def test_every_glu_has_a_learned_gate(name: str) -> None:
    model = build_vc_model(name, use_d2=False)
    g, d = model.g_ab, model.d_a
    assert not any(isinstance(m, nn.SiLU | nn.GLU) for m in model.modules())
    g_gated = [m for m in g.modules() if isinstance(m, GatedConv)]
    d_gated = [m for m in d.modules() if isinstance(m, GatedConv)]
    n_res = SIZES["small"].n_residual
    assert len(g_gated) == 3 + n_res  # input conv, 2 downsamplings, one per residual block
    assert sum(isinstance(m, GatedUpsample) for m in g.modules()) == 2
    assert len(d_gated) == 5
    # conv counts of the paper's layer list: gated layers have two convolutions each, the
    # upsamplings one each (upsample_gate="split": value and gate are halves of one conv)
    n2d = sum(isinstance(m, nn.Conv2d) for m in g.modules())
    n1d = sum(isinstance(m, nn.Conv1d) for m in g.modules())
    assert (n2d, n1d) == (2 + 4 + 2 + 1, 1 + 3 * n_res + 1)
    assert sum(isinstance(m, nn.Conv2d) for m in d.modules()) == 2 * 5 + 1

    # each 2D gated layer computes norm(conv_a x) * sigmoid(norm(conv_b x)), with conv_b != conv_a
    captured: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: captured.append((mod, inp[0], out)))
             for m in g_gated + d_gated if isinstance(m.conv_a, nn.Conv2d)]
    x = torch.randn(1, 80, 32)
    with torch.no_grad():
        if isinstance(model, MaskCycleGANVC):
            g(x, torch.ones_like(x))
        else:
            g(x)
        d(x)
    for h in hooks:
        h.remove()
    assert len(captured) == 3 + 5
    for mod, inp, out in captured:
        assert not torch.equal(mod.conv_a.weight, mod.conv_b.weight)
        value = _branch(mod.conv_a, mod.norm_a, inp)
        gate = _branch(mod.conv_b, mod.norm_b, inp)
        torch.testing.assert_close(out, value * torch.sigmoid(gate), rtol=1e-4, atol=1e-5)
        # a real gate, not the self-gated value * sigmoid(value)
        assert not torch.allclose(out, value * torch.sigmoid(value), atol=1e-3)


@pytest.mark.parametrize("gate", ["split", "conv"])
def test_upsample_glu_from_torch_primitives(gate: str) -> None:
    """Each upsampling = conv -> pixel shuffle -> instance norm -> GLU with a learned gate."""
    torch.manual_seed(0)
    g = build_vc_model("maskcyclegan_vc_small", use_d2=False, upsample_gate=gate).g_ab
    ups = [m for m in g.modules() if isinstance(m, GatedUpsample)]
    captured: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: captured.append((mod, inp[0], out)))
             for m in ups]
    x = torch.randn(1, 80, 32)
    with torch.no_grad():
        g(x, torch.ones_like(x))
    for h in hooks:
        h.remove()
    assert len(captured) == 2
    for mod, inp, out in captured:
        def branch(seq: nn.Sequential, x: torch.Tensor = inp) -> torch.Tensor:
            conv, _, norm = seq
            y = F.pixel_shuffle(F.conv2d(x, conv.weight, conv.bias, padding=conv.padding), 2)
            return F.instance_norm(y, weight=norm.weight, bias=norm.bias, eps=norm.eps)

        if gate == "split":
            both = branch(mod.branch)
            want = F.glu(both, dim=1)
            value = both[:, : both.shape[1] // 2]
        else:
            value, gate_in = branch(mod.branch_a), branch(mod.branch_b)
            want = value * torch.sigmoid(gate_in)
        assert out.shape[2:] == tuple(2 * s for s in inp.shape[2:])
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out, value * torch.sigmoid(value), atol=1e-3)
    # the paper-size layer widths: c1024 and c512 convolutions in both readings
    paper = build_vc_model("maskcyclegan_vc", use_d2=False, upsample_gate=gate).g_ab
    widths = [c.out_channels for c in paper.up.modules() if isinstance(c, nn.Conv2d)]
    assert widths == ([1024, 512] if gate == "split" else [1024, 1024, 512, 512])


@pytest.mark.parametrize("base", [SIZES["small"].d_base_channels, 8])
def test_discriminator_outputs_raw_logits(base: int) -> None:
    torch.manual_seed(0)
    d = PatchDiscriminator2D(base)
    with torch.no_grad():
        out = d(torch.randn(4, 80, 64))
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    assert (out < 0).any() or (out > 1).any()
    assert (out < 0).any(), "logits of random data should take both signs"


# ------------------------------------------------------- training step, I/O
@pytest.mark.parametrize("name", SMALL)
def test_one_full_training_step(name: str) -> None:
    torch.manual_seed(0)
    model = build_vc_model(name)
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=1e-4, betas=(0.5, 0.999))
    a, b = torch.randn(2, 80, 64), torch.randn(2, 80, 64)
    g_before = [p.detach().clone() for p in model.generator_parameters()]
    d_before = [p.detach().clone() for p in model.discriminator_parameters()]

    with model.discriminators_frozen():
        out = model.generator_step(a, b, step=0)
        opt_g.zero_grad(set_to_none=True)
        out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is None for p in model.discriminator_parameters())
    opt_g.step()

    opt_g.zero_grad(set_to_none=True)
    d_loss, logs = model.discriminator_loss(a, b, out)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    assert torch.isfinite(d_loss) and set(logs) >= {"d_a", "d_b", "d2_a", "d2_b"}
    # the D step reuses detached fakes: no gradient reaches the generators
    assert all(p.grad is None for p in model.generator_parameters())
    opt_d.step()

    assert all(not torch.equal(p0, p) for p0, p in zip(g_before, model.generator_parameters(), strict=True)
               if p.numel() > 1)
    assert any(not torch.equal(p0, p) for p0, p in zip(d_before, model.discriminator_parameters(), strict=True))


@pytest.mark.parametrize(("name", "extra"), [
    ("maskcyclegan_vc_small", {}),
    ("maskcyclegan_vc_small", {"max_mask_fraction": 0.25, "use_d2": False}),
    ("cyclegan_vc2_small", {"identity_steps": None, "lambda_cycle": 7.0}),
])
def test_save_load_round_trip(tmp_path, name: str, extra: dict) -> None:
    torch.manual_seed(0)
    model = build_vc_model(name, **extra)
    # make instance-norm affine parameters non-default so they are checked too
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.hparams == model.hparams
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    model.eval()
    loaded.eval()
    x = torch.randn(1, 80, 48)
    assert torch.equal(model.convert(x, "a2b"), loaded.convert(x, "a2b"))
    assert torch.equal(model.d_b(x), loaded.d_b(x))
    if isinstance(model, MaskCycleGANVC):
        assert loaded.max_mask_len(64) == model.max_mask_len(64)


@pytest.mark.gpu
def test_training_step_on_gpu_bf16() -> None:
    model = build_vc_model("maskcyclegan_vc_small").cuda()
    a, b = torch.randn(2, 80, 64, device="cuda"), torch.randn(2, 80, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model.generator_step(a, b, step=0)
        d_loss, _ = model.discriminator_loss(a, b, out)
    out.loss.backward()
    d_loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(d_loss)


def test_checkpoints_from_before_upsample_gate_load_as_conv(tmp_path):
    """A checkpoint written before ``upsample_gate`` existed (no such hparam) was built
    with a separate gate convolution; it loads as ``"conv"`` with identical outputs."""
    torch.manual_seed(0)
    old = build_vc_model("maskcyclegan_vc_small", use_d2=False, upsample_gate="conv").eval()
    path = tmp_path / "old.pt"
    save_model(old, path)
    payload = torch.load(path, weights_only=True)
    del payload["hparams"]["upsample_gate"]
    torch.save(payload, path)
    loaded = load_model(path).eval()
    assert loaded.hparams["upsample_gate"] == "conv"
    x = torch.randn(1, 80, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.convert(x, "a2b"), old.convert(x, "a2b"))
