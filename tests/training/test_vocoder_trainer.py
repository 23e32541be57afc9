"""The HiFi-GAN training loop: one step against a hand-written reference update, the mel
loss falling, exact resume, divergence handling, checkpoints read by load_vocoder, and the
Hydra command line (run, then resume with more steps)."""

from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from voiceconv.audio.mel import LogMel, MelConfig
from voiceconv.errors import CheckpointError, ConfigError, MelConfigMismatch, TrainingDiverged
from voiceconv.training.seeding import seed_everything
from voiceconv.training.vocoder_run import model_discriminators
from voiceconv.training.vocoder_trainer import (
    SegmentSampler,
    VocoderSettings,
    VocoderTrainer,
    load_vocoder_training_checkpoint,
)
from voiceconv.vocoders.base import load_vocoder
from voiceconv.vocoders.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from voiceconv.vocoders.hifigan import HiFiGANGenerator

torch.set_num_threads(1)

MEL = MelConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=64, n_mels=16, fmax=4000.0)
G_KW = dict(upsample_rates=(4, 4, 4), upsample_kernel_sizes=(8, 8, 8), upsample_initial_channel=16,
            resblock="1", resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3), (1, 3)))
MPD_KW = dict(periods=(2, 3), channels=(2, 4, 8, 8, 8))
MSD_KW = dict(n_scales=2, channels=(4, 4, 8, 8, 8, 8, 8), groups=(1, 2, 2, 2, 2, 2, 1))
SEGMENT = 512


def _waves(n: int = 3, seconds: float = 0.4, seed: int = 0) -> list[np.ndarray]:
    """Harmonic tones with a little noise (speech-like spectra, reproducible)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * MEL.sample_rate)) / MEL.sample_rate
    out = []
    for i in range(n):
        f0 = 110.0 + 40.0 * i
        x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
        out.append((0.3 * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def _trainer(run_dir, *, max_steps=2, seed=0, waves=None, lr=2e-4, optimizer=None,
             **settings_kw) -> VocoderTrainer:
    seed_everything(seed)
    settings = VocoderSettings(**{
        "max_steps": max_steps, "segment_size": SEGMENT, "batch_size": 2, "ckpt_every": 1,
        "keep_last": 2, "log_every": 0, "audio_every": 0, "progress": False, "seed": seed,
        **settings_kw,
    })
    sampler = SegmentSampler(waves if waves is not None else _waves(), MEL, settings.segment_size,
                             settings.batch_size, seed=seed)
    def adamw(params):
        return torch.optim.AdamW(params, lr=lr, betas=(0.8, 0.99))

    make_opt = optimizer or adamw
    return VocoderTrainer(
        HiFiGANGenerator(MEL.to_dict(), **G_KW), {"mpd": MultiPeriodDiscriminator(**MPD_KW),
         "msd": MultiScaleDiscriminator(**MSD_KW)}, sampler, settings, run_dir,
        make_opt_g=make_opt, make_opt_d=make_opt, config={"note": "tiny test run"},
    )


def _flat(*modules) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for m in modules for p in m.parameters()])


# --------------------------------------------------------------------------- sampler


def test_segments_are_aligned_with_their_frames():
    """Each mel segment equals the whole-utterance log-mel frames at the segment's offset,
    and the audio is the matching ``hop``-aligned slice of the (padded) utterance."""
    waves = _waves(2, seconds=0.3)
    sampler = SegmentSampler(waves, MEL, SEGMENT, batch_size=4, seed=3)
    front = LogMel(MEL)
    wav, mel = sampler.next_batch()
    assert wav.shape == (4, SEGMENT) and mel.shape == (4, MEL.n_mels, SEGMENT // MEL.hop_length)
    for w, m in zip(wav, mel, strict=True):
        hits = []
        for src in waves:
            padded = np.pad(src, (0, 64 * MEL.frames(src.size)))
            starts = [s for s in range(0, src.size, MEL.hop_length) if np.array_equal(padded[s : s + SEGMENT], w.numpy())]
            hits += [(src, s) for s in starts]
        assert hits, "segment audio is not a hop-aligned slice of a training waveform"
        src, start = hits[0]
        full = front(torch.from_numpy(src))
        t0 = start // MEL.hop_length
        torch.testing.assert_close(m, full[:, t0 : t0 + m.shape[-1]])


def test_griffinlim_source_generator_trains_with_stft_and_magnitude_losses(tmp_path):
    """Before the discriminators start, a Griffin-Lim-source generator's step is SGD on
    45 mel L1 + lambda_stft x STFT loss + lambda_magnitude x the magnitude net's loss,
    with the source made from the segment's predicted magnitude (no gradient)."""
    from voiceconv.vocoders.discriminators import MultiResolutionSTFTLoss
    from voiceconv.vocoders.magnitude import linear_magnitude, magnitude_loss

    seed_everything(0)
    gen = HiFiGANGenerator(MEL.to_dict(), **G_KW, source="griffinlim", source_iters=4)
    settings = VocoderSettings(max_steps=1, segment_size=SEGMENT, batch_size=2, disc_start_step=5,
                               lambda_stft=3.0, lambda_magnitude=2.0, progress=False, log_every=0,
                               audio_every=0)
    sampler = SegmentSampler(_waves(), MEL, SEGMENT, 2)
    trainer = VocoderTrainer(gen, {"mpd": MultiPeriodDiscriminator(**MPD_KW), "msd": MultiScaleDiscriminator(**MSD_KW)},
                             sampler, settings, tmp_path / "run", make_opt_g=_sgd, make_opt_d=_sgd)
    ref = copy.deepcopy(trainer.generator)
    wav, mel = copy.deepcopy(trainer.sampler).next_batch()
    logs = trainer.train_step()

    log_mag = ref.magnitude_net(mel)
    source = ref.make_source(mel, log_mag.detach())
    fake = ref(mel, source)
    loss_front = LogMel(MelConfig(**{**MEL.to_dict(), "fmax": None}))
    stft = MultiResolutionSTFTLoss()(wav, fake)
    mag = magnitude_loss(log_mag, linear_magnitude(wav, LogMel(MEL)), edge_frames=MEL.n_fft // (2 * MEL.hop_length))
    loss = 45.0 * (loss_front(wav) - loss_front(fake)).abs().mean() + 3.0 * stft + 2.0 * mag
    assert float(logs["stft"]) == pytest.approx(float(stft.detach()), rel=1e-5)
    assert float(logs["magnitude"]) == pytest.approx(float(mag.detach()), rel=1e-5)
    assert float(logs["g_total"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    opt = _sgd(ref.parameters())
    loss.backward()
    opt.step()
    torch.testing.assert_close(_flat(trainer.generator), _flat(ref), rtol=1e-4, atol=1e-6)
    # the magnitude net learned (its last layer starts at zero)
    assert trainer.generator.magnitude_net.conv_out.weight.abs().sum() > 0


def test_short_waveforms_are_padded_to_one_segment():
    sampler = SegmentSampler([np.full(100, 0.1, dtype=np.float32)], MEL, SEGMENT, batch_size=2)
    wav, mel = sampler.next_batch()
    assert wav.shape == (2, SEGMENT)
    assert torch.equal(wav[:, 100:], torch.zeros(2, SEGMENT - 100))


def test_segment_size_must_be_a_multiple_of_hop():
    with pytest.raises(ConfigError, match="multiple of hop_length"):
        SegmentSampler(_waves(1), MEL, SEGMENT + 1, batch_size=1)


# --------------------------------------------------------------------------- one step


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1)


def _reference_update(gen, mpd, msd, wav, mel):
    """HiFi-GAN's update written out with explicit formulas (no trainer code):
    D: sum_k mean((D_k(y) - 1)^2) + mean(D_k(G(s))^2), then an optimizer step;
    G: sum_k mean((D_k(G(s)) - 1)^2) + 2 sum_k sum_i mean|D_k^i(y) - D_k^i(G(s))|
       + 45 mean|mel(y) - mel(G(s))| (loss mel up to Nyquist), then an optimizer step.
    Real and generated audio go through each discriminator as one batch, as in the
    trainer: the spectral-norm power iteration of the MSD advances once per call, so
    the two must make the same number of calls to agree."""
    opt_g = _sgd(gen.parameters())
    d_params = [*mpd.parameters(), *msd.parameters()]
    opt_d = _sgd(d_params)
    n = wav.shape[0]
    fake = gen(mel)
    d_loss = torch.zeros(())
    for disc in (mpd, msd):
        logits, _ = disc(torch.cat([wav, fake.detach()]))
        for x in logits:
            d_loss = d_loss + ((x[:n] - 1) ** 2).mean() + (x[n:] ** 2).mean()
    for p, g in zip(d_params, torch.autograd.grad(d_loss, d_params), strict=True):
        p.grad = g
    opt_d.step()
    loss_front = LogMel(MelConfig(**{**MEL.to_dict(), "fmax": None}))
    g_loss = 45.0 * (loss_front(wav) - loss_front(fake)).abs().mean()
    for disc in (mpd, msd):
        logits, maps = disc(torch.cat([wav, fake]))
        for x in logits:
            g_loss = g_loss + ((x[n:] - 1) ** 2).mean()
        for sub in maps:
            for f in sub:
                g_loss = g_loss + 2.0 * (f[:n].detach() - f[n:]).abs().mean()
    g_params = list(gen.parameters())
    for p, g in zip(g_params, torch.autograd.grad(g_loss, g_params), strict=True):
        p.grad = g
    opt_g.step()
    return float(d_loss.detach()), float(g_loss.detach())


def test_one_step_equals_the_papers_update(tmp_path):
    trainer = _trainer(tmp_path / "run", max_steps=1, optimizer=_sgd)
    gen, mpd, msd = (copy.deepcopy(m) for m in (trainer.generator, trainer.discriminators["mpd"], trainer.discriminators["msd"]))
    wav, mel = copy.deepcopy(trainer.sampler).next_batch()
    before = _flat(trainer.generator, trainer.discriminators["mpd"], trainer.discriminators["msd"])

    d_ref, g_ref = _reference_update(gen, mpd, msd, wav, mel)
    logs = trainer.train_step()

    assert trainer.step == 1
    assert float(logs["d_total"]) == pytest.approx(d_ref, rel=1e-5)
    assert float(logs["g_total"]) == pytest.approx(g_ref, rel=1e-5)
    torch.testing.assert_close(_flat(trainer.generator), _flat(gen), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(_flat(trainer.discriminators["mpd"], trainer.discriminators["msd"]), _flat(mpd, msd), rtol=1e-4, atol=1e-6)
    assert not torch.equal(_flat(trainer.generator, trainer.discriminators["mpd"], trainer.discriminators["msd"]), before)
    assert all(p.requires_grad for p in [*trainer.discriminators["mpd"].parameters(), *trainer.discriminators["msd"].parameters()])


def test_default_optimiser_is_the_papers_adamw(tmp_path):
    seed_everything(0)
    sampler = SegmentSampler(_waves(), MEL, SEGMENT, 2)
    settings = VocoderSettings(segment_size=SEGMENT, batch_size=2, progress=False)
    trainer = VocoderTrainer(HiFiGANGenerator(MEL.to_dict(), **G_KW), {"mpd": MultiPeriodDiscriminator(**MPD_KW),
                              "msd": MultiScaleDiscriminator(**MSD_KW)}, sampler, settings, tmp_path / "run")
    for opt in (trainer.opt_g, trainer.opt_d):
        assert isinstance(opt, torch.optim.AdamW)
        group = opt.param_groups[0]
        assert (group["lr"], tuple(group["betas"])) == (2e-4, (0.8, 0.99))


def test_before_disc_start_only_the_generator_learns_from_the_mel_loss(tmp_path):
    trainer = _trainer(tmp_path / "run", max_steps=1, disc_start_step=5, optimizer=_sgd)
    d_before = _flat(trainer.discriminators["mpd"], trainer.discriminators["msd"])
    gen = copy.deepcopy(trainer.generator)
    wav, mel = copy.deepcopy(trainer.sampler).next_batch()
    logs = trainer.train_step()
    assert torch.equal(_flat(trainer.discriminators["mpd"], trainer.discriminators["msd"]), d_before)
    assert float(logs["d_total"]) == 0.0 and float(logs["fm_mpd"]) == 0.0
    loss_front = LogMel(MelConfig(**{**MEL.to_dict(), "fmax": None}))
    opt = _sgd(gen.parameters())
    (45.0 * (loss_front(wav) - loss_front(gen(mel))).abs().mean()).backward()
    opt.step()
    torch.testing.assert_close(_flat(trainer.generator), _flat(gen), rtol=1e-4, atol=1e-6)


def test_discriminators_judge_the_same_random_window_of_real_and_generated(tmp_path):
    """disc_segment_size: every discriminator call sees, per segment, one contiguous window of
    that length, cut at the same place from the real segment and from G(mel); the windows
    move between segments and steps."""
    size = 192
    trainer = _trainer(tmp_path / "run", max_steps=3, disc_segment_size=size, optimizer=_sgd)
    seen: list[torch.Tensor] = []
    for disc in trainer.discriminators.values():
        disc.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    offsets = []
    for _ in range(3):
        gen = copy.deepcopy(trainer.generator)
        wav, mel = copy.deepcopy(trainer.sampler).next_batch()
        with torch.no_grad():
            fake = gen(mel)
        seen.clear()
        trainer.train_step()
        assert len(seen) == 4  # two discriminators, a D step and a G step each
        n = wav.shape[0]
        for both in seen:
            assert both.shape == (2 * n, size)
            for i in range(n):
                starts = [o for o in range(SEGMENT - size + 1) if torch.equal(both[i], wav[i, o:o + size])]
                assert len(starts) == 1
                torch.testing.assert_close(both[n + i], fake[i, starts[0]:starts[0] + size], rtol=1e-4, atol=1e-5)
                offsets.append(starts[0])
    assert len(set(offsets)) > 2


def test_disc_segment_size_must_fit_the_segment():
    with pytest.raises(ConfigError, match="disc_segment_size"):
        VocoderSettings(segment_size=SEGMENT, disc_segment_size=SEGMENT + 1)
    assert VocoderSettings(segment_size=SEGMENT, disc_segment_size=SEGMENT).disc_segment_size == SEGMENT


def test_learning_rate_decays_by_gamma_per_epoch(tmp_path):
    # 3 waveforms, batch 2 -> an epoch is ceil(3 / 2) = 2 steps
    trainer = _trainer(tmp_path / "run", max_steps=4, lr=1e-3, lr_decay=0.5)
    assert trainer.lr_decay_every == 2
    rates = []
    for _ in range(4):
        trainer.train_step()
        rates.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
    assert [g for g, _ in rates] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4])
    assert [d for _, d in rates] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4])


def test_cosine_schedule_reaches_zero_at_max_steps(tmp_path):
    """lr_schedule=cosine (Vocos): lr_t = lr_0 (1 + cos(pi t / max_steps)) / 2 on both sides."""
    trainer = _trainer(tmp_path / "run", max_steps=4, lr=1e-3, lr_schedule="cosine", lr_decay=0.5)
    for t in range(1, 5):
        trainer.train_step()
        expected = 1e-3 * (1 + math.cos(math.pi * t / 4)) / 2
        assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12)
        assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ConfigError, match="lr_schedule"):
        VocoderSettings(lr_schedule="linear")


@pytest.mark.slow
def test_mel_loss_falls_on_one_segment(tmp_path):
    """Repeating one segment, the generator's mel L1 drops well below where it started."""
    wave = _waves(1, seconds=SEGMENT / MEL.sample_rate)[0][:SEGMENT]
    trainer = _trainer(tmp_path / "run", max_steps=40, waves=[wave], lr=2e-3, ckpt_every=1000)
    wav, mel = trainer.sampler.next_batch()
    loss_front = trainer.loss_mel

    def mel_l1() -> float:
        with torch.no_grad():
            return float((loss_front(wav) - loss_front(trainer.generator(mel))).abs().mean())

    start = mel_l1()
    for _ in range(40):
        trainer.train_step()
    assert mel_l1() < 0.6 * start


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("disc_segment_size,lr_schedule", [(None, "exponential"), (256, "cosine")])
def test_resume_equals_uninterrupted(tmp_path, disc_segment_size, lr_schedule):
    kw = dict(disc_start_step=1, lr_decay_every=1, lr_decay=0.9, disc_segment_size=disc_segment_size,
              lr_schedule=lr_schedule)
    straight = _trainer(tmp_path / "straight", max_steps=4, **kw)
    straight.fit()

    first = _trainer(tmp_path / "resumed", max_steps=4, **kw)
    first.fit(stop=lambda: first.step >= 2)  # interrupted after 2 of 4 steps
    assert first.step == 2
    # a different seed: everything must come from the checkpoint
    second = _trainer(tmp_path / "resumed", max_steps=4, seed=99, **kw)
    result = second.fit()

    assert result.step == 4 and second.step == 4
    for a, b in ((straight.generator, second.generator), (straight.discriminators["mpd"], second.discriminators["mpd"]), (straight.discriminators["msd"], second.discriminators["msd"])):
        assert torch.equal(_flat(a), _flat(b))
    assert second.opt_g.param_groups[0]["lr"] == straight.opt_g.param_groups[0]["lr"]
    s_state, r_state = straight.opt_d.state_dict()["state"], second.opt_d.state_dict()["state"]
    assert all(torch.equal(s_state[k]["exp_avg_sq"], r_state[k]["exp_avg_sq"]) for k in s_state)


def test_checkpoint_layout_and_rotation(tmp_path):
    trainer = _trainer(tmp_path / "run", max_steps=3, keep_last=2)
    trainer.fit()
    ckpts = trainer.checkpoints
    assert [p.name for p in ckpts.step_files()] == ["step_0000002.ckpt", "step_0000003.ckpt"]
    state = load_vocoder_training_checkpoint(ckpts.last_path)
    assert state["step"] == 3
    assert MelConfig.from_dict(state["mel_config"]) == MEL
    assert set(state["discriminators"]) == {"mpd", "msd"}
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert MelConfig.from_dict(__import__("json").loads((tmp_path / "run" / "mel_config.json").read_text())) == MEL


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path / "run", max_steps=2)
    trainer.fit()
    last = trainer.checkpoints.last_path
    digest = hashlib.sha256(last.read_bytes()).hexdigest()

    broken = _trainer(tmp_path / "run", max_steps=4)
    broken.resume_if_possible()
    with torch.no_grad():
        broken.generator.conv_post.bias.fill_(math.nan)
    broken.resume_if_possible = lambda: True  # keep the poisoned weights (fit would reload them)
    with pytest.raises(TrainingDiverged) as info:
        broken.fit()
    message = str(info.value)
    assert "step 3" in message and "non-finite" in message and str(last) in message
    assert "\n" not in message
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest
    assert load_vocoder_training_checkpoint(last)["step"] == 2
    assert not (last.parent / "step_0000003.ckpt").exists()


def test_resume_refuses_other_mel_config_or_model(tmp_path):
    _trainer(tmp_path / "run", max_steps=1).fit()
    other = _trainer(tmp_path / "run", max_steps=2)
    other.generator = HiFiGANGenerator(MEL.to_dict(), **{**G_KW, "upsample_initial_channel": 32})
    with pytest.raises(CheckpointError, match="generator"):
        other.resume_if_possible()
    other = _trainer(tmp_path / "run", max_steps=2)
    other.mel_config = MelConfig(**{**MEL.to_dict(), "n_mels": 20})
    with pytest.raises(MelConfigMismatch):
        other.resume_if_possible()


def test_trainer_checkpoint_loads_through_load_vocoder(tmp_path):
    trainer = _trainer(tmp_path / "run", max_steps=1)
    trainer.fit()
    vocoder = load_vocoder(trainer.checkpoints.last_path, MEL)
    assert vocoder.mel_config == MEL
    mel = torch.randn(2, MEL.n_mels, 6)
    trainer.generator.eval()
    with torch.no_grad():
        expected = trainer.generator(mel)
    torch.testing.assert_close(vocoder(mel), expected)
    with pytest.raises(MelConfigMismatch, match="hop_length"):
        load_vocoder(trainer.checkpoints.last_path, MelConfig(**{**MEL.to_dict(), "hop_length": 32}))


def test_foreign_file_is_not_a_vocoder_checkpoint(tmp_path):
    bad = tmp_path / "x.ckpt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(CheckpointError, match="x.ckpt"):
        load_vocoder_training_checkpoint(bad)


# --------------------------------------------------------------------------- command line


def _tiny_overrides(dirs, out_dir, steps, model="hifigan_small"):
    return [
        f"data.dirs=[{','.join(str(d) for d in dirs)}]", f"out_dir={out_dir}", "data.holdout=1",
        "data.trim_top_db=null", f"model={model}", "trainer=debug", f"trainer.max_steps={steps}",
        "trainer.segment_size=512", "trainer.threads=1",
        "mel.sample_rate=8000", "mel.n_fft=256", "mel.win_length=256", "mel.hop_length=64",
        "mel.n_mels=16", "mel.fmax=4000.0",
        "model.generator.upsample_rates=[4,4,4]", "model.generator.upsample_kernel_sizes=[8,8,8]",
        "model.generator.upsample_initial_channel=16",
        "model.mpd.channels=[2,4,8,8,8]", "model.msd.channels=[4,4,8,8,8,8,8]",
        "model.msd.groups=[1,2,2,2,2,2,1]",
    ]


def _vocoder_conf_options(group: str) -> list[str]:
    from voiceconv.cli.train import conf_dir

    return sorted(p.stem for p in (conf_dir() / "vocoder" / group).glob("*.yaml"))


@pytest.mark.parametrize("trainer", _vocoder_conf_options("trainer"))
@pytest.mark.parametrize("model", _vocoder_conf_options("model"))
def test_every_vocoder_config_composes_builds_and_vocodes(tmp_path, model, trainer):
    """Each shipped model x trainer composes; the networks build at the default MelConfig,
    the generator turns 4 frames into 4 hops of samples and both discriminators judge them."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from voiceconv.cli.train import conf_dir

    conf = conf_dir()
    with initialize_config_dir(str(conf / "vocoder"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", f"trainer={trainer}", f"out_dir={tmp_path}",
                                           f"data.dirs=[{tmp_path}]", f"hydra.searchpath=[file://{conf}]"])
    settings = VocoderSettings.from_mapping(OmegaConf.to_container(cfg.trainer, resolve=True))
    assert settings.segment_size % cfg.mel.hop_length == 0
    if trainer != "debug":  # one network build per model is enough
        return
    mel_cfg = MelConfig.from_dict(OmegaConf.to_container(cfg.mel, resolve=True))
    gen = instantiate(cfg.model.generator, mel_config=mel_cfg.to_dict()).eval()
    with torch.no_grad():
        wav = gen(torch.randn(1, mel_cfg.n_mels, 4) - 4.0)
        assert wav.shape == (1, 4 * mel_cfg.hop_length)
        for disc in (instantiate(node) for node in model_discriminators(cfg.model).values()):
            logits, _ = disc(wav)
            assert logits and all(torch.isfinite(x).all() for x in logits)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hifigan_small", "hifigan_gl_small"])
def test_command_line_trains_then_resumes(tmp_path, model):
    from hydra import compose, initialize_config_dir

    from voiceconv.cli.train import conf_dir
    from voiceconv.cli.train_vocoder import run

    dirs = []
    for name, waves in (("spk1", _waves(3)), ("spk2", _waves(3, seed=1)[::-1])):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i, w in enumerate(waves):
            sf.write(folder / f"u{i}.wav", w, MEL.sample_rate)
        dirs.append(folder)
    out = tmp_path / "out"
    conf = conf_dir()
    with initialize_config_dir(str(conf / "vocoder"), version_base="1.3"):
        cfg = compose("config", overrides=[*_tiny_overrides(dirs, out, 2, model), f"hydra.searchpath=[file://{conf}]"])
        first = run(cfg)
        cfg = compose("config", overrides=[*_tiny_overrides(dirs, out, 3, model), f"hydra.searchpath=[file://{conf}]"])
        second = run(cfg)
    assert first.step == 2 and second.step == 3
    held = (out / "holdout.txt").read_text().split()
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in held) == ["spk1/u2.wav", "spk2/u2.wav"]
    state = load_vocoder_training_checkpoint(out / "checkpoints" / "last.ckpt")
    assert state["step"] == 3 and MelConfig.from_dict(state["mel_config"]).hop_length == 64
    assert state["sampler"]["n_utterances"] == 4  # 2 folders x (3 files - 1 held out)
