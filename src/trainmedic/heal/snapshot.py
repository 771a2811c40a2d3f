"""In-memory snapshots of everything a rollback must restore.

A snapshot holds copies (not references) of the model's state, the optimizer's state (Adam's moments
included), the scheduler, the GradScaler, every RNG the run draws from, and the Medic's detector state.
They are taken only while the run is healthy, so a rollback always lands on a good state.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _clone_tree(obj: Any) -> Any:
    """Deep copy with tensors cloned (detached), so later in-place updates cannot reach the copy."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone_tree(v) for v in obj)
    return copy.deepcopy(obj)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Snapshot:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scaler: dict[str, Any] | None
    rng: dict[str, Any]
    monitor: Any  # the Medic's detector state at that step
    lr_factor: float  # cumulative heal lr factor in force when the snapshot was taken
    loss: float  # smoothed loss at that step

    @classmethod
    def take(cls, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, scaler: Any, monitor: Any, lr_factor: float, loss: float) -> Snapshot:
        return cls(
            step=step,
            model=_clone_tree(model.state_dict()),
            optimizer=_clone_tree(optimizer.state_dict()),
            scheduler=_clone_tree(scheduler.state_dict()) if scheduler is not None else None,
            scaler=_clone_tree(scaler.state_dict()) if scaler is not None else None,
            rng=rng_state(),
            monitor=copy.deepcopy(monitor),
            lr_factor=lr_factor,
            loss=loss,
        )

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: Any) -> Any:
        """Load the snapshot into the live objects; returns a fresh copy of the saved monitor.

        Copies are loaded, never the snapshot's own tensors, so the snapshot can be used again.
        """
        model.load_state_dict(self.model)
        optimizer.load_state_dict(_clone_tree(self.optimizer))
        if scheduler is not None and self.scheduler is not None:
            scheduler.load_state_dict(_clone_tree(self.scheduler))
        if scaler is not None and self.scaler is not None:
            scaler.load_state_dict(_clone_tree(self.scaler))
        set_rng_state(self.rng)
        return copy.deepcopy(self.monitor)
