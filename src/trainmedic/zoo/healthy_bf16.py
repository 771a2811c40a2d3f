"""Healthy control: bfloat16 autocast on the CPU (no GradScaler needed with bf16).

Lower precision makes the loss and gradient norms noisier; trainmedic must stay quiet. ``fault`` is ignored.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, classification_data, main, mlp


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 6) -> Result:
    torch.manual_seed(seed)
    x, y = classification_data(seed=seed)
    model = mlp(x.shape[1], 4, hidden=128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    medic = Medic(model, optimizer, mode=mode, console=console)
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 64, g):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits.float(), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)
