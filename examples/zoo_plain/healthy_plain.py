"""Healthy control: plain Adam on a smooth regression problem, with a validation loss each epoch."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    torch.manual_seed(args.seed)
    x, y = regression_data(seed=args.seed)
    x_val, y_val = regression_data(n=512, seed=args.seed, split="val")
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 10):
        model.train()
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), y_val))
        print(f"epoch {epoch}: validation loss {val_loss:.4g}")


if __name__ == "__main__":
    main()
