"""A small training whose batches come in label order (``sorted``) or shuffled (``--healthy``).

``python ordered.py classes|regression [--healthy]``: four Gaussian blobs classified by an MLP with
``F.cross_entropy``, or a smooth regression target under ``nn.MSELoss``; the training set is stored sorted by
its target, and the fault serves it through a ``DataLoader`` without shuffling. No trainmedic import.
"""

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def data(kind: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "classes":
        y = torch.arange(4).repeat_interleave(160)
        x = torch.randn(len(y), 8, generator=g) + 2.0 * F.one_hot(y, 8).float()
    else:
        x = torch.randn(640, 8, generator=g)
        y = (x[:, 0] + 0.5 * torch.sin(2 * x[:, 1]) + 0.1 * torch.randn(640, generator=g)).unsqueeze(1)
    order = torch.argsort(y.reshape(len(y), -1)[:, 0], stable=True)  # stored sorted by the target
    return x[order], y[order]


def main(argv: list[str]) -> None:
    kind, healthy = argv[0], "--healthy" in argv
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = data(kind, g)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4 if kind == "classes" else 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = nn.MSELoss() if kind == "regression" else None
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=healthy)
    for _ in range(3):
        for xb, yb in loader:
            out = net(xb)
            loss = loss_fn(out, yb) if loss_fn is not None else F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    print("done")


if __name__ == "__main__":
    main(sys.argv[1:])
