"""Plateau: SGD at a constant, slightly too high learning rate settles at a noise floor."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(n=1024, seed=args.seed, noise=0.05)
    x_val, y_val = regression_data(n=512, seed=args.seed + 1, noise=0.05)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or (30 if fault else 6)):
        for xb, yb in batches(x, y, 16, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), y_val))
        print(f"epoch {epoch}: validation loss {val_loss:.4g}")


if __name__ == "__main__":
    main()
