"""The targets of the loss, as plain statistics for the constant-prediction level (signals/levels.py).

On the steps the live checks look at (:func:`trainmedic.observe.live.due`: the first three, then every
200th) the loss graph says which loss the whole loss is (:func:`~trainmedic.observe.graph.root_loss`) and,
read before backward (``trainmedic run``, Lightning, Hugging Face), holds its target. ``Medic`` reads the
graph after backward, when the target is freed: the target then comes from an ``nn`` loss module's call
or from ``medic.step(loss, batch=(x, y))`` (the prediction then from the model's output, when the graph
shows it fed the loss through reshapes only); a functional loss without a batch leaves the level unknown.
Each sample costs one device-to-host copy on those steps only.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainmedic.observe.graph import LossCall, RootLoss
from trainmedic.signals.levels import MAX_COLUMNS

KIND = {"cross_entropy": "classes", "nll_loss": "classes", "binary_cross_entropy": "binary",
        "binary_cross_entropy_with_logits": "binary", "mse_loss": "squared", "poisson_nll_loss": "poisson"}


def observed_pair(root: RootLoss, calls: list[LossCall], batch_target: Any, output: Any = None
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None, bool]:
    """(target, prediction, raw): the root loss's target and prediction, saved in its node (before backward),
    else seen at its call (``raw``: the call's input, logits for cross-entropy), else the batch's target
    with the model's ``output`` as the prediction where the graph shows it is the loss's input up to a
    reshape (``root.from_output``: ``medic.step(loss, batch=(x, y))`` after a functional loss)."""
    if root.target is not None:
        return root.target, root.prediction, False
    names = {root.name, "cross_entropy" if root.name == "nll_loss" else root.name}
    for c in calls:
        if c.name in names and c.target is not None:
            pred = c.input if c.name != "poisson_nll_loss" else None  # its link is in the module's settings
            return c.target, pred, c.name == "cross_entropy"
    target = batch_target if isinstance(batch_target, torch.Tensor) else None
    if target is None or root.prediction is not None or not root.from_output:
        return target, root.prediction, False
    pred = output if isinstance(output, torch.Tensor) and root.name != "poisson_nll_loss" else None
    if pred is not None and root.input_shape is not None and tuple(pred.shape) != root.input_shape:
        pred = pred.reshape(root.input_shape) if pred.numel() == math.prod(root.input_shape) else None
    # cross-entropy: logits, or log-probabilities (log_softmax leaves those unchanged): ``raw`` either way
    return target, pred, root.name == "cross_entropy"


def target_sample(root: RootLoss | None, target: torch.Tensor | None, prediction: torch.Tensor | None = None,
                  raw: bool = False) -> dict[str, Any] | None:
    """One batch's statistics of ``target`` for ``root``'s loss (plain numbers), or None; with the
    prediction, also ``gain``: how much lower the loss is than that of the batch's mean prediction."""
    if root is None or root.name not in KIND:
        return None
    kind = KIND[root.name]
    if target is None:
        # No target (a functional loss seen by ``Medic`` after backward): the loss's form alone still tells
        # a neutral output's loss for a classifier (log K), a binary output (log 2) and a Poisson rate (1).
        return None if kind == "squared" else {"kind": kind, "factor": root.factor, "n": 0, "counts": {},
                                               "classes": _classes(root), "mean": [], "m2": []}
    if target.numel() == 0:
        return None
    t = target.detach()
    with torch.no_grad():
        gain = _gain(root, kind, t, prediction, raw) if prediction is not None else None
    if kind == "classes":
        if t.is_floating_point() or t.is_complex():
            return None  # class probabilities (soft labels): not a class index
        t = t.flatten().long()
        if root.ignore_index is not None:
            t = t[t != root.ignore_index]
        if t.numel() == 0 or int(t.min()) < 0:
            return None
        counts = torch.bincount(t).cpu().tolist()
        return {"kind": kind, "factor": root.factor, "n": int(t.numel()), "classes": _classes(root),
                "counts": {c: k for c, k in enumerate(counts) if k}, "gain": gain}
    t = t.float().reshape(t.shape[0], -1) if t.dim() >= 1 else t.float().reshape(1, 1)
    if t.shape[1] > MAX_COLUMNS:
        t = t.reshape(-1, 1)
    if not bool(torch.isfinite(t).all()):
        return None  # the data checks name NaN rows; a level from them would be NaN
    mean = t.mean(dim=0)
    m2 = ((t - mean) ** 2).sum(dim=0)
    stats = torch.stack([mean, m2]).cpu().tolist()
    return {"kind": kind, "factor": root.factor, "n": int(t.shape[0]), "mean": stats[0], "m2": stats[1],
            "gain": gain}


def input_rms(inputs: Any) -> float | None:
    """The root mean square of a floating-point model input (standardized inputs: about 1), or None."""
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point() or inputs.numel() == 0:
        return None
    with torch.no_grad():
        rms = float(inputs.detach().float().pow(2).nanmean().sqrt())
    return rms if rms == rms else None


def _classes(root: RootLoss) -> int:
    shape = root.input_shape
    return int(shape[1]) if shape is not None and len(shape) >= 2 else (int(shape[0]) if shape else 0)


def _gain(root: RootLoss, kind: str, target: torch.Tensor, prediction: torch.Tensor, raw: bool) -> float | None:
    """The loss of the batch's mean prediction minus the loss of the prediction, on this batch.

    About zero when the network predicts the same for every row (it learned nothing from its inputs);
    clearly positive when its predictions follow the inputs, however weakly. Rows are the first dimension
    (and, for a classifier, every position of a sequence)."""
    p = prediction.detach().float()
    if kind == "classes":
        if p.dim() < 2 or target.is_floating_point():
            return None
        logp = torch.log_softmax(p, dim=1) if raw else p
        if logp.dim() > 2:
            logp = logp.movedim(1, -1)
        logp = logp.reshape(-1, logp.shape[-1])
        t = target.reshape(-1).long()
        if t.numel() != logp.shape[0]:
            return None
        if root.ignore_index is not None:
            keep = t != root.ignore_index
            logp, t = logp[keep], t[keep]
        if t.numel() == 0 or int(t.max()) >= logp.shape[1] or int(t.min()) < 0:
            return None
        mean = logp.exp().mean(dim=0).clamp_min(1e-12).log()
        return float(logp.gather(1, t[:, None]).mean() - mean[t].mean())
    if p.shape != target.shape or p.numel() == 0:
        return None
    t = target.float().reshape(p.shape[0], -1)
    p = p.reshape(p.shape[0], -1)
    m = p.mean(dim=0, keepdim=True)
    if kind == "binary":
        prob = torch.sigmoid(p) if root.name == "binary_cross_entropy_with_logits" else p
        prob = prob.clamp(1e-7, 1 - 1e-7)
        mean = prob.mean(dim=0, keepdim=True)

        def bce(q: torch.Tensor) -> torch.Tensor:
            return -(t * q.log() + (1 - t) * (1 - q).log()).mean()

        return float(bce(mean.expand_as(prob)) - bce(prob))
    if kind == "squared":
        return float(((m - t) ** 2).mean() - ((p - t) ** 2).mean())
    rate = p.clamp_min(1e-8)
    mean = rate.mean(dim=0, keepdim=True)
    return float((mean - t * mean.log()).mean() - (rate - t * rate.log()).mean())
