"""Saves the whole model object (not its state_dict) after each epoch, as many example scripts do, then
loads it back; a hook left on the model by an instrumentation would make pickling fail."""

import copy
import io
import pickle
import sys

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(32, 4), torch.randn(32, 1)
for epoch in range(3):
    for _ in range(10):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    buf = io.BytesIO()
    torch.save(model, buf)
    best = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    same = all(torch.equal(a, b) for a, b in zip(loaded.parameters(), restored.parameters()))
    print(f"epoch {epoch} saved, reloaded same={same}, hooks={len(loaded._forward_pre_hooks)}")
sys.exit(0)
