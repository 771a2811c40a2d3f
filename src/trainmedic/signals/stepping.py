"""What kind of steps the optimizer takes, read once from its class and parameter groups.

Three facts about an optimizer change how a run is read and repaired:

* direct steps (plain SGD, no momentum): the step is the rate times this step's gradient, so the loss
  answers a rate change at once (the heal probe reads it so, :mod:`trainmedic.heal.lr_probe`);
* momentum steps (SGD with momentum): the state is the weights and one buffer, so a copy taken along a heal
  probe's ramp can be continued at a lower rate at once (:meth:`~trainmedic.heal.policy.Policy`);
* memory: how many steps a gradient keeps moving the weights, the time constant ``1 / (1 - beta)`` of the
  first moment (SGD's or RMSprop's ``momentum``, Adam's ``beta1``). With momentum 0.9 one spiked batch keeps
  pushing the weights for about ten steps, so the loss shows its echo for as long; TM303 judges whether the
  loss came back only after that echo (:func:`~trainmedic.rules.runtime.judge_gradient_spikes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def direct_steps(optimizer: torch.optim.Optimizer) -> bool:
    """Plain SGD without momentum: its loss answers a rate change at once; momentum or running moments (Adam,
    RMSprop...) answer it with a lag, which the heal probe's reading allows for."""
    return type(optimizer) is torch.optim.SGD and all(not g.get("momentum") for g in optimizer.param_groups)


def momentum_steps(optimizer: torch.optim.Optimizer) -> bool:
    """SGD with momentum: weights and one momentum buffer, no running moments (Adam's second moments, scaled
    to a probe ramp's gradients, would not allow continuing a copy at another rate as simply)."""
    return type(optimizer) is torch.optim.SGD and any(g.get("momentum") for g in optimizer.param_groups)


def memory_steps(optimizer: torch.optim.Optimizer) -> int:
    """Steps over which one gradient keeps moving the weights: ``1 / (1 - beta)`` for the largest first-moment
    coefficient of any group (after that many steps ``beta ** n`` is about ``1/e`` of its push is left), 0
    for an optimizer without one (plain SGD, Adagrad, RMSprop without momentum)."""
    betas = []
    for g in optimizer.param_groups:
        b = g.get("betas")
        try:
            betas.append(float(b[0]) if b is not None else float(g.get("momentum") or 0.0))
        except (TypeError, ValueError, IndexError):  # an optimizer of its own with other hyper-parameters
            betas.append(0.0)
    beta = max(betas, default=0.0)
    return round(1.0 / (1.0 - beta)) if 0.0 < beta < 1.0 else 0


@dataclass(frozen=True)
class Stepping:
    direct: bool = False
    momentum: bool = False
    memory: int = 0

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> Stepping:
        return cls(direct_steps(optimizer), momentum_steps(optimizer), memory_steps(optimizer))


#: nothing known of the optimizer (an engine built without one): no steering shortcut, no echo allowance
UNKNOWN = Stepping()


def raises_by_design(scheduler: object) -> bool:
    """A scheduler whose schedule itself raises the rate mid-run: SGDR's warm restarts
    (``CosineAnnealingWarmRestarts``), ``CyclicLR``'s cycles, ``OneCycleLR``'s climb. Such a raise is the schedule working, not the loop's mistake:
    TM319 does not judge it. After a warm restart the training loss rises as the run leaves its basin and
    falls again as the cycle anneals (``benchmarks/fresh3`` sgdr_imbalanced seed 1: TM319 at every entry
    point on a healthy run, the loss level 0.055 -> 0.10 over the 50 steps after the restart)."""
    sched = torch.optim.lr_scheduler
    return isinstance(scheduler, (sched.CosineAnnealingWarmRestarts, sched.CyclicLR, sched.OneCycleLR))
