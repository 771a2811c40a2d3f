"""Collecting each training step's target statistics for TM116 (ordered batches), without a host sync.

Every step whose batch (or observed loss call) shows a target of one value per row, the batch's size, the
target's mean and its variance within the batch are computed on the target's device and kept there; at the
few judging steps (:data:`trainmedic.rules.ordering.JUDGE_AT`) they are copied to the host in one transfer
and judged by :func:`trainmedic.rules.ordering.judge_order`. Collection stops after the last judging step
or after a finding: the cost is a ``var_mean`` on one small tensor per step for the first few hundred
steps, and four copies in all.
"""

from __future__ import annotations

from typing import Any

import torch

from trainmedic.rules.ordering import JUDGE_AT, ORDERED_BATCHES, describe, judge_order


def target_rows(target: Any) -> torch.Tensor | None:
    """The target as one value per row (a ``(B,)`` or ``(B, 1)`` tensor), else ``None``."""
    if not isinstance(target, torch.Tensor) or target.dim() == 0 or target.dim() > 2 or target.shape[0] < 2:
        return None
    if target.dim() == 2 and target.shape[1] != 1:
        return None
    if target.is_complex():
        return None
    return target.detach().reshape(-1)


class BatchOrder:
    """Per-step target statistics over the first steps, judged for TM116 at :data:`JUDGE_AT`."""

    def __init__(self) -> None:
        self.stats: list[torch.Tensor] = []  # one (n, mean, var) tensor per step, on the target's device
        self.done = False
        self._last: Any = None  # the last target seen: a front end may hand the same one over again

    def see(self, step: int, target: Any, report: Any) -> None:
        if self.done or target is self._last:
            return
        self._last = target
        y = target_rows(target)
        if y is None:
            return
        y = y.float()
        var, mean = torch.var_mean(y)
        n = torch.full_like(mean, float(y.shape[0]))
        self.stats.append(torch.stack([n, mean, var]))
        if len(self.stats) in JUDGE_AT:
            self._judge(step, report)
        if len(self.stats) >= JUDGE_AT[-1]:
            self.done = True
            self.stats.clear()

    def _judge(self, step: int, report: Any) -> None:
        rows = torch.stack([s.to(self.stats[0].device) for s in self.stats]).cpu().double().numpy()
        j = judge_order(rows[:, 0], rows[:, 1], rows[:, 2])
        if j is None:
            return
        self.done = True
        self.stats.clear()
        report(ORDERED_BATCHES.code, describe(j), step=step,
               evidence={"within_over_pooled_variance": j.within_ratio, "von_neumann_ratio": j.von_neumann,
                         "single_label_batches": j.pure_share, "steps": j.steps, "batch_size": j.batch_size},
               key=ORDERED_BATCHES.code)
