"""Dirty rows in a CSV: three rows have an empty field, pandas reads NaN, the loss turns NaN."""

import io

import pandas as pd
import torch
from _data import cli, mlp, regression_data


def make_csv(fault, seed):
    x, y = regression_data(n=1000, d=6, seed=seed)
    df = pd.DataFrame(x.numpy(), columns=[f"f{i}" for i in range(6)])
    df["target"] = y.numpy()[:, 0]
    text = df.to_csv(index=False)
    if fault:
        lines = text.splitlines()
        for row in (137, 512, 888):
            fields = lines[row + 1].split(",")
            fields[2] = ""
            lines[row + 1] = ",".join(fields)
        text = "\n".join(lines) + "\n"
    return text


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    df = pd.read_csv(io.StringIO(make_csv(fault, args.seed)))
    x = torch.tensor(df.drop(columns="target").to_numpy(), dtype=torch.float32)
    y = torch.tensor(df["target"].to_numpy(), dtype=torch.float32).unsqueeze(1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.MSELoss()
    for epoch in range(args.epochs or 6):
        total = n = 0
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()
