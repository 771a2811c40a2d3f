"""The learning-rate range test (Smith 2017), with a suggestion rule chosen on evidence, and TM209.

    res = trainmedic.lr_find(model, optimizer, loss_fn, loader)
    print(res.suggestion, res.lr_diverged)
    for f in res.findings:          # TM209 when the optimizer's lr is past divergence or far below
        print(f)

The test trains deep copies of the model and the optimizer (the originals, their state and the global
RNG are untouched) for ``num_iter`` steps while the learning rate grows exponentially from ``start_lr``
to ``end_lr``, and stops early once the loss diverges (its bias-corrected running mean exceeds
``diverge`` times its best, or the loss is NaN/Inf).

The suggestion rule
-------------------
Learning-rate finders disagree on how to turn the curve into one number, and users complain about each:

* the *steepest slope* (pytorch-lr-finder, Lightning's ``suggestion()``) differentiates the raw or
  EMA-smoothed curve point by point; it is tricked by noise and early spikes (Lightning #1767,
  pytorch-lr-finder #86 and #106, neural_prophet #892: "strongly dependent on the range and the seed"),
  Lightning took the gradient against the step index instead of log(lr) (Lightning #14248, #21171), and
  its EMA started from 0 and lagged (Lightning #14167, #21141);
* fastai's default is now ``valley`` rather than ``steep``/``minimum`` (fastai #3408), a point inside the
  longest descending stretch of the curve.

Here the curve is smoothed without lag (a centered moving average over ~0.4 decades, applied after the
run, not an EMA), slopes are taken against log10(lr), and four candidates are computed: ``steepest``
(the most negative slope before the minimum), ``valley`` (fastai's rule on the smoothed curve),
``minimum/10`` (fastai's old rule of thumb) and ``minimum/3`` (half a decade below the rate at the lowest
smoothed loss). ``benchmarks/lr_find.py`` trains each problem at each candidate and at a 7-point grid
1e-5..1e1 with a constant rate. On the four problems the rule was chosen on (SGD+momentum and Adam, MLPs
and a CNN), the best constant rate sat 2-4x below the curve's minimum: ``valley`` and ``minimum/10``
landed 3-10x too low (up to 11x the best grid loss on the CNN), ``steepest`` was thrown off by noise
(3.9e-5 on one seed). ``minimum/3`` was within 10 % everywhere, and on two of three held-out problems.
The third (plain SGD without momentum, which learns little in 100 steps) showed the failure mode all
rules share: when the curve barely dips, its minimum is noise. Hence the confidence check: the dip of the
smoothed curve is measured in standard errors of its residual noise (``valley_z``); below ``min_z`` (5)
the suggestion falls back to ``minimum/10``, ``confident`` is False and TM209 is not judged. With it the
suggestion came within 10 % of the best grid rate on all 9 problems, including 2 added after the check
(worst 1.08x); the table is printed by the benchmark. The default is therefore ``rule="minimum/3"``.
It assumes a constant rate or a gentle decay; for one-cycle schedules, whose peak may be higher, read
``lr_min_loss`` and ``lr_diverged`` directly.

TM209 fires when the optimizer's configured lr is at or past ``lr_diverged`` (the first rate after the
minimum at which the smoothed loss has given back half of its progress, or the early-stop rate), or
more than ``far_below`` (100x) below the suggestion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainmedic.findings import Finding
from trainmedic.replay import call_model, copy_for_replay, split_batch

RULES = ("minimum/3", "valley", "steepest", "minimum/10")


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # raw loss at each rate (before the step taken at that rate)
    smoothed: list[float]  # centered moving average (what the suggestion reads)
    suggestion: float | None
    rule: str
    candidates: dict[str, float | None]
    lr_min_loss: float | None  # the rate at the lowest smoothed loss
    lr_diverged: float | None  # the divergence point (None: not reached in the range)
    configured_lr: float | None
    stopped_early: bool
    valley_z: float = math.nan  # the dip of the curve in standard errors: below min_z it is not trusted
    confident: bool = True  # False: the curve was too flat or noisy; the suggestion fell back to minimum/10
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed, "suggestion": self.suggestion,
                "rule": self.rule, "candidates": self.candidates, "lr_min_loss": self.lr_min_loss,
                "lr_diverged": self.lr_diverged, "configured_lr": self.configured_lr,
                "stopped_early": self.stopped_early, "valley_z": self.valley_z, "confident": self.confident,
                "findings": [f.to_dict() for f in self.findings]}

    def plot(self, ax: Any = None) -> Any:
        """Plot the curve with the suggestion (needs matplotlib)."""
        if ax is None:
            import matplotlib.pyplot as plt  # optional dependency; not needed when an axis is given

            ax = plt.gca()
        ax.plot(self.lrs, self.losses, alpha=0.3, label="loss")
        ax.plot(self.lrs, self.smoothed, label="smoothed")
        if self.suggestion:
            ax.axvline(self.suggestion, color="red", linestyle="--", label=f"{self.rule}: {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend()
        return ax


def _centered_mean(x: np.ndarray, half: int) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(len(x)):
        lo, hi = max(0, i - half), min(len(x), i + half + 1)
        out[i] = np.mean(x[lo:hi])
    return out


def _valley(losses: np.ndarray) -> int:
    """fastai's ``valley``: the longest strictly descending subsequence, a point half-way down it."""
    n = len(losses)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return int(max_start + int(sections) + int(sections / 2))


def suggest(lrs: list[float], losses: list[float], *, window_decades: float = 0.4) -> dict[str, Any]:
    """Candidates and landmarks from a range-test curve (pure function of the recorded curve)."""
    lr = np.asarray(lrs, dtype=float)
    raw = np.asarray(losses, dtype=float)
    finite = np.isfinite(raw)
    if finite.sum() < 5:
        return {"smoothed": raw.tolist(), "candidates": dict.fromkeys(RULES), "lr_min_loss": None,
                "lr_diverged": None, "valley_z": 0.0}
    n = int(np.argmax(~finite)) if not finite.all() else len(raw)  # the curve up to the first NaN/Inf
    lr, raw = lr[:n], raw[:n]
    log_lr = np.log10(lr)
    per_decade = (n - 1) / max(log_lr[-1] - log_lr[0], 1e-12)
    half = max(1, int(round(window_decades * per_decade / 2)))
    sm = _centered_mean(raw, half)
    i_min = int(np.argmin(sm))
    skip = min(half, max(i_min - 1, 0))  # the first points carry the smoothing's edge effect
    cand: dict[str, float | None] = {}
    cand["minimum/3"] = float(lr[i_min] / 10**0.5)
    cand["minimum/10"] = float(lr[i_min] / 10)
    if i_min - skip >= 2:
        slope = np.gradient(sm[: i_min + 1], log_lr[: i_min + 1])
        i_steep = skip + int(np.argmin(slope[skip:]))
        cand["steepest"] = float(lr[i_steep])
    else:
        cand["steepest"] = None
    i_val = _valley(sm)
    cand["valley"] = float(lr[min(i_val, len(lr) - 1)])
    start = float(np.mean(sm[: max(1, half)]))
    progress = start - sm[i_min]
    # How clear is the valley? The dip measured in standard errors of the smoothed curve (residual noise
    # of the raw loss around it, before the minimum, over the window's size).
    noise = float(np.std((raw - sm)[: i_min + 1])) if i_min > 0 else 0.0
    se = noise / math.sqrt(2 * half + 1)
    z = float(progress / se) if se > 0 else (math.inf if progress > 0 else 0.0)
    if i_min <= skip:  # the lowest point is at the very start (within the smoothing's edge): nothing descends
        z = 0.0
    lr_div = None
    if progress > 0:
        above = np.nonzero(sm[i_min:] > sm[i_min] + 0.5 * progress)[0]
        if len(above):
            lr_div = float(lr[i_min + int(above[0])])
    return {"smoothed": sm.tolist() + [math.nan] * (len(losses) - n), "candidates": cand,
            "lr_min_loss": float(lr[i_min]), "lr_diverged": lr_div, "valley_z": z}


def lr_find(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any, loader: Iterable[Any], *,
            start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100, diverge: float = 4.0,
            beta: float = 0.9, rule: str = "minimum/3", configured_lr: float | None = None,
            far_below: float = 100.0, min_z: float = 5.0) -> LRFindResult:
    """Exponential learning-rate range test on copies of ``model`` and ``optimizer``.

    Args:
        loader: an iterable of batches ``(inputs, target)`` or ``(inputs, target, indices)`` (restarted
            when exhausted); ``loss_fn(model(inputs), target)`` is minimized.
        start_lr, end_lr, num_iter: the exponential schedule; param groups keep their lr ratios.
        diverge: stop once the bias-corrected running mean of the loss exceeds this multiple of its best.
        beta: the running mean's factor (only for the stop; the suggestion reads a centered average).
        rule: which candidate becomes ``suggestion``: "minimum/3" (default, see the module docs), "valley",
            "steepest" or "minimum/10".
        configured_lr: the rate to judge for TM209 (default: the optimizer's first group's lr).
        far_below: TM209 when the configured rate is this many times below the suggestion.
        min_z: a valley shallower than this many standard errors is not trusted: ``confident`` is False,
            the suggestion falls back to ``minimum/10`` and TM209 is not judged (raise ``num_iter``).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if not (0 < start_lr < end_lr):
        raise ValueError("need 0 < start_lr < end_lr")
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        raise ValueError("lr_find needs a torch.optim.Optimizer")
    base = float(groups[0]["lr"]) or 1.0
    ratios = [float(g["lr"]) / base if base else 1.0 for g in groups]
    configured = float(groups[0]["lr"]) if configured_lr is None else float(configured_lr)
    m, opt, lf = copy_for_replay(model, optimizer, loss_fn if isinstance(loss_fn, nn.Module) else None)
    lf = lf if lf is not None else loss_fn
    m.train()
    cuda = sorted({p.device.index or 0 for p in m.parameters() if p.device.type == "cuda"})
    sweep = Sweep(start_lr, end_lr, num_iter, diverge=diverge, beta=beta)
    with torch.random.fork_rng(devices=cuda):
        it = iter(loader)
        for i in range(num_iter):
            lr = sweep.lr(i)
            for g, r in zip(opt.param_groups, ratios):
                if isinstance(g["lr"], torch.Tensor):
                    g["lr"].fill_(lr * r)
                else:
                    g["lr"] = lr * r
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            b = split_batch(batch)
            if b is None:
                raise ValueError("lr_find needs batches (inputs, target) or (inputs, target, indices)")
            opt.zero_grad(set_to_none=True)
            loss = lf(call_model(m, b.inputs), b.target)
            if loss.numel() != 1:
                loss = loss.mean()
            if sweep.record(lr, float(loss.detach())):
                break
            loss.backward()
            opt.step()
    return judge_curve(sweep.lrs, sweep.losses, stopped=sweep.stopped, configured_lr=configured, rule=rule,
                       far_below=far_below, min_z=min_z)


class Sweep:
    """The exponential schedule and the divergence stop of a range test, shared by :func:`lr_find` and
    ``trainmedic lr-find`` (which sweeps the script's own optimizer from its step hooks).

    ``lr(i)`` is the rate of point ``i``; ``record(lr, loss)`` adds the loss measured before the step at
    that rate and says whether to stop: the loss is NaN/Inf, or (from the 11th point on) the bias-corrected
    running mean exceeds ``diverge`` times its best.
    """

    def __init__(self, start_lr: float, end_lr: float, num_iter: int, *, diverge: float = 4.0,
                 beta: float = 0.9) -> None:
        if not (0 < start_lr < end_lr):
            raise ValueError("need 0 < start_lr < end_lr")
        if num_iter < 2:
            raise ValueError("a range test needs at least 2 steps")
        self.start_lr, self.end_lr, self.num_iter = start_lr, end_lr, num_iter
        self.diverge, self.beta = diverge, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.stopped = False  # stopped early: diverged or non-finite
        self.avg, self.best = 0.0, math.inf

    def lr(self, i: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / max(self.num_iter - 1, 1))

    @property
    def done(self) -> bool:
        return self.stopped or len(self.losses) >= self.num_iter

    def record(self, lr: float, loss: float) -> bool:
        """Add one point; True when the sweep should stop here (diverged, non-finite, or the last point)."""
        i = len(self.losses)
        self.lrs.append(lr)
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.stopped = True
            return True
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        corrected = self.avg / (1 - self.beta ** (i + 1))
        self.best = min(self.best, corrected)
        if i >= 10 and corrected > self.diverge * self.best:
            self.stopped = True
        return self.done


def judge_curve(lrs: list[float], losses: list[float], *, stopped: bool, configured_lr: float | None,
                rule: str = "minimum/3", far_below: float = 100.0, min_z: float = 5.0) -> LRFindResult:
    """The suggestion, its confidence and TM209 from a recorded curve (see the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    s = suggest(lrs, losses)
    cand = s["candidates"]
    confident = bool(s["valley_z"] >= min_z)
    used = rule if confident or rule == "minimum/10" else "minimum/10"
    suggestion = cand.get(used)
    lr_div = s["lr_diverged"]
    if lr_div is None and stopped and lrs:
        lr_div = lrs[-1]
    res = LRFindResult(list(lrs), list(losses), s["smoothed"], suggestion, used, cand, s["lr_min_loss"], lr_div,
                       configured_lr, stopped, float(s["valley_z"]), confident)
    res.findings = _tm209(res, far_below) if confident else []
    return res


def _tm209(res: LRFindResult, far_below: float) -> list[Finding]:
    lr = res.configured_lr
    if lr is None or not res.suggestion:
        return []
    ev = {"configured_lr": lr, "suggestion": res.suggestion, "rule": res.rule, "lr_diverged": res.lr_diverged,
          "lr_min_loss": res.lr_min_loss, "candidates": res.candidates}
    if res.lr_diverged is not None and lr >= res.lr_diverged:
        return [Finding("TM209", f"the learning rate {lr:.3g} is past the divergence point of the range test "
                        f"({res.lr_diverged:.3g}); suggested {res.suggestion:.3g}", evidence=ev)]
    if lr * far_below < res.suggestion:
        return [Finding("TM209", f"the learning rate {lr:.3g} is {res.suggestion / lr:.0f}x below the range test's "
                        f"suggestion {res.suggestion:.3g}: training will crawl", evidence=ev)]
    return []


__all__ = ["LRFindResult", "Sweep", "judge_curve", "lr_find", "suggest"]
