"""Sampled activation statistics (TM311): the share of never-positive units of each ReLU layer.

Armed after a step, it registers forward hooks on the model's ``nn.ReLU`` modules (``Module.register_forward_hook``,
public API) for the next training forward pass only; ``collect()`` removes them and reads the numbers in
one device-to-host copy. One sampled forward pass every ``Thresholds.activation_every`` steps, so the cost
per step is nil in between.
"""

from __future__ import annotations

from typing import Any

import torch

from trainmedic.replay import OwnHook


class ActivationSampler:
    def __init__(self, model: torch.nn.Module) -> None:
        self.relus = [(name or "relu", m) for name, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
        self._handles: list[Any] = []
        self._stats: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self._calls: dict[str, int] = {}

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self) -> None:
        if self.armed or not self.relus:
            return
        self._calls = {}
        for name, module in self.relus:
            self._handles.append(module.register_forward_hook(OwnHook(self._hook(name))))

    def _hook(self, name: str) -> Any:
        def sample(module: torch.nn.Module, args: Any, output: Any) -> None:
            if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor) or output.dim() < 2:
                return  # evaluation passes and odd outputs are not training activations
            n = self._calls[name] = self._calls.get(name, 0) + 1
            site = name if n == 1 else f"{name}#{n}"  # a ReLU module reused at several depths
            with torch.no_grad():
                out = output.detach()
                units = out.transpose(0, 1).reshape(out.shape[1], -1) if out.dim() > 2 else out.t()
                alive = (units > 0).any(dim=1)
                self._stats.append((site, 1.0 - alive.float().mean(), torch.isfinite(out).all()))

        return sample

    def collect(self) -> dict[str, float]:
        """Stop sampling; the dead share per layer site seen (finite outputs only)."""
        self.disarm()
        stats, self._stats = self._stats, []
        if not stats:
            return {}
        values = torch.stack([torch.stack([d.float(), f.float()]) for _, d, f in stats]).tolist()
        return {site: dead for (site, _, _), (dead, finite) in zip(stats, values) if finite}

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
