"""Learning rate too high: SGD with momentum at lr 0.3 diverges (healthy baseline: lr 0.03)."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(seed=args.seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3 if fault else 0.03, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 8):
        total = n = 0
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()
