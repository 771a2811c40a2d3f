"""log of a non-positive prediction: a hand-written Poisson loss on a raw output turns NaN."""

import torch
from _data import batches, cli, mlp


def count_data(n=2048, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    rate = torch.exp(0.8 * x[:, 0] - 0.6 * x[:, 1] - 0.3)
    return x, torch.poisson(rate, generator=g).unsqueeze(1)


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = count_data(seed=args.seed)
    model = mlp(x.shape[1], 1, hidden=32)
    with torch.no_grad():
        model[-1].bias.fill_(float(y.mean()) if fault else float(y.mean().log()))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 6):
        total = n = 0
        for xb, yb in batches(x, y, 64, g):
            out = model(xb)
            if fault:
                loss = (out - yb * torch.log(out)).mean()
            else:
                loss = torch.nn.functional.poisson_nll_loss(out, yb, log_input=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()
