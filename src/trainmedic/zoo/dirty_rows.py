"""Dirty rows in a CSV: three rows have an empty field, pandas reads NaN, and every batch holding one of
them turns the loss NaN.

Practitioner notes 002 and 003: check the data for NaN, None, NaT and "". In watch mode the first NaN step
poisons the weights for good. Forensics bisects the batch and names the three rows (TM313); in heal mode
trainmedic skips the poisoned step and quarantines the rows. The healthy baseline (``--no-fault``) has no empty fields.
"""

import io

import pandas as pd
import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, main, mlp, regression_data


def make_csv(fault: bool, seed: int) -> str:
    x, y = regression_data(n=1000, d=6, seed=seed)
    df = pd.DataFrame(x.numpy(), columns=[f"f{i}" for i in range(6)])
    df["target"] = y.numpy()[:, 0]
    text = df.to_csv(index=False)
    if fault:
        lines = text.splitlines()
        for row in (137, 512, 888):  # blank one field of three rows
            fields = lines[row + 1].split(",")
            fields[2] = ""
            lines[row + 1] = ",".join(fields)
        text = "\n".join(lines) + "\n"
    return text


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 6) -> Result:
    torch.manual_seed(seed)
    df = pd.read_csv(io.StringIO(make_csv(fault, seed)))
    x = torch.tensor(df.drop(columns="target").to_numpy(), dtype=torch.float32)
    y = torch.tensor(df["target"].to_numpy(), dtype=torch.float32).unsqueeze(1)
    dataset = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.MSELoss()
    medic = Medic(model, optimizer, mode=mode, console=console, loss_fn=loss_fn)  # loss_fn: forensics can replay
    for _epoch in range(epochs):
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        medic.end_epoch()
        if medic.should_stop:
            break
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)
