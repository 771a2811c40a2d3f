"""A training script that fails with its own error after a few steps."""

import torch


def train():
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step}", flush=True)
    raise ValueError("the script's own error")


if __name__ == "__main__":
    train()
