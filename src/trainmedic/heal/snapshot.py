"""In-memory snapshots of the torch state a rollback must restore, and the RNG states.

A snapshot holds copies (not references) of the model's state, the optimizer's state (Adam's moments
included), the scheduler, the GradScaler and every RNG the run draws from. The engine's side of a snapshot
(the step window, the learning-rate factor: plain data) is catalogued by the heal policy under the same
step. Snapshots are taken only while the run is healthy, so a rollback always lands on a good state.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def clone_tree(obj: Any) -> Any:
    """Deep copy with tensors cloned (detached), so later in-place updates cannot reach the copy."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clone_tree(v) for v in obj)
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


def rng_to_plain(state: dict[str, Any]) -> dict[str, Any]:
    """RNG states as tensors, tuples and numbers only (NumPy's and Python's key arrays become int64 tensors),
    so that a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    out = dict(state)
    np_state = state.get("numpy")
    if np_state is not None:
        name, keys, pos, has_gauss, cached = np_state
        out["numpy"] = (str(name), torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss),
                        float(cached))
    py = state.get("python")
    if py is not None:
        version, internal, gauss = py
        out["python"] = (version, torch.tensor(internal, dtype=torch.int64), gauss)
    return out


def rng_from_plain(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    np_state = state.get("numpy")
    if np_state is not None:
        name, keys, pos, has_gauss, cached = np_state
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        out["numpy"] = (name, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached))
    py = state.get("python")
    if py is not None:
        version, internal, gauss = py
        internal = internal.tolist() if isinstance(internal, torch.Tensor) else internal
        out["python"] = (version, tuple(int(v) for v in internal), gauss)
    return out


@dataclass
class Snapshot:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scaler: dict[str, Any] | None
    rng: dict[str, Any]

    @classmethod
    def take(cls, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: Any) -> Snapshot:
        return cls(
            step=step,
            model=clone_tree(model.state_dict()),
            optimizer=clone_tree(optimizer.state_dict()),
            scheduler=clone_tree(scheduler.state_dict()) if scheduler is not None else None,
            scaler=clone_tree(scaler.state_dict()) if scaler is not None else None,
            rng=rng_state(),
        )

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: Any) -> None:
        """Load the snapshot into the live objects. Copies are loaded, never the snapshot's own tensors,
        so the snapshot can be used again."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(clone_tree(self.optimizer))
        if scheduler is not None and self.scheduler is not None:
            scheduler.load_state_dict(clone_tree(self.scheduler))
        if scaler is not None and self.scaler is not None:
            scaler.load_state_dict(clone_tree(self.scaler))
        set_rng_state(self.rng)

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint-safe: tensors, numbers, strings and containers only."""
        return {"step": self.step, "model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "scaler": self.scaler, "rng": rng_to_plain(self.rng)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Snapshot:
        return cls(step=int(state["step"]), model=state["model"], optimizer=state["optimizer"],
                   scheduler=state.get("scheduler"), scaler=state.get("scaler"), rng=rng_from_plain(state["rng"]))
