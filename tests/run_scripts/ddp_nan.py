"""Two-process DDP on gloo: rank 1 alone sees a NaN in its batch at step NAN_STEP."""

import json
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

NAN_STEP = 12
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DDP(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
applied, identical = [], []
for step in range(30):
    x = torch.randn(16, 8, generator=g)
    y = 2 * x[:, :1]
    if rank == 1 and step == NAN_STEP:
        x[3, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    applied.append(any(not torch.equal(b, p) for b, p in zip(before, model.parameters())))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    both = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(both, flat)
    identical.append(all(torch.equal(both[0], t) for t in both))
finite = bool(torch.isfinite(flat).all())
with open(os.path.join(os.environ.get("RESULT_DIR", "."), f"result{rank}.json"), "w") as fh:
    json.dump({"rank": rank, "applied": applied, "identical": identical, "finite": finite}, fh)
dist.destroy_process_group()
