"""Loss rebound: the learning rate jumps 100x at epoch 4 and the loss climbs back up."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(seed=args.seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 14):
        if fault and epoch == 4:
            for group in optimizer.param_groups:
                group["lr"] *= 100
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
