"""Corrupted batches: every 97th batch is scaled by 100 and its gradient spikes."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(seed=args.seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(args.epochs or 8):
        total = n = 0
        for xb, yb in batches(x, y, 32, g):
            if fault and step % 97 == 50:
                xb = xb * 100.0
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")
    x_val, y_val = regression_data(n=512, seed=args.seed, split="val")
    with torch.no_grad():
        print(f"validation loss {float(loss_fn(model(x_val), y_val)):.4g}")


if __name__ == "__main__":
    main()
