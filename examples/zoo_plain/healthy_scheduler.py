"""Healthy control: linear warmup then cosine decay, stepped after every optimizer step."""

import torch
from _data import batches, cli, mlp, regression_data


def main():
    args = cli(__doc__)
    torch.manual_seed(args.seed)
    epochs = args.epochs or 8
    x, y = regression_data(seed=args.seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    steps = epochs * (len(x) // 32)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.05, total_iters=steps // 10)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - steps // 10)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[steps // 10])
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(epochs):
        total = n = 0
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()
