"""A small MLP trained through torch.compile: `compiled.py function|method BACKEND [--relu]`.

`function` is `cmodel = torch.compile(model)`, `method` is `model.compile()`. The last line prints how many
graphs dynamo compiled, so a run that makes it recompile (a hook added inside the compiled model) shows.
"""

import sys

import torch

how, backend = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
if how == "function":
    run_model = torch.compile(model, backend=backend)
else:
    model.compile(backend=backend)
    run_model = model
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x = torch.randn(64, 8)
y = x[:, :1] * 2 + 0.1
for step in range(30):
    loss = torch.nn.functional.mse_loss(run_model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 10 == 0:
        print(f"step {step} loss {loss.item():.5f}")
with torch.no_grad():
    print(f"eval loss {torch.nn.functional.mse_loss(run_model(x), y).item():.5f}")
print("graphs", dict(torch._dynamo.utils.counters["stats"]))
