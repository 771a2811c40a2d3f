"""Overfitting: a wide MLP memorises 96 noisy rows; the validation loss turns up."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(n=96 if fault else 2000, seed=args.seed, noise=0.5)
    x_val, y_val = regression_data(n=512, seed=args.seed, split="val", noise=0.5)
    model = mlp(x.shape[1], 1, hidden=256)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or (60 if fault else 4)):
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val = float(loss_fn(model(x_val), y_val))
        print(f"epoch {epoch}: validation loss {val:.4g}")


if __name__ == "__main__":
    main()
