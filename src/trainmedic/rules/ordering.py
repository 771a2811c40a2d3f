"""TM116: training batches served in the order of their labels (the data is not shuffled).

A class-sorted dataset served without shuffling gives the model one class at a time: each batch pulls the
network towards the current class and away from the last one, the loss follows the data order rather than
the learning, and the model ends the epoch biased towards the last classes it saw. A regression set sorted
by its target does the same along the target's range.

The signal is in the targets the front ends already see, step by step, judged by :func:`judge_order` from
three numbers per step (the batch's size, the target's mean and its variance within the batch):

* **within / pooled spread**: the mean within-batch variance of the target over its variance over all the
  steps seen (the law of total variance splits the two). Shuffled batches are random samples of the
  data, so the ratio is about 1 whatever the task; batches that hold one label (or a narrow slice of a
  sorted target) give a ratio near 0.
* **order** (von Neumann's ratio): the mean squared difference between consecutive batch means over twice
  their variance. Independent batches give about 2; batches that follow one another through the sorted
  data give a ratio near 0. This keeps silent a design where every batch is homogeneous on purpose but
  drawn at random (one task or one class per step, a GAN's all-ones / all-zeros targets alternating).

Both must be far from their shuffled values, on enough steps, before anything is said. The thresholds
(the constants below) were chosen on the calibration half of the fault corpus (``benchmarks/corpus``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainmedic.rules.registry import rule

ORDERED_BATCHES = rule(
    "TM116",
    "ordered-batches",
    "warning",
    summary="Consecutive training batches share their label: the data is served in label order, not shuffled.",
    what="""
        Each training batch holds (almost) a single label, or a narrow slice of a sorted regression target,
        and consecutive batches move through the labels in order. The model sees one class at a time: every
        batch pulls it towards the current class, the loss follows the order of the data instead of the
        learning, and at the end of an epoch the model is biased towards the classes it saw last.
        """,
    why="""
        `DataLoader(..., shuffle=False)` (the default) on a dataset stored sorted by class (folders read one
        class after the other, a CSV sorted by its label, `torch.cat` of per-class tensors), or a
        hand-written loop that slices `X[i:i+B]` without a fresh `torch.randperm` every epoch. Practitioner
        notes 002 and 004: shuffle the training data; a loss that jumps at regular intervals follows the
        data order.
        """,
    fix="""
        Shuffle the training set every epoch: `DataLoader(train_ds, batch_size=B, shuffle=True)`, or index
        batches with `perm = torch.randperm(len(X))` drawn anew for each epoch. Keep the validation set
        unshuffled; it does not matter there.
        """,
    example="""
        order = torch.argsort(y)                                  # data stored sorted by label
        loader = DataLoader(TensorDataset(X[order], y[order]), batch_size=64)       # one class per batch
        loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True)
        """,
    references=("Practitioner notes 002 and 004 (shuffling; the loss follows the data order)",),
)

#: steps with a target before judging, and the steps at which the judgement is made (then collection stops)
MIN_STEPS = 32
JUDGE_AT = (32, 64, 128, 256)
#: the mean within-batch variance below this share of the pooled variance: batches are nearly one label each
#: (shuffled: about 1; the class-sorted mutants of the calibration half: below 0.12)
MAX_WITHIN_RATIO = 0.2
#: von Neumann's ratio below this: consecutive batch means follow one another (independent batches: about 2)
MAX_VON_NEUMANN = 1.0


@dataclass
class OrderJudgement:
    within_ratio: float
    von_neumann: float
    pure_share: float  # batches whose target holds a single value
    steps: int
    batch_size: float


def judge_order(counts: np.ndarray, means: np.ndarray, variances: np.ndarray) -> OrderJudgement | None:
    """The ordered-batches judgement from per-step target statistics (``variances`` within each batch, with
    one degree of freedom removed): a judgement when the batches are ordered, ``None`` otherwise."""
    ok = np.isfinite(means) & np.isfinite(variances) & (counts >= 2)
    n, m, v = counts[ok].astype(float), means[ok].astype(float), variances[ok].astype(float)
    if len(n) < MIN_STEPS:
        return None
    total = n.sum()
    grand = float((n * m).sum() / total)
    within = float(((n - 1) * v).sum() / total)
    between = float((n * (m - grand) ** 2).sum() / total)
    pooled = within + between
    scale = max(abs(grand), 1.0)
    if pooled <= 1e-12 * scale * scale or between <= 0:
        return None  # one target value over every step seen so far (a GAN's fill, or too early to tell)
    ratio = within / pooled
    spread = float(np.var(m))
    if spread <= 0:
        return None
    von_neumann = float(np.mean(np.diff(m) ** 2) / (2 * spread))
    if ratio >= MAX_WITHIN_RATIO or von_neumann >= MAX_VON_NEUMANN:
        return None
    pure = float(np.mean(v <= 1e-12 * scale * scale))
    return OrderJudgement(ratio, von_neumann, pure, len(n), float(n.mean()))


def describe(j: OrderJudgement) -> str:
    single = f"; {j.pure_share:.0%} of them hold a single label" if j.pure_share >= 0.1 else ""
    return (f"consecutive training batches share their target: over {j.steps} steps (batches of ~{j.batch_size:.0f}) "
            f"the target's spread within a batch is {j.within_ratio:.1%} of its spread over the run{single}, and "
            f"each batch's mean follows the last (von Neumann ratio {j.von_neumann:.2f}; shuffled batches give "
            "about 2): the data is served in the order of its labels. Shuffle it: DataLoader(..., shuffle=True) or a fresh "
            "torch.randperm every epoch")
