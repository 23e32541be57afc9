"""DDPM: schedules and forward process against their closed forms, samplers against
an exact noise predictor, and a training loss that falls."""

from __future__ import annotations

import math

import pytest
import torch

from voiceconv.errors import ConfigError
from voiceconv.models.base import load_model, save_model
from voiceconv.models.diffusion import DDPM, beta_schedule, timestep_embedding

torch.set_num_threads(1)


def _tiny(**kw) -> DDPM:
    args = {"channels": 1, "image_size": 8, "width": 8, "channel_mults": (1, 2), "timesteps": 100}
    args.update(kw)
    return DDPM(**args)


def test_linear_schedule_is_ho_et_al() -> None:
    b = beta_schedule("linear", 1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    assert torch.allclose(b[1:] - b[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_cosine_schedule_matches_nichol_dhariwal_alpha_bar() -> None:
    T, s = 200, 0.008
    abar = torch.cumprod(1 - beta_schedule("cosine", T), 0)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = f(t) / f(torch.zeros(1, dtype=torch.float64))
    # the clip at beta = 0.999 only touches the last step
    torch.testing.assert_close(abar[:-1], expected[:-1], rtol=1e-9, atol=1e-12)


def test_forward_process_matches_its_closed_form() -> None:
    # iterate x_t = sqrt(1 - b_t) x_{t-1} + sqrt(b_t) e_t from a fixed x_0 and compare the
    # empirical mean / variance at t with sqrt(abar_t) x_0 and 1 - abar_t
    torch.manual_seed(0)
    m = _tiny(schedule="linear", timesteps=50)
    x0 = torch.tensor([0.8, -0.3])
    x = x0.repeat(20000, 1)
    betas = beta_schedule("linear", 50).float()
    for t in range(30):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn_like(x)
    abar = float(m.alphas_cumprod[29])
    assert abar == pytest.approx(float(torch.prod(1 - betas[:30])), rel=1e-5)
    torch.testing.assert_close(x.mean(0), math.sqrt(abar) * x0, atol=0.02, rtol=0)
    torch.testing.assert_close(x.var(0), torch.full((2,), 1 - abar), atol=0.02, rtol=0)
    # and q_sample draws from the same Gaussian
    img0 = x0.view(1, 2, 1, 1).expand(20000, 2, 1, 1)
    xq = m.q_sample(img0, torch.full((20000,), 29)).flatten(1)
    torch.testing.assert_close(xq.mean(0), math.sqrt(abar) * x0, atol=0.02, rtol=0)
    torch.testing.assert_close(xq.var(0), torch.full((2,), 1 - abar), atol=0.02, rtol=0)


class _Oracle(torch.nn.Module):
    """The exact noise predictor when all data is the single image ``target``:
    eps(x_t) = (x_t - sqrt(abar_t) target) / sqrt(1 - abar_t)."""

    def __init__(self, model: DDPM, target: torch.Tensor) -> None:
        super().__init__()
        self.abar, self.target = model.alphas_cumprod, target

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        a = self.abar[t][:, None, None, None]
        return (x - a.sqrt() * self.target) / (1 - a).sqrt()


class _VOracle(_Oracle):
    """The exact ``v`` predictor for the same one-image data:
    v = sqrt(abar) eps - sqrt(1 - abar) target."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        a = self.abar[t][:, None, None, None]
        return a.sqrt() * super().forward(x, t) - (1 - a).sqrt() * self.target


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("method,eta", [("ancestral", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_samplers_reach_the_data_with_an_exact_predictor(schedule: str, method: str, eta: float,
                                                         prediction: str) -> None:
    torch.manual_seed(0)
    m = _tiny(schedule=schedule, prediction=prediction)
    target = torch.rand(1, 1, 8, 8) * 1.6 - 0.8
    m.net = (_Oracle if prediction == "eps" else _VOracle)(m, target)
    x = m.sample(3, method=method, steps=10, eta=eta)
    torch.testing.assert_close(x, target.expand(3, -1, -1, -1), atol=1e-3, rtol=0)


def test_v_prediction_targets_and_conversions_are_salimans_and_ho() -> None:
    # with the exact v predictor of one-image data the v loss is 0, and predict_noise /
    # predict_x0 recover the noise and the image from it (even at the last, zero-SNR step)
    torch.manual_seed(0)
    m = _tiny(schedule="cosine", prediction="v")
    target = torch.rand(1, 1, 8, 8) * 1.6 - 0.8
    m.net = _VOracle(m, target)
    x0 = target.expand(6, -1, -1, -1)
    torch.manual_seed(1)
    assert float(m.loss(x0)) < 1e-10
    t = torch.tensor([0, 10, 50, 90, 98, 99])
    noise = torch.randn_like(x0)
    xt = m.q_sample(x0, t, noise)
    torch.testing.assert_close(m.predict_noise(xt, t), noise, atol=1e-4, rtol=0)
    torch.testing.assert_close(m.predict_x0(xt, t), x0, atol=1e-4, rtol=0)
    with pytest.raises(ConfigError):
        _tiny(prediction="x0")


def test_classifier_free_guidance_combines_as_ho_and_salimans() -> None:
    torch.manual_seed(0)
    m = _tiny(num_classes=3)
    for p in m.parameters():  # make the net's output depend on the label
        torch.nn.init.normal_(p, 0, 0.1)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([5, 50]), torch.tensor([0, 2])
    null = torch.full_like(y, 3)
    e_c, e_u = m.net(x, t, y), m.net(x, t, null)
    assert not torch.allclose(e_c, e_u)
    torch.testing.assert_close(m.predict_noise(x, t, y, guidance=2.0), 3 * e_c - 2 * e_u)
    torch.testing.assert_close(m.predict_noise(x, t, None), e_u)


@pytest.mark.slow
def test_training_loss_falls() -> None:
    # data: one of two fixed 8x8 images. The U-Net's output layer starts at zero, so the
    # first loss is E[eps^2] = 1; after training it is far below (samplers are checked
    # against the exact predictor above)
    torch.manual_seed(0)
    m = _tiny(timesteps=100, schedule="cosine")
    protos = torch.stack([torch.ones(1, 8, 8), -torch.ones(1, 8, 8)])
    protos[0, 0, :4] = -1
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    losses = []
    for _ in range(150):
        x0 = protos[torch.randint(0, 2, (32,))]
        loss = m.loss(x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(1.0, abs=0.1)
    assert sum(losses[-20:]) / 20 < 0.3


def test_shapes_save_load_and_bad_arguments(tmp_path) -> None:
    m = _tiny(num_classes=2)
    assert m.sample(torch.tensor([0, 1, 1]), steps=2).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError):
        _tiny().sample(torch.tensor([0]))
    with pytest.raises(ConfigError):
        m.sample(2, method="euler")
    with pytest.raises(ConfigError):
        _tiny(schedule="quadratic")
    with pytest.raises(ConfigError):
        _tiny(image_size=7)
    save_model(m, tmp_path / "ddpm.pt")
    loaded = load_model(tmp_path / "ddpm.pt")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 70])
    assert torch.equal(loaded.net(x, t, torch.tensor([0, 2])), m.net(x, t, torch.tensor([0, 2])))
    torch.testing.assert_close(loaded.alphas_cumprod, m.alphas_cumprod)
    assert timestep_embedding(torch.tensor([0, 1]), 7).shape == (2, 7)
