"""The rate audit (TM343): is an adaptive optimizer's rate too high although the run learns? (issue 12)

A rate several times too high for Adam, AdamW or RMSprop does not diverge: the normalized steps keep their
size, the weights bounce at a noise floor set by the rate, the loss settles well above the tuned run's, and
no per-step signal tells it from a healthy run (``HEAL_RESULTS.md``, rounds three to five: the update
ratio, the loss trend, a plateau, the cosine of successive updates all overlap across tasks). What does
tell them apart is a counterfactual: from the current weights and optimizer state, train copies at the
rate and at 1/3 and 1/10 of it on the same recent batches, and compare their losses on *other* recent
batches. At a tuned rate the lower rates do not win (or by at most 2.5 %); at 10x-30x they win by 6-56 %.
What heal does then is :mod:`trainmedic.heal.rate_answer`'s decision: where the evaluation comes within
``rate_audit_window`` steps, restart from the initial snapshot at the next step with a probe below the
audited rate and a warmup (the weights after an epoch at 10-30x sit in a poor basin); otherwise cut the
rate to the lower rate that won, keeping the weights.

When it runs: heal mode, ``Medic(..., loss_fn=...)`` and ``medic.step(loss, batch=...)`` (it needs batches
to replay), or ``trainmedic run --heal`` where the script's loss is one ``torch.nn.functional`` loss call on the
model's output that can be rebuilt faithfully (:mod:`trainmedic.instrument.loss_rebuild`, bound with
:meth:`RateAudit.bind` after the first steps; until then no batch is kept), a loop that does not clip its
gradients (the copies would take unclipped steps: a healthy clipped GRU got a false cut under ``run``), an
Adam, AdamW or RMSprop optimizer (plain SGD at its tuned rate loses these short replays to a lower rate by 6-17 % on the regression task: the short-horizon bias), and only at the first evaluation at
which the run learns (its smoothed loss more than ``not_learning_margin`` below its first loss, out of the band
in which TM317 reads "learned nothing"; before that, TM317 judges it: :func:`past_not_learning`) and heal
has not touched the rate yet; after a cut, again at the next evaluation (at most ``rate_audit_max_cuts``
cuts); after a restart, never again (the rollback ends it, as any rollback does). Its cost,
once: 3 x ``passes`` x ``train_batches`` steps and 3 x ``held_batches`` forward passes on copies (96 and
24 by default), with the user's RNG forked (every copy starts from the same random state, the run's is
untouched). It keeps references to the last ``train_batches + held_batches`` batches until the evaluation at
which it runs (one with fewer batches than that waits for the next: :meth:`RateAudit._keeps_waiting`), and
none afterwards unless it cut the rate; the copies are made one at a time (memory: one
more model and optimizer state). A healthy run is never changed by it: the copies are discarded and nothing
of the real model, optimizer or RNG is written. Not under ``torch.distributed`` with several processes:
each would audit its own batches and might cut its rate alone. Under a learning-rate scheduler
(``Medic(scheduler=...)``, one ``trainmedic run`` saw stepping, Lightning's): only at an evaluation where the
schedule held the rate over the replayed steps, with copies whose rates anneal to 0 (a decaying schedule's
future), and heal restarts with the schedule scaled rather than probing; a ``CyclicLR`` or a scheduler that
is not torch's is refused with a TM904 (:mod:`trainmedic.heal.audit_schedule`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from trainmedic.callbacks import MedicCallback
from trainmedic.config import Thresholds
from trainmedic.heal.audit_schedule import schedule_moves, schedule_refusal
from trainmedic.replay import Batch, batch_bytes, call_model, copy_for_replay, split_batch
from trainmedic.rules.learning import start_level
from trainmedic.rules.rate_audit import RATE_TOO_HIGH
from trainmedic.signals.monitor import StepWindow

#: the optimizers the audit was measured on (benchmarks/healz_evidence.py); subclasses count
ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)
FACTORS = (1 / 3, 1 / 10)


@dataclass
class AuditResult:
    held: list[float]  # mean held-batch loss after training at the rate, then at each of FACTORS
    ratios: list[float]  # each lower rate's held loss over the rate's

    @property
    def best(self) -> int:
        """Index into FACTORS of the lower rate with the lowest held loss."""
        return min(range(len(self.ratios)), key=lambda i: self.ratios[i])

    def fires(self, gain: float) -> bool:
        return all(math.isfinite(h) for h in self.held) and self.ratios[self.best] < 1 - gain

    def choice(self, gain: float) -> int:
        """Index into FACTORS of the rate heal moves to: the lowest whose held loss is within ``gain`` of the
        best one's. Ties go to the lower rate because short replays early in training favour rates above the
        tuned one: at their tuned rates three of the four Adam, AdamW and RMSprop tasks lose 1-13 % to 1/3 and
        1/10 of it (the fourth wins by 2-2.5 %); offline (``healz_evidence.py simulate``), the classifier
        started 10x too high ended 1.16-1.17x the tuned run after a cut to the best of the two (1/3, better
        by 0.1-0.7 %) and 0.98-1.00x after a cut to 1/10."""
        bound = self.ratios[self.best] * (1 + gain)
        return max(i for i, r in enumerate(self.ratios) if r <= bound)  # FACTORS run from high to low


def audit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any, train: list[Batch],
          held: list[Batch], passes: int, anneal: bool = False) -> AuditResult:
    """Train copies of (model, optimizer) at the rate and at each of FACTORS x the rate, ``passes`` times
    over ``train``; return their mean losses on ``held`` (in eval mode, no gradients). ``anneal``: each copy's
    rate falls linearly from its start to 0 over the replay (a decaying schedule's future,
    :mod:`trainmedic.heal.audit_schedule`) instead of holding."""
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    means = []
    steps = passes * len(train)
    for factor in (1.0, *FACTORS):
        with torch.random.fork_rng(devices=cuda):  # each copy starts from the run's RNG state; it is restored
            m, opt, _ = copy_for_replay(model, optimizer)
            for g in opt.param_groups:
                if isinstance(g["lr"], torch.Tensor):
                    g["lr"].mul_(factor)
                else:
                    g["lr"] = g["lr"] * factor
            starts = [float(g["lr"]) for g in opt.param_groups]
            m.train()
            for k in range(steps):
                if anneal:
                    _set_rates(opt, [r * (1 - k / steps) for r in starts])
                b = train[k % len(train)]
                opt.zero_grad(set_to_none=True)
                loss_fn(call_model(m, b.inputs), b.target).backward()
                opt.step()
            m.eval()
            with torch.no_grad():
                losses = [float(loss_fn(call_model(m, b.inputs), b.target)) for b in held]
        means.append(sum(losses) / len(losses))
    base = means[0]
    ratios = [h / base if base > 0 and math.isfinite(base) else math.nan for h in means[1:]]
    return AuditResult(means, ratios)


def _set_rates(optimizer: torch.optim.Optimizer, rates: list[float]) -> None:
    for g, r in zip(optimizer.param_groups, rates):
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(r)
        else:
            g["lr"] = r


def past_not_learning(window: StepWindow, cfg: Thresholds) -> bool:
    """The smoothed loss is more than ``not_learning_margin`` below the run's first loss: below the band in
    which TM317 reads "learned nothing" (rules/learning.py), so whether this rate is right is the audit's
    question, not TM317's.

    Why not heal's "learning" (twice the margin, ``policy.is_learning``, what the audit waited for until round
    eight): between the two bounds neither rule judged the run. A GRU at 30x its rate (heal benchmark, seed 2)
    fell from its first loss 4.09 to 3.4-3.6 (0.83-0.88 of it) within two epochs and sat there for a hundred
    steps, too low for TM317, too high for the audit, until a spike back to the first loss fired TM317 at step
    230 of 310; the restart then had 80 steps left (1.38x the tuned run)."""
    start = start_level(window)
    return bool(window.smoothed < (1 - cfg.not_learning_margin) * start) if start > 0 else False


def rate_untouched(policy: Any, product: float) -> bool:
    """Heal has not taken the rate in hand: no rollback, no probe or warmup under way, and no rate change
    but the audit's own cuts (whose product is ``product``)."""
    steer = policy.steer
    return not (policy.rollbacks or steer.probing or steer.warm is not None) and math.isclose(policy.lr_factor, product)


def _distributed() -> bool:
    """Several processes train one model: each would audit its own batches and might cut the rate alone."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RateAudit(MedicCallback):
    """The audit as a Medic callback (added by a driver given a ``loss_fn``, and by ``trainmedic run --heal``'s
    session, which binds the rebuilt loss later; active only where the module docstring says)."""

    name = "rate-audit"

    def __init__(self, loss_fn: Any = None) -> None:
        self.loss_fn = loss_fn  # the replays' loss; None: the driver's ``loss_fn`` (or one bound later)
        self.active = False
        self.due = True  # the next evaluation audits
        self.cuts = 0
        self.runs = 0  # audits done (copies trained and compared), whatever they found
        self.product = 1.0  # the product of the audit's own cuts (heal's lr factor when nothing else acted)
        self.waited = 0  # the step of the last evaluation at which the run was not yet learning (0: none)
        self.batches: deque[Batch] = deque()
        self.rates: deque[float] = deque()  # the rate each kept batch was trained at (a scheduler moves it)

    def on_attach(self, medic: Any) -> None:
        cfg = medic.cfg
        self.active = (audits_in(medic) and cfg.rate_audit
                       and isinstance(medic.optimizer, ADAPTIVE) and cfg.rate_audit_train_batches > 0
                       and cfg.rate_audit_held_batches > 0 and cfg.rate_audit_passes > 0 and not _distributed())
        self.batches = deque(maxlen=cfg.rate_audit_train_batches + cfg.rate_audit_held_batches)
        self.rates = deque(maxlen=self.batches.maxlen)

    def bind(self, loss_fn: Any) -> None:
        """The replays' loss, known only once training has begun (``trainmedic run`` rebuilds the script's):
        batches are kept from the next step on."""
        self.loss_fn = loss_fn

    def replay_loss(self, medic: Any) -> Any:
        """The loss the copies train and are compared on: the bound one, else the driver's; None: no audit."""
        return self.loss_fn if self.loss_fn is not None else medic.loss_fn

    def on_before_step(self, medic: Any, step: int, loss: Any, batch: Any) -> None:
        if self.active and self.due and batch is not None and self.replay_loss(medic) is not None:
            b = split_batch(batch)
            if b is not None:
                if medic.mode != "heal" and not self.batches and not self._affordable(b, medic.cfg):
                    return
                self.batches.append(b)
                self.rates.append(medic.lr)

    def _affordable(self, batch: Batch, cfg: Thresholds) -> bool:
        """Watch mode: the batches the audit keeps fit ``rate_audit_watch_max_bytes`` (else it stands aside for
        the run, silently: a watch run did not ask for a repair). 24 image batches of 256 x 3 x 224 x 224 would
        keep 3.7 GB alive on the device the script trains on."""
        if batch_bytes(batch) * (self.batches.maxlen or 0) <= cfg.rate_audit_watch_max_bytes:
            return True
        self.active = self.due = False
        return False

    def on_rollback(self, medic: Any, step: int, to_step: int) -> None:
        self._clear()  # heal has taken the rate in hand; the audit stays out of it
        self.due = False

    def on_epoch_end(self, medic: Any, epoch: int, record: dict[str, Any]) -> None:
        if not (self.active and self.due):
            return
        if not past_not_learning(medic.engine.window, medic.cfg):
            # Still near its first loss: whether it learns at all is TM317's question (a rollback and a probe,
            # not a cut: Adam at 100x keeps dead units after a cut); the audit waits for the next evaluation.
            # The batches are kept (see _keeps_waiting: clearing them here lost the audit for good when the next
            # evaluation came fewer than train + held steps later).
            self.waited = medic.engine.step_count  # a restart's cost is counted from here (heal/rate_answer.py)
            return
        loss_fn = self.replay_loss(medic)
        clips = medic.collector.clip_bound is not None  # the copies would take the steps the script clips
        scheduler = medic.scheduler
        refused = schedule_refusal(scheduler) if scheduler is not None else None
        if (loss_fn is None or clips or not rate_untouched(medic.engine.policy, self.product) or medic.should_stop
                or refused is not None):
            self.due = False
            self._clear()
            if refused is not None and medic.mode == "heal":
                medic.step_aside("rate-audit", refused)
            return  # no loss bound by the first evaluation: the audit does not run later
        if self._keeps_waiting():
            return
        # under a scheduler, the constant replay stands for the run only where the rate barely moves
        # (heal/audit_schedule.py); otherwise wait for the next evaluation, as for missing batches
        if scheduler is not None and schedule_moves(list(self.rates), medic.lr) is not None:
            return
        self.due = False
        batches = list(self.batches)
        self._clear()  # a cut makes it due again: the next audit replays batches taken at the new rate
        cfg = medic.cfg
        n = cfg.rate_audit_train_batches
        anneal = scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        result = audit(medic.model, medic.optimizer, loss_fn, batches[:n], batches[n:], cfg.rate_audit_passes, anneal)
        self.runs += 1
        if not result.fires(cfg.rate_audit_gain):
            return
        cut = FACTORS[result.choice(cfg.rate_audit_gain)]
        ratios = {f"x{f:.3g}": round(r, 4) for f, r in zip(FACTORS, result.ratios)}
        text = ", ".join(f"{f:.2g} of the rate {r:.3f}" for f, r in zip(FACTORS, result.ratios))
        message = (f"on copies trained {cfg.rate_audit_passes}x over {n} recent batches, a lower learning rate beat "
                   f"{medic.lr:.3g} on {len(batches) - n} other recent batches (held loss over the rate's: {text})")
        evidence = {"ratios": ratios, "held_losses": [round(h, 6) for h in result.held], "lr": medic.lr,
                    "train_batches": n, "held_batches": len(batches) - n, "passes": cfg.rate_audit_passes,
                    "epoch": epoch, **({"annealed": True} if anneal else {}),
                    **({"loss_fn": str(loss_fn)} if self.loss_fn is not None else {}),
                    **({"scheduler": type(scheduler).__name__} if scheduler is not None else {})}
        # heal restarts from the initial weights with a probe (the rollback at the next step ends the audit:
        # on_rollback), or cuts the rate now and audits again at the next evaluation (heal/rate_answer.py);
        # under a scheduler it only cuts, scaling the scheduler's base rates too (heal/audit_schedule.py)
        if medic.rate_too_high(RATE_TOO_HIGH.code, cut, message, evidence, ratios=ratios, learning_since=self.waited,
                               scheduled=scheduler is not None):
            self.cuts += 1
            self.product *= cut
            self.due = self.cuts < cfg.rate_audit_max_cuts

    def _clear(self) -> None:
        self.batches.clear()
        self.rates.clear()

    def _keeps_waiting(self) -> bool:
        """Fewer batches than one audit replays (``train + held``): the audit stays due and runs at the first
        evaluation that has them, instead of not at all.

        Two ways to get here. An evaluation before the run's ``train + held``-th step (or that many steps after
        ``trainmedic run`` bound its loss). Or, until issue 12 round eight part three, an evaluation fewer than
        ``train + held`` steps after one at which the run was still at its first loss: that evaluation cleared
        the batches and this one found too few and ended the audit, so a script that evaluates twice in quick
        succession (an extra validation before a checkpoint, a mid-epoch one) was never audited. Now a
        not-learning evaluation keeps them: they are the run's most recent batches either way (the deque holds
        only the last ``train + held``, so the memory bound is unchanged), and the copies start from the
        current weights and optimizer state whatever batches they replay. Running with fewer batches instead
        was not chosen: the 4.5 % bar (``rate_audit_gain``) was measured with 16 + 8 (``healz_evidence.py``),
        and a shorter replay's noise could pass it."""
        return len(self.batches) < (self.batches.maxlen or 0)

    def state_dict(self) -> dict[str, Any]:
        return {"due": self.due, "cuts": self.cuts, "product": self.product, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.due = bool(state.get("due", True))
        self.cuts = int(state.get("cuts", 0))
        self.product = float(state.get("product", 1.0))
        self.waited = int(state.get("waited", 0))


def audits_in(driver: Any) -> bool:
    """The audit runs for this driver's mode: heal, or watch with ``rate_audit_watch`` on and a model of at
    most ``rate_audit_watch_max_params`` parameters.

    In watch mode the finding is reported and nothing acts (the policy answers only in heal): a rate several
    times too high for Adam still learns, and no per-step signal tells it from a healthy run, so without the
    audit ``trainmedic run`` in watch mode missed it (the fresh scripts: a 300x AdamW rate on a BatchNorm
    ResNet, a 30x Adam rate on an EmbeddingBag model). Its cost is once, at the first evaluation: about
    100 steps on copies, and one more model and optimizer state while they train, hence the size bound; a
    healthy run's output is unchanged (the copies are discarded and the RNG forked, as in heal). Until that
    evaluation it keeps references to the last 24 batches, hence a bound on their bytes too
    (:meth:`RateAudit._affordable`)."""
    cfg = driver.cfg
    if not cfg.rate_audit:
        return False
    if driver.mode == "heal":
        return True
    if driver.mode != "watch" or not cfg.rate_audit_watch:
        return False
    return sum(p.numel() for p in driver.model.parameters()) <= cfg.rate_audit_watch_max_params


def add_rate_audit(driver: Any, loss_fn: Any = None, refused: str | None = None) -> RateAudit | None:
    """Attach the audit to ``driver`` where it runs (:func:`audits_in`): heal mode, or watch mode for a model
    that is not large.

    ``loss_fn``: the replays' loss when it is not the driver's own (a front end that knows it, e.g.
    Lightning's ``MedicCallback(loss_fn=...)``). ``refused``: why the front end knows the replays would not
    train as the run does (a clipping or accumulating trainer, a scheduler...): then no audit, and a TM904
    says so where the audit would otherwise have run (an adaptive optimizer), so the user knows why no
    TM343 can come. Returns the attached audit, or None.
    """
    if not audits_in(driver):
        return None
    if refused is not None:
        if isinstance(driver.optimizer, ADAPTIVE) and driver.mode == "heal":
            driver.step_aside("rate-audit", refused)  # in watch mode no audit was expected of it
        return None
    audit_cb = RateAudit(loss_fn)
    driver.add_callback(audit_cb)
    return audit_cb
