"""What every zoo script shares: synthetic data, the command line, and the result it returns."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import torch

from trainmedic.medic import Medic


@dataclass
class Result:
    medic: Medic
    final_loss: float  # mean training loss of the last epoch
    val_loss: float | None = None  # validation loss of the final weights, where the script has one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.medic.findings]

    def problems(self) -> list[str]:
        """Codes of warning or error severity: what a healthy run must not have."""
        return [f.code for f in self.medic.findings if f.severity in ("warning", "error")]


def regression_data(n: int = 2048, d: int = 16, seed: int = 0, noise: float = 0.1, split: str = "train"):
    """A smooth nonlinear regression problem (standardized features, unit-scale target).

    ``seed`` picks the function; ``split="val"`` draws fresh rows from the same function.
    """
    w = torch.randn(d, 1, generator=torch.Generator().manual_seed(seed)) / d**0.5
    g = torch.Generator().manual_seed(seed * 7919 + (0 if split == "train" else 1))
    x = torch.randn(n, d, generator=g)
    y = torch.tanh(x @ w) * 2 + 0.5 * torch.sin(x[:, :1] * 2) + noise * torch.randn(n, 1, generator=g)
    return x, y


def classification_data(n: int = 2048, d: int = 20, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=g) * 1.5
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    return x, y


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator):
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def mlp(d_in: int, d_out: int, hidden: int = 64, depth: int = 2, act=torch.nn.ReLU) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [torch.nn.Linear(d, hidden), act()]
        d = hidden
    layers.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*layers)


def main(train, doc: str | None) -> None:
    """The command line every zoo script shares."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--heal", action="store_true", help="let trainmedic repair the run")
    p.add_argument("--no-fault", action="store_true", help="run the healthy baseline of this script")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write findings.json, events.jsonl and report.html here")
    args = p.parse_args()
    res = train(mode="heal" if args.heal else "watch", fault=not args.no_fault, seed=args.seed, console=True)
    print(f"final training loss {res.final_loss:.4g}" + (f", validation loss {res.val_loss:.4g}"
                                                         if res.val_loss is not None else ""))
    for f in res.medic.findings:
        print(f"  {f}")
    if args.out:
        print(f"report: {res.medic.save_report(args.out) / 'report.html'}")
