"""A regression trained with SGD whose loss rises at step 200 in one of two shapes.

``jump``: the target shifts at step 200 (y -> 2y + 3): the loss is thrown up in one step, moves on a
little and then comes back as the model relearns. ``climb``: the learning rate grows 3 % per step from step
200: the loss grows faster and faster until it is not finite. ``healthy``: neither. ``python
rise_shape.py KIND``; ``train(KIND, step)`` takes the optimizer step from ``step(loss)`` (a Medic's).
No trainmedic import.
"""

import sys

import torch
import torch.nn.functional as F


def train(kind: str, step=None) -> None:
    torch.manual_seed(0)
    x = torch.randn(2048, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(2048, 1)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.005)
    step = step(net, opt) if step is not None else (lambda loss: opt.step())
    for t in range(400):
        if kind == "climb" and t >= 200:
            for g in opt.param_groups:
                g["lr"] *= 1.03
        i = torch.randint(0, 2048, (32,))
        target = 2 * y[i] + 3 if kind == "jump" and t >= 200 else y[i]
        loss = F.mse_loss(net(x[i]), target)
        opt.zero_grad()
        loss.backward()
        step(loss)


if __name__ == "__main__":
    train(sys.argv[1])
    print("done")
