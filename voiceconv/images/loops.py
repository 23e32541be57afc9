"""Small, readable training loops for the image experiments.

One function per model family (:func:`fit_vae`, :func:`fit_diffusion`, :func:`fit_gan`, :func:`fit_cgan`,
:func:`fit_progressive`, :func:`fit_pix2pix`, :func:`fit_cyclegan`,
:func:`fit_classifier`, :func:`fit_dbvae`), all with the same shape: draw a random
batch (with replacement) from a dataset, take an Adam step (two for GANs), record
running means of the losses. Each returns a :data:`History` (loss name -> list of
means over ``log_every`` steps). These loops are for experiments on procedural
data; the voice-conversion trainer (checkpoints, resumption, distributed) lives in
:mod:`voiceconv.training.vc_trainer`.

Data convention: image tensors in [0, 1]. Models with a tanh output (DCGAN,
pix2pix, CycleGAN) and the progressive GAN see ``2 x - 1`` in [-1, 1]; use
:func:`to_unit` on their outputs. Datasets may provide ``get_batch(indices)``
(every set in :mod:`voiceconv.images.data` does) to render a whole batch at once;
otherwise items are stacked. Fields of a batch are chosen by index
(``label_index``): ``ShapesDataset``, ``ImageFolder`` and ``MNIST`` have the label
last, ``BiasedShapes`` has it at index 1.

Randomness: each loop runs inside ``torch.random.fork_rng`` seeded with
``config.seed`` (so the caller's torch RNG is left as it was) and draws batch
indices from ``numpy.random.default_rng(config.seed)``.

:class:`SmallClassifier` (a tiny CNN) lives here rather than in
:mod:`voiceconv.models` because it is an evaluation tool of these experiments: it
supplies features for Frechet distances and judges class-conditional samples.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from voiceconv.errors import ConfigError, TrainingDiverged
from voiceconv.models.base import SavableModule, frozen
from voiceconv.utils.machine import resolve_precision

History = dict[str, list[float]]
"""Loss name -> running means, one per ``log_every`` steps."""


SCHEDULES = ("constant", "cosine")


@dataclass
class LoopConfig:
    """Settings shared by every loop.

    ``lr``/``betas`` configure Adam for the (only or generator) optimiser;
    ``d_lr``/``d_betas`` the discriminator's (default: the same). ``log_every``
    steps are averaged into one history entry. ``progress`` shows a tqdm bar.

    One-optimiser loops (:func:`fit_objective`) also honour ``schedule`` ("constant",
    or "cosine": ``lr`` decayed to 0 over ``steps`` after ``warmup`` linear steps, see
    :func:`lr_factor`), ``precision`` ("fp32", "bf16" autocast, or "auto": bf16 where
    the device computes it natively, see :func:`~voiceconv.utils.machine.resolve_precision`)
    and ``channels_last`` (model and batches in NHWC, which oneDNN's bf16 convolutions
    want); :func:`fit_gan` and :func:`fit_cgan` honour all three (the schedule scales
    both players' rates), :func:`fit_progressive` ``precision`` and ``channels_last``.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    d_lr: float | None = None
    d_betas: tuple[float, float] | None = None
    device: str = "cpu"
    seed: int = 0
    log_every: int = 10
    progress: bool = False
    desc: str = ""
    schedule: str = "constant"
    warmup: int = 0
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.log_every < 1:
            raise ConfigError(
                f"LoopConfig: need steps >= 0, batch_size >= 1, log_every >= 1; got {self}"
            )
        if self.lr <= 0 or (self.d_lr is not None and self.d_lr <= 0):
            raise ConfigError(f"LoopConfig: learning rates must be > 0, got lr={self.lr}, d_lr={self.d_lr}")
        if self.schedule not in SCHEDULES or self.warmup < 0:
            raise ConfigError(f"LoopConfig: schedule must be one of {SCHEDULES} and warmup >= 0, "
                              f"got {self.schedule!r}, {self.warmup}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"LoopConfig: precision must be auto, fp32 or bf16, got {self.precision!r}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.d_betas is not None:
            self.d_betas = tuple(self.d_betas)  # type: ignore[assignment]

    @property
    def memory_format(self) -> torch.memory_format:
        """``torch.channels_last`` when ``channels_last`` is set, else contiguous (NCHW)."""
        return torch.channels_last if self.channels_last else torch.contiguous_format


# ------------------------------------------------------------------ helpers


def lr_factor(step: int, steps: int, schedule: str = "constant", warmup: int = 0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``steps``: 1 for
    "constant"; for "cosine" ``min(1, (step + 1) / warmup) * (1 + cos(pi step / steps)) / 2``
    (linear warm-up, then half a cosine down towards 0; Loshchilov & Hutter 2017
    without restarts)."""
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ConfigError(f"lr_factor: schedule must be one of {SCHEDULES}, got {schedule!r}")
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return warm * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))


def loop_autocast(config: LoopConfig) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast when the loop's precision resolves to bf16 on its device; else nothing
    (also for scoring a model the way it was trained)."""
    if resolve_precision(config.precision, config.device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(config.device).type, dtype=torch.bfloat16)


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1] (the range of tanh-output generators)."""
    return x * 2.0 - 1.0


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def get_batch(data: Dataset, indices: Sequence[int] | np.ndarray) -> tuple[Tensor, ...]:
    """Items ``indices`` of ``data`` as a tuple of batched tensors (via
    ``data.get_batch`` when the dataset has one)."""
    if hasattr(data, "get_batch"):
        out = data.get_batch(indices)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    items = [data[int(i)] for i in indices]
    first = items[0] if isinstance(items[0], (tuple, list)) else (items[0],)
    cols = []
    for k in range(len(first)):
        vals = [it[k] if isinstance(it, (tuple, list)) else it for it in items]
        cols.append(torch.stack(vals) if isinstance(vals[0], Tensor) else torch.as_tensor(vals))
    return tuple(cols)


def random_batches(
    data: Dataset,
    batch_size: int,
    seed: int = 0,
    weights: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[Tensor, ...]]:
    """Endless random batches (with replacement) from ``data``, moved to ``device``.
    ``weights`` (non-negative, one per item) make the draw non-uniform."""
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise ConfigError("random_batches: empty dataset")
    rng = np.random.default_rng(seed)
    p = None
    if weights is not None:
        p = _probabilities(weights, n)
    while True:
        idx = rng.choice(n, size=batch_size, replace=True, p=p)
        yield tuple(t.to(device) for t in get_batch(data, idx))


def _probabilities(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ConfigError(f"sampling weights must be {n} finite non-negative numbers with a positive sum")
    return w / w.sum()


def batched(
    fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> Tensor:
    """Apply ``fn`` to ``x`` in chunks on ``device`` under ``no_grad``; results on the CPU."""
    outs = []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            outs.append(fn(chunk.to(device)).cpu())
    return torch.cat(outs)


class _Recorder:
    """Accumulates per-step scalars and writes means every ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.history: History = defaultdict(list)
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def add(self, step: int, **values: Tensor | float) -> None:
        for k, v in values.items():
            val = float(v.detach()) if isinstance(v, Tensor) else float(v)
            if not math.isfinite(val):
                raise TrainingDiverged(f"non-finite {k} ({val}) at step {step}")
            self._sums[k] += val
        self._count += 1
        if self._count == self.every:
            self.flush()

    def flush(self) -> None:
        if self._count:
            for k, s in self._sums.items():
                self.history[k].append(s / self._count)
        self._sums.clear()
        self._count = 0

    def result(self) -> History:
        self.flush()
        return dict(self.history)


@contextlib.contextmanager
def _seeded(config: LoopConfig) -> Iterator[None]:
    """Fork torch's RNG (CPU and the loop's CUDA device), seed it, restore afterwards."""
    device = torch.device(config.device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        yield


def _adam(params: Iterator[nn.Parameter] | list[nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, betas=betas)


def _d_opt(params: Iterator[nn.Parameter], config: LoopConfig) -> torch.optim.Adam:
    return _adam(params, config.d_lr or config.lr, config.d_betas or config.betas)


def _step(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _schedule(config: LoopConfig, step: int, opt: torch.optim.Optimizer,
              d_opt: torch.optim.Optimizer | None = None) -> None:
    """Set the optimisers' learning rates for ``step``: ``lr`` (and ``d_lr``) times
    :func:`lr_factor`."""
    factor = lr_factor(step, config.steps, config.schedule, config.warmup)
    for group in opt.param_groups:
        group["lr"] = config.lr * factor
    if d_opt is not None:
        for group in d_opt.param_groups:
            group["lr"] = (config.d_lr or config.lr) * factor


def _update(opt: torch.optim.Optimizer, config: LoopConfig, loss_fn: Callable[..., Tensor], *args: Tensor,
            hold: Iterator[nn.Parameter] | tuple[()] = ()) -> Tensor:
    """One step of ``opt`` on ``loss_fn(*args)``, computed under the loop's autocast with
    its backward in fp32, while the parameters ``hold`` (the other player) stay frozen."""
    with frozen(hold):
        with loop_autocast(config):
            loss = loss_fn(*args)
        _step(opt, loss.float())
    return loss


def _progress(config: LoopConfig, desc: str) -> tqdm:
    return tqdm(range(config.steps), desc=config.desc or desc, disable=not config.progress, leave=False)


def _labels(batch: tuple[Tensor, ...], label_index: int) -> Tensor:
    return batch[label_index].long()


# ------------------------------------------------------------------ classifier


class SmallClassifier(SavableModule):
    """A tiny CNN: three ``conv3x3 -> batch norm -> ReLU`` stages (widths ``width``,
    ``2 width``, ``4 width``; 2x2 max-pooling after the first two), global average
    pooling to a ``4 width`` feature vector, and a linear layer to ``num_classes``
    logits. :meth:`features` gives the pooled vector (the space in which the GAN
    recipes compute Frechet distances, as FID does with Inception features)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.save_hparams(in_channels=in_channels, num_classes=num_classes, width=width)
        if num_classes < 1 or width < 1 or in_channels < 1:
            raise ConfigError("SmallClassifier: in_channels, num_classes and width must be >= 1")

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.trunk = nn.Sequential(
            *stage(in_channels, width), nn.MaxPool2d(2),
            *stage(width, 2 * width), nn.MaxPool2d(2),
            *stage(2 * width, 4 * width),
        )
        self.head = nn.Linear(4 * width, num_classes)
        self.num_classes = num_classes

    def features(self, x: Tensor) -> Tensor:
        """Pooled features ``(B, 4 width)``."""
        return self.trunk(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.features(x))


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy for ``(B, C)`` logits with ``C > 1``; binary cross-entropy for
    ``(B,)`` or ``(B, 1)`` logits (labels 0/1)."""
    if logits.dim() == 2 and logits.shape[1] > 1:
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float().reshape(-1))


def fit_objective(
    model: nn.Module,
    data: Dataset,
    config: LoopConfig,
    objective: Callable[[tuple[Tensor, ...]], dict[str, Tensor]],
    weights: np.ndarray | None = None,
) -> History:
    """The one-optimiser loop shared by the classifier, VAE and diffusion loops: draw a
    batch, ``terms = objective(batch)``, an Adam step on ``terms["loss"]``, record every
    term. ``weights`` resample the training items. Honours ``config.schedule``,
    ``precision`` and ``channels_last``."""
    fmt = config.memory_format
    model.to(config.device, memory_format=fmt).train()
    opt = _adam(model.parameters(), config.lr, config.betas)
    rec = _Recorder(config.log_every)
    with _seeded(config):
        batches = random_batches(data, config.batch_size, config.seed, weights, config.device)
        for step in _progress(config, config.desc):
            _schedule(config, step, opt)
            batch = tuple(t.contiguous(memory_format=fmt) if t.dim() == 4 else t for t in next(batches))
            with loop_autocast(config):
                terms = objective(batch)
            _step(opt, terms["loss"].float())
            rec.add(step, **terms)
    model.to(memory_format=torch.contiguous_format).eval()
    return rec.result()


def fit_classifier(
    model: nn.Module,
    data: Dataset,
    config: LoopConfig,
    label_index: int = -1,
    weights: np.ndarray | None = None,
) -> History:
    """Supervised training with cross-entropy (or BCE for a single logit); images are
    fed in [0, 1]. ``weights`` resample the training items. History: ``loss``, ``acc``."""

    def objective(batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x, y = batch[0], _labels(batch, label_index)
        logits = model(x)
        pred = logits.argmax(1) if logits.dim() == 2 and logits.shape[1] > 1 else (logits.reshape(-1) > 0).long()
        return {"loss": classification_loss(logits, y), "acc": (pred == y).float().mean()}

    return fit_objective(model, data, config, objective, weights)


# ------------------------------------------------------------------ VAE family


def fit_vae(
    model: nn.Module, data: Dataset, config: LoopConfig, label_index: int | None = None
) -> History:
    """Maximise the (beta-weighted) ELBO of a :class:`~voiceconv.models.vae.VAE`,
    ``BetaVAE`` or ``ConditionalVAE`` (pass ``label_index`` for the conditional one)
    using the model's own ``loss(x, out)`` (any model with ``forward`` and
    ``loss(x, out)``, e.g. :class:`~voiceconv.models.pixelcnn.LocalPixelCNN`).
    History: ``loss``, ``recon``, ``kl`` (those the model reports)."""

    def objective(batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x = batch[0]
        out = model(x) if label_index is None else model(x, _labels(batch, label_index))
        terms = model.loss(x, out)
        return {k: v for k, v in terms.items() if k in ("loss", "recon", "kl")}

    return fit_objective(model, data, config, objective)


def fit_diffusion(
    model: nn.Module, data: Dataset, config: LoopConfig, label_index: int | None = None
) -> History:
    """Train a :class:`~voiceconv.models.diffusion.DDPM` on images fed in [-1, 1] (with
    labels from ``label_index`` when it is class-conditional). History: ``loss``."""

    def objective(batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        labels = None if label_index is None else _labels(batch, label_index)
        return {"loss": model.loss(to_signed(batch[0]), labels)}

    return fit_objective(model, data, config, objective)


def dbvae_weights(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    debias: str = "positive",
    bins: int = 10,
    smoothing: float = 1e-3,
    combine: str = "product",
    batch_size: int = 256,
) -> np.ndarray:
    """Resampling weights for a DB-VAE training set (Amini et al. 2019, Algorithm 1;
    ``combine`` as in :meth:`~voiceconv.models.dbvae.DBVAE.sampling_weights`).

    ``debias="positive"`` (the paper): positives get ``model.sampling_weights`` over
    the positive images (scaled to the positives' share of the set), negatives are
    uniform. ``debias="all"`` (our extension to both classes): each class gets
    density-inverse weights from its own latent histogram, keeping its share."""
    if debias not in ("positive", "all"):
        raise ConfigError(f"debias must be 'positive' or 'all', got {debias!r}")
    y = labels.cpu().numpy().astype(np.int64)
    w = np.full(len(y), 1.0 / len(y))
    for cls in (1,) if debias == "positive" else (0, 1):
        sel = np.nonzero(y == cls)[0]
        if len(sel) == 0:
            continue
        cw = model.sampling_weights(images[torch.from_numpy(sel)], bins=bins, smoothing=smoothing,
                                    combine=combine, batch_size=batch_size)
        w[sel] = cw * (len(sel) / len(y))
    return w / w.sum()


def fit_dbvae(
    model: nn.Module,
    data: Dataset,
    config: LoopConfig,
    label_index: int = 1,
    resample_every: int = 200,
    debias: str = "positive",
    bins: int = 10,
    smoothing: float = 1e-3,
    combine: str = "product",
    max_weight_items: int = 20000,
) -> History:
    """Train a :class:`~voiceconv.models.dbvae.DBVAE` with adaptive resampling.

    Every ``resample_every`` steps (and at the start: uniform until the first
    update) the latent means of the training items are recomputed and batches are
    drawn with :func:`dbvae_weights` (the lab recomputes once per epoch). Labels
    must be 0/1. ``max_weight_items`` caps the items the weights are computed over
    (the first ones; they are also the only ones drawn). History: ``loss``,
    ``classification``, ``recon``, ``kl``, ``max_weight_ratio`` (largest weight over
    the uniform weight, a measure of how hard the sampler leans)."""
    n = min(len(data), max_weight_items)  # type: ignore[arg-type]
    all_items = get_batch(data, np.arange(n))
    images, labels = all_items[0], all_items[label_index].long()
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ConfigError("fit_dbvae: labels must be 0/1 (DB-VAE is a binary classifier)")
    subset = _TensorSet(images, labels)
    model.to(config.device).train()
    opt = _adam(model.parameters(), config.lr, config.betas)
    rec = _Recorder(config.log_every)
    weights = np.full(n, 1.0 / n)
    with _seeded(config):
        rng = np.random.default_rng(config.seed)
        for step in _progress(config, "dbvae"):
            if resample_every > 0 and step > 0 and step % resample_every == 0:
                weights = dbvae_weights(model, images, labels, debias, bins, smoothing, combine)
                model.train()
            idx = rng.choice(n, size=config.batch_size, replace=True, p=weights)
            x, y = (t.to(config.device) for t in subset.get_batch(idx))
            out = model(x)
            terms = model.loss(x, out, y)
            _step(opt, terms["loss"])
            rec.add(step, **{k: terms[k] for k in ("loss", "classification", "recon", "kl")},
                    max_weight_ratio=float(weights.max() * n))
    model.eval()
    return rec.result()


class _TensorSet(Dataset):
    """Pre-rendered ``(images, labels)`` with a vectorised ``get_batch``."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i]

    def get_batch(self, idx: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return self.images[t], self.labels[t]


# ------------------------------------------------------------------ GANs


def fit_gan(
    model: nn.Module, data: Dataset, config: LoopConfig, d_steps: int = 1, label_index: int | None = None
) -> History:
    """Alternate ``d_steps`` discriminator steps and one generator step of a
    :class:`~voiceconv.models.gan.GAN` (anything with ``generator_loss(batch)``,
    ``discriminator_loss(batch)`` and ``generator/discriminator_parameters()``), or, with
    ``label_index``, of a class-conditional one (``discriminator_loss(batch, labels)``,
    ``generator_loss(labels)``; generator steps use the last real batch's labels).
    Real images are fed in [-1, 1]. The discriminator is frozen during the generator step
    (its gradients there would be discarded). Honours ``config.precision`` and
    ``channels_last`` (the losses under bf16 autocast). History: ``d_loss``, ``g_loss``."""
    fmt = config.memory_format
    model.to(config.device, memory_format=fmt).train()
    g_opt = _adam(model.generator_parameters(), config.lr, config.betas)
    d_opt = _d_opt(model.discriminator_parameters(), config)
    rec = _Recorder(config.log_every)
    with _seeded(config):
        batches = random_batches(data, config.batch_size, config.seed, None, config.device)
        for step in _progress(config, "gan"):
            _schedule(config, step, g_opt, d_opt)
            for _ in range(d_steps):
                batch = next(batches)
                real = to_signed(batch[0]).contiguous(memory_format=fmt)
                cond = () if label_index is None else (_labels(batch, label_index),)
                d_loss = _update(d_opt, config, model.discriminator_loss, real, *cond)
            g_loss = _update(g_opt, config, model.generator_loss, *(cond or (real,)),
                             hold=model.discriminator_parameters())
            rec.add(step, d_loss=d_loss, g_loss=g_loss)
    model.to(memory_format=torch.contiguous_format).eval()
    return rec.result()


def fit_cgan(
    model: nn.Module, data: Dataset, config: LoopConfig, label_index: int = -1, d_steps: int = 1
) -> History:
    """:func:`fit_gan` for a :class:`~voiceconv.models.cgan.ConditionalGAN` on labelled
    images. History: ``d_loss``, ``g_loss``."""
    return fit_gan(model, data, config, d_steps=d_steps, label_index=label_index)


def progressive_schedule(step: int, steps: int, resolutions: Sequence[int]) -> tuple[int, float]:
    """``(resolution, alpha)`` at ``step`` of ``steps`` when every resolution gets an
    equal share: the first stage runs at 4x4; each later stage fades its block in
    linearly over the first half of its share (alpha 0 -> 1) and then stabilises,
    as in Karras et al. (who use 600k images per half instead of step counts)."""
    n = len(resolutions)
    share = max(1, steps // n)
    k = min(step // share, n - 1)
    if k == 0:
        return resolutions[0], 1.0
    within = step - k * share
    return resolutions[k], min(1.0, within / max(1, share // 2))


def fit_progressive(
    model: nn.Module, data: Dataset, config: LoopConfig, d_steps: int = 1
) -> History:
    """Train a :class:`~voiceconv.models.progressive.ProgressiveGAN` through every
    resolution up to ``model.max_resolution`` (see :func:`progressive_schedule`);
    the optimisers' state is kept across stages. Real images are fed in [-1, 1] at
    full size; the model pools and fades them (``prepare_real``). History:
    ``d_loss``, ``g_loss``, ``resolution``, ``alpha``. Honours ``config.precision`` and
    ``channels_last`` as :func:`fit_gan` does."""
    fmt = config.memory_format
    model.to(config.device, memory_format=fmt).train()
    g_opt = _adam(model.generator_parameters(), config.lr, config.betas)
    d_opt = _d_opt(model.discriminator_parameters(), config)
    rec = _Recorder(config.log_every)
    with _seeded(config):
        batches = random_batches(data, config.batch_size, config.seed, None, config.device)
        for step in _progress(config, "progressive"):
            res, alpha = progressive_schedule(step, config.steps, model.resolutions)
            model.set_stage(res, alpha)
            for _ in range(d_steps):
                real = to_signed(next(batches)[0]).contiguous(memory_format=fmt)
                d_loss = _update(d_opt, config, model.discriminator_loss, real)
            g_loss = _update(g_opt, config, model.generator_loss, real, hold=model.discriminator_parameters())
            rec.add(step, d_loss=d_loss, g_loss=g_loss, resolution=res, alpha=alpha)
    model.set_stage(model.max_resolution, 1.0)
    model.to(memory_format=torch.contiguous_format).eval()
    return rec.result()


def fit_pix2pix(model: nn.Module, data: Dataset, config: LoopConfig) -> History:
    """Train :class:`~voiceconv.models.pix2pix.Pix2Pix` on ``(source, target)`` pairs
    (fed in [-1, 1]): a generator step, then a discriminator step on its detached
    fake. History: ``g_loss``, ``l1``, ``d_loss``."""
    model.to(config.device).train()
    g_opt = _adam(model.generator_parameters(), config.lr, config.betas)
    d_opt = _d_opt(model.discriminator_parameters(), config)
    rec = _Recorder(config.log_every)
    with _seeded(config):
        batches = random_batches(data, config.batch_size, config.seed, None, config.device)
        for step in _progress(config, "pix2pix"):
            src, tgt = (to_signed(t) for t in next(batches)[:2])
            with frozen(model.discriminator_parameters()):
                out = model.generator_loss(src, tgt)
                _step(g_opt, out.loss)
            d_loss, _ = model.discriminator_loss(src, tgt, out.fake)
            _step(d_opt, d_loss)
            rec.add(step, g_loss=out.loss, l1=out.logs["l1"], d_loss=d_loss)
    model.eval()
    return rec.result()


def fit_cyclegan(model: nn.Module, data: Dataset, config: LoopConfig) -> History:
    """Train a :class:`~voiceconv.models.cyclegan.CycleGAN` on unpaired
    ``(image_a, image_b)`` batches (fed in [-1, 1]): a generator step with the
    discriminators frozen, then a discriminator step on the step's detached fakes.
    History: ``g_loss``, ``cycle``, ``identity``, ``d_loss``."""
    model.to(config.device).train()
    g_opt = _adam(model.generator_parameters(), config.lr, config.betas)
    d_opt = _d_opt(model.discriminator_parameters(), config)
    rec = _Recorder(config.log_every)
    with _seeded(config):
        batches = random_batches(data, config.batch_size, config.seed, None, config.device)
        for step in _progress(config, "cyclegan"):
            real_a, real_b = (to_signed(t) for t in next(batches)[:2])
            with model.discriminators_frozen():
                out = model.generator_step(real_a, real_b, step)
                _step(g_opt, out.loss)
            d_loss, _ = model.discriminator_loss(real_a, real_b, out)
            _step(d_opt, d_loss)
            rec.add(step, g_loss=out.loss, cycle=out.logs["cycle"], identity=out.logs["identity"],
                    d_loss=d_loss)
    model.eval()
    return rec.result()


__all__ = [
    "History",
    "LoopConfig",
    "SmallClassifier",
    "batched",
    "classification_loss",
    "dbvae_weights",
    "fit_cgan",
    "fit_classifier",
    "fit_cyclegan",
    "fit_dbvae",
    "fit_diffusion",
    "fit_objective",
    "fit_gan",
    "fit_pix2pix",
    "fit_progressive",
    "fit_vae",
    "get_batch",
    "progressive_schedule",
    "random_batches",
    "to_signed",
    "to_unit",
]
