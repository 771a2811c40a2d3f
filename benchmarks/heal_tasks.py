"""The training tasks of ``benchmarks/heal.py``: small, different in kind, each a few seconds on one thread.

Each task fixes its data (the same for every seed) and builds a fresh model and optimizer for a seed and a
learning rate. The seed sets the initialization and the batch order. ``constant_level`` is the loss of the
best constant prediction (the entropy of the class frequencies for cross-entropy, the variance of the
target for MSE): the level a network that learned nothing sits at, which the "not learning" check reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from trainmedic.zoo._common import mlp, regression_data

TEXT = Path(__file__).parent / "data" / "tiny_shakespeare_40k.txt"  # the first 40,000 characters


@dataclass(frozen=True)
class Data:
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    constant_level: float  # training loss of the best constant predictor


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    data: Callable[[], Data]
    model: Callable[[], nn.Module]
    optimizer: Callable[[list[nn.Parameter], float], torch.optim.Optimizer]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    epochs: int
    batch_size: int
    grid: tuple[float, ...]  # the plain grid the tuned rate is chosen from (half-decade steps)
    held_out: bool = False  # added after the prototype's policy was frozen

    def batches(self, data: Data, epoch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(data.x), generator=g)
        for i in range(0, len(order) - self.batch_size + 1, self.batch_size):  # full batches only
            idx = order[i:i + self.batch_size]
            yield data.x[idx], data.y[idx]

    def steps_per_epoch(self, data: Data) -> int:
        return len(data.x) // self.batch_size

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Data) -> float:
        model.eval()
        total, n = 0.0, 0
        for i in range(0, len(data.x_val), 256):
            xb, yb = data.x_val[i:i + 256], data.y_val[i:i + 256]
            total += float(self.loss_fn(model(xb), yb)) * len(xb)
            n += len(xb)
        model.train()
        v = total / n
        return v if math.isfinite(v) else math.inf


def half_decades(lo: float, hi: float) -> tuple[float, ...]:
    """10**(k/2) for every k with lo <= 10**(k/2) <= hi."""
    k_lo, k_hi = math.ceil(2 * math.log10(lo) - 1e-9), math.floor(2 * math.log10(hi) + 1e-9)
    return tuple(float(f"{10 ** (k / 2):.3g}") for k in range(k_lo, k_hi + 1))


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
@cache
def regression() -> Data:
    x, y = regression_data(n=2048, d=16, seed=0, noise=0.3)
    xv, yv = regression_data(n=1024, d=16, seed=0, noise=0.3, split="val")
    return Data(x, y, xv, yv, float(y.var(unbiased=False)))


def _entropy(y: torch.Tensor, classes: int) -> float:
    p = torch.bincount(y, minlength=classes).double() / len(y)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@cache
def classes() -> Data:
    """scikit-learn's ``make_classification``: 4 classes, 3 clusters each, 12 informative of 20 features,
    3 % of the labels flipped. Nonlinear enough that the rate matters, and a wide MLP starts to memorize
    late in training at the larger rates."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=3072, n_features=20, n_informative=12, n_redundant=4, n_classes=4,
                               n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return Data(x[:2048], y[:2048], x[2048:], y[2048:], _entropy(y[:2048], 4))


@cache
def digits() -> Data:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download): 1,280 to train, the rest to judge."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return Data(x[:1280], y[:1280], x[1280:], y[1280:], _entropy(y[:1280], 10))


SEQ = 32


@cache
def _text() -> tuple[torch.Tensor, int]:
    text = TEXT.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text], dtype=torch.long)
    return ids, len(vocab)


@cache
def chars() -> Data:
    """Character windows of tiny Shakespeare: 32 characters in, the next 32 characters out (shifted by one).
    The first 32,000 characters train, the last 8,000 judge."""
    ids, vocab = _text()

    def windows(seq: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.arange(0, len(seq) - SEQ - 1, stride)
        x = torch.stack([seq[s:s + SEQ] for s in starts.tolist()])
        y = torch.stack([seq[s + 1:s + SEQ + 1] for s in starts.tolist()])
        return x, y

    x, y = windows(ids[:32000], 16)
    xv, yv = windows(ids[32000:], SEQ)
    return Data(x, y, xv, yv, _entropy(ids[:32000], vocab))


@cache
def digit_pixels() -> Data:
    """The digits as 64 standardized pixels, input and target alike (an autoencoder)."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-3)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    x = x[order]
    return Data(x[:1280], x[:1280], x[1280:], x[1280:], float(x[:1280].var(0, unbiased=False).mean()))


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
    )


class CharGRU(nn.Module):
    def __init__(self, vocab: int, emb: int = 32, hidden: int = 96) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.gru = nn.GRU(emb, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.emb(x))
        return self.head(h)  # (B, T, vocab)


def char_gru() -> nn.Module:
    return CharGRU(_text()[1])


class CharTransformer(nn.Module):
    """A two-layer pre-norm causal transformer over character windows."""

    def __init__(self, vocab: int, d: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(0.02 * torch.randn(1, SEQ, d))
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.enc(self.emb(x) + self.pos[:, :t], mask=self.mask[:t, :t], is_causal=True)
        return self.head(h)


def char_transformer() -> nn.Module:
    return CharTransformer(_text()[1])


def autoencoder() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 12), nn.ReLU(), nn.Linear(12, 48), nn.ReLU(),
                         nn.Linear(48, 64))


def seq_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


# ------------------------------------------------------------------------------------------------
# optimizers
# ------------------------------------------------------------------------------------------------
def sgd(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr)


def sgd_momentum(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def adam(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def adamw(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def rmsprop(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr)


# The first four informed every choice of the prototype's policy (seeds 0 and 1); the held-out tasks were
# added after it was frozen, to judge it on problems it was not tuned on.
TASKS = [
    Task("regression-mlp-sgd", "MLP regression, plain SGD, MSE", regression, lambda: mlp(16, 1, hidden=64), sgd,
         F.mse_loss, epochs=10, batch_size=32, grid=half_decades(1e-3, 3.0)),
    Task("classify-mlp-adam", "MLP 4-class (sklearn make_classification), Adam", classes,
         lambda: mlp(20, 4, hidden=128), adam, F.cross_entropy, epochs=10, batch_size=32,
         grid=half_decades(1e-4, 0.1)),
    Task("digits-cnn-sgdm", "CNN on sklearn digits, SGD momentum 0.9", digits, small_cnn, sgd_momentum,
         F.cross_entropy, epochs=8, batch_size=32, grid=half_decades(1e-3, 1.0)),
    Task("charlm-gru-adamw", "char-level GRU LM, tiny Shakespeare, AdamW", chars, char_gru, adamw,
         seq_cross_entropy, epochs=5, batch_size=32, grid=half_decades(1e-4, 0.1)),
    Task("held-out: autoencoder-rmsprop", "MLP autoencoder on digit pixels, RMSprop, MSE", digit_pixels,
         autoencoder, rmsprop, F.mse_loss, epochs=10, batch_size=32, grid=half_decades(1e-4, 0.1), held_out=True),
    Task("held-out: charlm-transformer-adam", "2-layer causal transformer char LM, Adam", chars, char_transformer,
         adam, seq_cross_entropy, epochs=3, batch_size=32, grid=half_decades(1e-4, 0.1), held_out=True),
]
