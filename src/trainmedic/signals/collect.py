"""Per-step signal collection: every number the detectors need, for one device-to-host sync.

The loss, the per-parameter gradient norms (``torch._foreach_norm``), the stale-gradient probe and the
sampled update norm are stacked on the device and copied to the host in a single ``tolist()``.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch

from trainmedic.signals import clipping, players
from trainmedic.signals.step import StepSignals

_DIST_AVAILABLE = torch.distributed.is_available()


def _agree_across_ranks(packed: torch.Tensor) -> torch.Tensor:
    """Under torch.distributed, average the signals over all ranks (one small all-reduce per step).

    Every rank then sees the same numbers and so reaches the same verdict: a NaN on one rank becomes a
    NaN on all of them, and all ranks skip or roll back together.
    """
    if not (_DIST_AVAILABLE and torch.distributed.is_initialized()) or torch.distributed.get_world_size() == 1:
        return packed
    dist = torch.distributed
    if dist.get_backend() == "nccl" and packed.device.type == "cpu":
        packed = packed.cuda()
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed / dist.get_world_size()


def _release(ident: int) -> None:
    """What a collector holds in module state: its use of the clip watcher and its place among the players."""
    clipping.unwatch()
    players.forget(ident)


class Collector:
    """Knows which parameters to watch and turns one step into :class:`StepSignals`."""

    def __init__(self, params: list[torch.nn.Parameter], names: list[str]) -> None:
        self.params = params
        self.names = names
        self.backwards = 0  # backward passes seen by the probe since the last step
        self._stale: torch.Tensor | None = None  # smallest |grad| found by a backward since the last step
        self._zeroed = False  # a backward since the last step found the gradient reset to None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._before: list[torch.Tensor] | None = None
        self._probe_handle = None
        self.clip_bound: float | None = None  # the norm bound the script clips these parameters to (TM303)
        clipping.watch()
        # A collector that is never detached (a Medic nobody closes) must not keep torch.nn.utils' clip
        # functions wrapped and its id among the players for the rest of the process: released when collected.
        self._release = weakref.finalize(self, _release, id(self))

    # -- stale-gradient probe (TM310) ---------------------------------------------------------------
    def attach_probe(self) -> None:
        """Hook the smallest parameter that has a gradient; its hook sees ``.grad`` before accumulation."""
        candidates = [p for p in self.params if p.grad is not None]
        if not candidates or self._probe_handle is not None:
            return
        probe = min(candidates, key=lambda p: p.numel())

        def hook(grad: torch.Tensor) -> None:
            # Stale means: no backward since the last step found the gradient reset. Any backward that
            # finds it None or zero clears that, so other models' backwards in between (a GAN's
            # generator reaching the discriminator) do not count, and accumulation after a reset is fine.
            self.backwards += 1
            if self._zeroed:
                return
            g = probe.grad
            if g is None:
                self._zeroed = True
                self._stale = None
                return
            size = g.detach().abs().sum().float()
            self._stale = size if self._stale is None else torch.minimum(self._stale, size)

        self._probe_handle = probe.register_hook(hook)

    @property
    def probing(self) -> bool:
        return self._probe_handle is not None

    def detach(self) -> None:
        self._release()  # runs once: a second detach, or the collection after it, does nothing
        if self._probe_handle is not None:
            self._probe_handle.remove()
            self._probe_handle = None

    def grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.params if p.grad is not None]

    # -- update/weight ratio (TM312), sampled ------------------------------------------------------
    def before_update(self) -> None:
        self._before = torch._foreach_mul([p.detach() for p in self.params], 1.0)

    def after_update(self) -> None:
        if self._before is None:
            return
        now = [p.detach() for p in self.params]
        diff = torch._foreach_sub(now, self._before)
        upd = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(diff)).float())
        w = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(now)).float())
        self._pending = (upd, w)
        self._before = None

    # -- the one sync ---------------------------------------------------------------------------------
    def collect(self, loss: torch.Tensor) -> StepSignals:
        return self.read(self.launch(loss))

    def launch(self, loss: torch.Tensor) -> tuple[torch.Tensor, list[int], bool, bool]:
        """Queue the step's signals on the device, without a sync.

        Returns the packed values, which parameters had gradients, and whether the stale-gradient probe
        and a sampled update norm are in the pack. The probe and sample are consumed here, so an update
        sampled between ``launch`` and ``read`` belongs to the next step.
        """
        present = [i for i, p in enumerate(self.params) if p.grad is not None]
        grads = [self.params[i].grad for i in present]
        values = [loss.detach().reshape(())]
        if grads:
            values += torch._foreach_norm(grads)
        has_stale, has_update = self._stale is not None, self._pending is not None
        if has_stale:
            values.append(self._stale)
        if has_update:
            values.extend(self._pending)
        self._stale, self._zeroed, self._pending = None, False, None
        try:
            packed = torch.stack(values)  # one op in the common case: same device and dtype
        except RuntimeError:  # mixed dtypes or parameters spread over devices
            device = values[0].device
            packed = torch.stack([v.to(device=device, dtype=torch.float32) for v in values])
        if packed.dtype != torch.float32 and packed.dtype != torch.float64:
            packed = packed.float()
        return packed, present, has_stale, has_update

    def read(self, launched: tuple[torch.Tensor, list[int], bool, bool]) -> StepSignals:
        """The one device-to-host copy, and the numbers unpacked."""
        packed, present, has_stale, has_update = launched
        packed = _agree_across_ranks(packed)
        host = packed.tolist()
        loss_v = host[0]
        k = len(present)
        present_norms = host[1 : 1 + k]
        rest = host[1 + k :]
        norms = [0.0] * len(self.params)
        for i, v in zip(present, present_norms):
            norms[i] = v
        stale = rest.pop(0) if has_stale else None
        update_norm, weight_norm = (rest[0], rest[1]) if has_update else (None, None)
        grad_norm = math.sqrt(sum(v * v for v in present_norms)) if present_norms else 0.0
        if present_norms and not math.isfinite(grad_norm):
            grad_norm = math.nan if any(math.isnan(v) for v in present_norms) else math.inf
        if self.clip_bound is None and self._release.alive:
            self.clip_bound = clipping.bound_for(self.params)  # sticky: a script that clips keeps clipping
        return StepSignals(loss_v, grad_norm, norms, stale, update_norm, weight_norm, self.backwards,
                           clip_bound=self.clip_bound, players=players.stepped(id(self)))

    def reset_backwards(self) -> None:
        self.backwards = 0

    # -- state (checkpoints) --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The update norm sampled at the last step, which the next step reports (exact resume)."""
        return {"pending": list(self._pending) if self._pending is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pending = state.get("pending")
        self._pending = tuple(pending) if pending is not None else None  # type: ignore[assignment]
