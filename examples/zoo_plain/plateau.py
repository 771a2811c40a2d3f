"""Plateau: Adam at a constant, too high learning rate settles at a noise floor and stays there.

The healthy baseline (``--no-fault``) lowers the learning rate with ReduceLROnPlateau.
"""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = regression_data(n=4096, seed=args.seed, noise=0.3)
    x_val, y_val = regression_data(n=1024, seed=args.seed, noise=0.3, split="val")
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    scheduler = None if fault else torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=2)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 20):
        for xb, yb in batches(x, y, 64, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), y_val))
        if scheduler is not None:
            scheduler.step(val_loss)
        print(f"epoch {epoch}: validation loss {val_loss:.4g}")


if __name__ == "__main__":
    main()
