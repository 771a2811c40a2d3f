"""An autoencoder on [0, 1] pixels under ``F.binary_cross_entropy`` whose training rows hold a NaN
(``nan``) or a -9999 "missing" sentinel (``sentinel``): the loss function raises on the first batch that
holds one (BCE checks that its input and target lie in [0, 1]). ``--healthy``: clean rows, no crash."""

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main(argv: list[str]) -> None:
    kind, healthy = argv[0], "--healthy" in argv
    torch.manual_seed(0)
    x = torch.rand(600, 16)
    if not healthy:
        if kind == "nan":
            x[[100, 350, 351], 3] = float("nan")
        else:
            x[::40, 1] = -9999.0
    ae = nn.Sequential(nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 16), nn.Sigmoid())
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for _ in range(2):
        for (xb,) in DataLoader(TensorDataset(x), batch_size=50, shuffle=True):
            loss = F.binary_cross_entropy(ae(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    print("done")


if __name__ == "__main__":
    main(sys.argv[1:])
