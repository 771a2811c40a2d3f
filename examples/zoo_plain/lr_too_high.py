"""Learning rate too high: plain SGD at lr 2.0 on a linear model overshoots further every step (healthy: 0.5)."""

import torch
from _data import batches, cli, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(seed=args.seed)
    model = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0 if fault else 0.5)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 40):
        total = n = 0
        for xb, yb in batches(x, y, 256, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()
