"""The probe replay: for plain SGD, the rate after a probe is chosen by replaying candidates (issue 12).

After a rollback heal's probe (:mod:`trainmedic.heal.lr_probe`) reads one rate from a short, noisy curve. For
plain SGD that read sits 2-3x above the best rate when the curve has a clear valley, and 3-10x below it when
the curve only rose (``rise/10``, a guard made for optimizers with momentum): on the regression task of
``benchmarks/heal.py`` the three worst heal cases of round five ended 1.10-1.31x the tuned run that way.
Once the probe is done, this replays :func:`~trainmedic.heal.steering.replay_rates` (the highest rate the
curve supports, 1/2 and 1/4 of it) on copies restored from the probe's snapshot, each at a constant rate over
the batches the probe itself saw, and scores each by the mean loss of the second half of its steps, every
batch's loss taken before the step on it (so not a loss on batches it was trained on). Heal continues at the
lowest rate within :data:`~trainmedic.heal.steering.REPLAY_TOLERANCE` of the best
(:func:`~trainmedic.heal.steering.pick`; the evidence for the factors, the score and the tie rule is in
``benchmarks/heal_replay.py``). It never tries a rate above what the curve supports.

When it runs: heal mode, an optimizer whose step is the rate times the gradient (plain SGD:
:func:`~trainmedic.signals.stepping.direct_steps`; its state is its weights, so a copy at another rate is the
run at that rate), a loss to replay and the step's batches, a loop that does not clip its gradients (the
copies would take unclipped steps: where the driver sees the clipping only at the probe's end, a TM904 says
the replay stepped aside), one process (not ``torch.distributed`` with several: each would pick its own
rate), and only after a probe that read a curve (not ``known-good``). Every front end attaches it through
:func:`add_probe_replay`, the one place that decides:

* ``Medic(..., loss_fn=...)`` with ``medic.step(loss, batch=...)``;
* ``trainmedic run --heal``: the session rebuilds the script's loss from its first steps where it is one
  ``torch.nn.functional`` loss on the model's output, with no clipping and no scheduler
  (:mod:`trainmedic.instrument.loss_rebuild`), and binds it with :meth:`ProbeReplay.bind`, as for the rate
  audit; where it is refused nothing is replayed and the run is the one ``probe_replay=False`` gives. The
  loss is bound before step 3 is judged: a probe from a rollback at step 3 or later is replayed (10x and 30x
  on the regression of ``tests/test_run_probe_replay.py`` roll back at step 3), an earlier one keeps its
  own rate;
* Lightning: ``MedicCallback(mode="heal", loss_fn=...)``, unless the Trainer would not train as the copies
  do (clipping, accumulation, a scheduler, several optimizers, manual optimization, no ``forward``:
  :func:`trainmedic.integrations.lightning.audit_refusal`); then a TM904 says why.

Without batches nothing changes. Cost, once per probe: 3 x the probe's steps (36) training steps on copies
made one at a time (one more model in memory), and references to the probe's batches while it runs.

The run's model, optimizer and RNG are untouched: the copies are deep copies loaded from the snapshot, and
the RNG is forked (every copy starts from the run's random state, which is restored afterwards). A replay
that raises is switched off for the rest of the run and reported as TM901; heal keeps the probe's own rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainmedic.callbacks import MedicCallback
from trainmedic.heal.snapshot import clone_tree
from trainmedic.replay import Batch, call_model, copy_for_replay, split_batch
from trainmedic.signals.stepping import direct_steps

#: the fewest probe batches a replay is scored on (a probe resumed from a checkpoint keeps none of its own)
MIN_BATCHES = 8


def replay_losses(model: torch.nn.Module, optimizer: torch.optim.Optimizer, snapshot: Any, loss_fn: Any,
                  batches: list[Batch], rates: list[float]) -> list[float]:
    """For each rate: a copy of (model, optimizer) loaded from ``snapshot`` trains at that rate (every param
    group scaled alike, their ratios kept) over ``batches``; its score is the mean loss of the second half
    of its steps (inf if any is not finite)."""
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    scores = []
    for rate in rates:
        with torch.random.fork_rng(devices=cuda):  # each copy starts from the run's RNG state; it is restored
            m, opt, _ = copy_for_replay(model, optimizer)
            m.load_state_dict(snapshot.model)
            opt.load_state_dict(clone_tree(snapshot.optimizer))  # a tensor lr would be shared, then scaled
            first = opt.param_groups[0]["lr"]
            base = float(first.item() if isinstance(first, torch.Tensor) else first)
            for g in opt.param_groups:
                scale = rate / base if base > 0 else 1.0
                g["lr"] = g["lr"] * scale if not isinstance(g["lr"], torch.Tensor) else g["lr"].mul_(scale)
            m.train()
            losses = []
            for b in batches:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(call_model(m, b.inputs), b.target)
                losses.append(float(loss.detach()))
                if not math.isfinite(losses[-1]):
                    break
                loss.backward()
                opt.step()
            del m, opt
        half = losses[len(batches) // 2:] if len(losses) == len(batches) else [math.inf]
        scores.append(sum(half) / len(half) if all(math.isfinite(v) for v in half) else math.inf)
    return scores


class ProbeReplay(MedicCallback):
    """The replay as a Medic callback: keeps the probe's batches and answers heal's
    :attr:`~trainmedic.heal.steering.Steering.replay` (attached by :func:`add_probe_replay`)."""

    name = "probe-replay"

    def __init__(self, loss_fn: Any = None) -> None:
        self.loss_fn = loss_fn  # the replays' loss; None: the driver's ``loss_fn`` (or one bound later)
        self.medic: Any = None  # set on attach where the replay may run; None again once it stepped aside
        self.batches: list[Batch] = []
        self.runs = 0  # replays done

    @property
    def active(self) -> bool:
        return self.medic is not None

    def on_attach(self, medic: Any) -> None:
        cfg = medic.cfg
        dist = torch.distributed  # several processes: each would replay its own batches and pick its own rate
        alone = not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)
        if medic.mode == "heal" and cfg.probe_replay and alone and direct_steps(medic.optimizer):
            self.medic = medic
            if self.replay_loss(medic) is not None:
                medic.engine.policy.steer.replay = self.losses

    def bind(self, loss_fn: Any) -> None:
        """The replays' loss, known only once training has begun (``trainmedic run`` rebuilds the script's):
        heal asks for replays from the next step outside a probe on (a probe under way keeps its own rate)."""
        self.loss_fn = loss_fn

    def replay_loss(self, medic: Any) -> Any:
        """The loss the copies train on: the bound one, else the driver's; None: no replay (yet)."""
        return self.loss_fn if self.loss_fn is not None else medic.loss_fn

    def on_before_step(self, medic: Any, step: int, loss: Any, batch: Any) -> None:
        if self.medic is None or self.replay_loss(medic) is None:
            return
        steer = medic.engine.policy.steer
        if not steer.probing:
            self.batches = []
            if steer.replay is None:  # a loss bound since the last step: the next probe is replayed
                steer.replay = self.losses
            return
        b = split_batch(batch) if batch is not None and steer.replay is not None else None
        if b is not None:
            self.batches.append(b)

    def losses(self, to_step: int, rates: list[float]) -> list[float] | None:
        """Heal's hook when a probe ends: each rate's replayed loss, or None (no replay: the probe's rate)."""
        medic, batches, self.batches = self.medic, self.batches, []
        if medic is None:
            return None
        if medic.collector.clip_bound is not None:  # the copies would take the steps the loop clips
            self._step_aside(medic, "the loop clips its gradients (the replayed copies would not)")
            return None
        if len(batches) < MIN_BATCHES or to_step not in medic.actuator.snapshots:
            return None
        try:
            scores = replay_losses(medic.model, medic.optimizer, medic.actuator.snapshots[to_step],
                                   self.replay_loss(medic), batches, rates)
        except Exception as exc:  # inside the engine's step: report it here, heal keeps the probe's rate
            self._off(medic)
            medic.engine.disable(self.name, exc)
            return None
        self.runs += 1
        return scores

    def _off(self, medic: Any) -> None:
        self.medic = None
        self.batches = []
        medic.engine.policy.steer.replay = None

    def _step_aside(self, medic: Any, why: str) -> None:
        """Off for the rest of the run, with a TM904 saying why (heal keeps the probe's own rate)."""
        self._off(medic)
        medic.step_aside(self.name, why)


def add_probe_replay(driver: Any, loss_fn: Any = None, refused: str | None = None) -> ProbeReplay | None:
    """Attach the replay to ``driver`` where heal may use it: heal mode, ``probe_replay`` on, plain SGD
    (:func:`~trainmedic.signals.stepping.direct_steps`). The one place every front end goes through.

    ``loss_fn``: the replays' loss when it is not the driver's own (Lightning's ``MedicCallback(loss_fn=...)``);
    with neither, the replay waits for :meth:`ProbeReplay.bind` (``trainmedic run`` binds the loss it rebuilt
    from the script's first steps, or nothing, and then nothing changes). ``refused``: why the front end
    knows the replays would not train as the run does (a clipping or accumulating trainer, a scheduler...):
    then no replay, and a TM904 says so. Returns the attached replay, or None.
    """
    if driver.mode != "heal" or not driver.cfg.probe_replay or not direct_steps(driver.optimizer):
        return None
    if refused is not None:
        driver.step_aside(ProbeReplay.name, refused)
        return None
    replay = ProbeReplay(loss_fn)
    driver.add_callback(replay)
    return replay
