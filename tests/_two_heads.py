"""The two-headed breast-cancer MLP of ``benchmarks/fresh/multitask.py`` under ``Medic``: the same data,
initialization, batches and optimizer (SGD with Nesterov momentum 0.9) as the script with ``--seed``,
validating the regression head's MSE each epoch. A healthy run written apart from the rules, on which two
rules were found to warn falsely (TM309 on seed 1, TM303 on the momentum's echo of one spike on seed 0)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer

from trainmedic import Medic


def two_heads(seed: int, epochs: int) -> Medic:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    area = x[:, 3].copy()
    x = np.delete(x, 3, axis=1)
    labels = data.target.astype(np.float32)
    order = rng.permutation(len(x))
    tr, va = order[:450], order[450:]
    x = (x - x[tr].mean(0)) / x[tr].std(0)
    area = (area - area[tr].mean()) / area[tr].std()
    tx, vx = torch.from_numpy(x[tr]), torch.from_numpy(x[va])
    tc, tr_area, va_area = torch.from_numpy(labels[tr]), torch.from_numpy(area[tr]), torch.from_numpy(area[va])
    trunk = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.Tanh(), torch.nn.Linear(64, 32),
                                torch.nn.Tanh())
    cls_head, reg_head = torch.nn.Linear(32, 1), torch.nn.Linear(32, 1)
    model = torch.nn.ModuleList([trunk, cls_head, reg_head])
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    bce, mse = torch.nn.BCEWithLogitsLoss(), torch.nn.MSELoss()
    medic = Medic(model, opt, console=False)
    for _ in range(epochs):
        idx = torch.from_numpy(rng.permutation(len(tx)))
        for b in torch.split(idx, 32):
            h = trunk(tx[b])
            loss = bce(cls_head(h).squeeze(-1), tc[b]) + 0.5 * mse(reg_head(h).squeeze(-1), tr_area[b])
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        with torch.no_grad():
            medic.end_epoch(val_loss=float(mse(reg_head(trunk(vx)).squeeze(-1), va_area)))
    medic.close()
    return medic
