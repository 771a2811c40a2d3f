"""argparse, a module from the script's folder, __main__ guard, DataLoader workers, ReduceLROnPlateau."""

import argparse

import torch
from helper_mod import Squares

import trainmedic


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--log", action="store_true", help="report the validation loss with trainmedic.log")
    args = p.parse_args()
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(Squares(256), batch_size=32, shuffle=True, num_workers=args.workers)
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    for epoch in range(args.epochs):
        for x, y in loader:
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = float(loss.detach())
        if args.log:
            trainmedic.log(val_loss=val)
        else:
            sched.step(val)
        print(f"epoch {epoch} argv-ok name={__name__}")


if __name__ == "__main__":
    main()
