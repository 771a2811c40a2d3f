"""The rate audit (TM343, issue 12 round five): an Adam rate too high that still learns, on real tiny trainings.

* Adam at 30x a good rate learns (no spike, no plateau at the start level): at the first evaluation the
  audit's copies show a lower rate winning on held-back batches; heal restarts from the initial weights at
  the next step with a probe below the audited rate and a warmup (heal/rate_answer.py), and the run ends
  well below the plain run at the same rate;
* with ``rate_audit_restart=False``, or an evaluation later than ``rate_audit_window`` steps, heal cuts the
  rate instead and keeps the weights (the fallback);
* the same task at the good rate: the audit runs, finds nothing, and the run under heal ends bit for bit
  where the plain loop ends (weights, validation, the RNG: the model has dropout);
* plain SGD is not audited (at its tuned rate a lower one wins short replays too), nor a run without
  ``loss_fn`` / ``batch``; watch mode is never audited.
"""

from __future__ import annotations

import pytest
import torch
from _four_class import DATA, mlp
from torch.nn import functional as F

from trainmedic import Medic
from trainmedic.callbacks import MedicCallback
from trainmedic.heal.rate_audit import RateAudit
from trainmedic.rules import get_rule


def train(lr: float, mode: str, *, epochs: int = 4, seed: int = 0, dropout: float = 0.0, opt_cls=torch.optim.Adam,
          loss_fn: bool = True, batch: bool = True, clip: float | None = None, thresholds: dict | None = None,
          callbacks=()):
    """A 4-class MLP, 32 steps an epoch; returns (medic or None, model, validation per epoch, the RNG after)."""
    x, y, xv, yv = DATA
    torch.manual_seed(seed)
    model = mlp(dropout)
    opt = opt_cls(model.parameters(), lr=lr)
    medic = None
    if mode != "plain":
        medic = Medic(model, opt, mode=mode, console=False, loss_fn=F.cross_entropy if loss_fn else None,
                      thresholds=thresholds, callbacks=callbacks)
    vals = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if medic is None:
                opt.step()
            else:
                medic.step(loss, batch=(xb, yb) if batch else None)
        model.eval()
        with torch.no_grad():
            v = float(F.cross_entropy(model(xv), yv))
        vals.append(v)
        if medic is not None:
            medic.end_epoch(val_loss=v)
    return medic, model, vals, torch.get_rng_state()


def _audit_actions(medic):
    return [e for e in medic.events if e.get("type") == "action" and e.get("reason") == "TM343"]


class AtRollback(MedicCallback):
    """Reads the weights the moment heal has rolled back (the actuator restored a snapshot)."""

    name = "at-rollback"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, dict[str, torch.Tensor]]] = []

    def on_rollback(self, medic, step, to_step):
        self.seen.append((step, to_step, {k: v.clone() for k, v in medic.model.state_dict().items()}))


def _initial_weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return mlp(0.0).state_dict()


@pytest.mark.parametrize("seed", [0, 1])
def test_adam_30x_too_high_restarts_from_the_initial_weights_with_a_probe(seed):
    _, _, plain, _ = train(3e-2, "plain", seed=seed, epochs=6)
    at = AtRollback()
    medic, model, healed, _ = train(3e-2, "heal", seed=seed, epochs=6, callbacks=[at])
    found = [f for f in medic.findings if f.code == "TM343"]
    assert found, [f.code for f in medic.findings]
    f = found[0]
    assert f.step == 32 and f.evidence["epoch"] == 0  # the first evaluation, after 32 steps
    assert min(f.evidence["ratios"].values()) < 1 - medic.cfg.rate_audit_gain
    assert f.action == "restart from step 0, probe up to 0.03, warmup"
    acts = _audit_actions(medic)
    assert [a["action"] for a in acts] == ["rollback", "probe"]  # no cut
    back, probe = acts
    assert back["step"] == 32 and back["to_step"] == 0 and back["ceiling"] == pytest.approx(3e-2)
    assert back["ratios"] == f.evidence["ratios"] and "rate audit" in back["why"]
    # the weights at the rollback are the initial ones; then trained
    assert [(s, t) for s, t, _ in at.seen] == [(32, 0), (32 + medic.cfg.probe_steps, 0)]
    initial = _initial_weights(seed)
    assert all(torch.equal(initial[k], w) for k, w in at.seen[0][2].items())
    assert not torch.equal(initial["0.weight"], model.state_dict()["0.weight"])
    # the probe stays at or below the audited rate, and the run warms up to what it chose
    assert probe["probed"][1] <= 3e-2 * (1 + 1e-9) and probe["lr_after"] < 3e-2 / 2.9
    assert probe["warmup_steps"] == medic.cfg.heal_warmup_steps and probe["why"]
    assert medic.lr == pytest.approx(probe["lr_after"])
    assert healed[0] == plain[0]  # nothing changed before the audit
    assert healed[-1] < 0.8 * plain[-1], (healed, plain)


def test_a_restart_starts_a_new_plateau_window():
    # Adam at 10x: the evaluation before the restart (0.69) is better than the restarted run's next five; a
    # plateau counted from it cut the rate x0.1 at step 192 (final 1.18x the good rate's run instead of 1.05x).
    _, _, good, _ = train(1e-3, "plain", epochs=10)
    medic, _, healed, _ = train(1e-2, "heal", epochs=10)
    assert [f.code for f in medic.findings if f.severity == "warning"] == ["TM343"]
    assert [a["action"] for a in medic.events if a.get("type") == "action"] == ["rollback", "probe"]
    assert min(healed[1:6]) > healed[0] and healed[-1] < 1.1 * good[-1], (healed, good)


@pytest.mark.parametrize("thresholds", [{"rate_audit_restart": False}, {"rate_audit_window": 31},
                                        {"max_probes": 0}, {"max_rollbacks": 0}],
                         ids=["restart-off", "late-evaluation", "no-probe-budget", "no-rollback-budget"])
def test_without_a_restart_the_rate_is_cut_and_the_weights_kept(thresholds):
    # The fallback: asked for, the first evaluation (step 32) comes after rate_audit_window steps, or heal has
    # no probe or rollback left for a restart.
    _, _, plain, _ = train(3e-2, "plain")
    medic, _, healed, _ = train(3e-2, "heal", thresholds=thresholds)
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.step == 32 and f.action.startswith("lr x")
    acts = _audit_actions(medic)
    assert acts and acts[0]["action"] == "lr-change" and acts[0]["lr_before"] == pytest.approx(3e-2)
    assert acts[0]["lr_after"] < 3e-2 / 2.9 and acts[0]["ratios"] == f.evidence["ratios"]
    assert not any(e.get("action") == "rollback" for e in medic.events if e.get("type") == "action")
    assert healed[0] == plain[0]
    assert healed[-1] < 0.9 * plain[-1], (healed, plain)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_good_rate_is_audited_and_left_bit_identical(dropout):
    _, m_plain, plain, rng_plain = train(1e-3, "plain", dropout=dropout)
    medic, m_heal, healed, rng_heal = train(1e-3, "heal", dropout=dropout)
    audit = next(cb for cb in medic.callbacks if isinstance(cb, RateAudit))
    assert audit.active and not audit.due  # it ran at the first evaluation
    assert not [f for f in medic.findings if f.code == "TM343"]
    assert not [f for f in medic.findings if f.severity in ("warning", "error")]
    assert healed == plain
    assert all(torch.equal(a, b) for a, b in zip(m_plain.state_dict().values(), m_heal.state_dict().values()))
    assert torch.equal(rng_plain, rng_heal)


def test_in_watch_mode_a_rate_30x_too_high_is_reported_and_nothing_changes():
    # Watch mode audits too (heal/rate_audit.py::audits_in): the finding, no action, and the run, its weights
    # and its RNG exactly the plain loop's. At the good rate: audited, nothing found.
    _, m_plain, plain, rng_plain = train(3e-2, "plain")
    medic, m_watch, watched, rng_watch = train(3e-2, "watch")
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.step == 32 and f.severity == "warning" and not f.action
    assert min(f.evidence["ratios"].values()) < 1 - 0.045 and f.evidence["lr"] == pytest.approx(3e-2)
    assert not [e for e in medic.events if e.get("type") == "action"]
    assert watched == plain and torch.equal(rng_plain, rng_watch)
    assert all(torch.equal(a, b) for a, b in zip(m_plain.state_dict().values(), m_watch.state_dict().values()))
    medic, _, _, _ = train(1e-3, "watch", epochs=2)
    audit = next(cb for cb in medic.callbacks if isinstance(cb, RateAudit))
    assert audit.runs == 1 and not [f for f in medic.findings if f.severity in ("warning", "error")]
    for off in ({"rate_audit_watch": False}, {"rate_audit_watch_max_params": 1000}):  # the MLP has 19,716 parameters
        medic, _, _, _ = train(3e-2, "watch", epochs=1, thresholds=off)
        assert not any(isinstance(cb, RateAudit) for cb in medic.callbacks)
    medic, _, _, _ = train(3e-2, "watch", epochs=1, thresholds={"rate_audit_watch_max_bytes": 24 * 2816 - 1})
    audit = next(cb for cb in medic.callbacks if isinstance(cb, RateAudit))  # a batch: 32 x 20 floats, 32 labels
    assert not audit.active and audit.runs == 0 and not [f for f in medic.findings if f.code in ("TM343", "TM904")]
    medic, _, _, _ = train(3e-2, "watch", epochs=1, thresholds={"rate_audit_watch_max_bytes": 24 * 2816})
    assert [f.code for f in medic.findings if f.code == "TM343"] == ["TM343"]  # just fits


def test_sgd_or_without_loss_fn_is_not_audited():
    medic, _, _, _ = train(1e-2, "heal", epochs=1, opt_cls=torch.optim.SGD)
    assert not next(cb for cb in medic.callbacks if isinstance(cb, RateAudit)).active
    medic, _, _, _ = train(3e-2, "heal", epochs=1, loss_fn=False)
    assert not any(isinstance(cb, RateAudit) for cb in medic.callbacks)
    medic, _, _, _ = train(3e-2, "watch", epochs=1, loss_fn=False)
    assert not any(isinstance(cb, RateAudit) for cb in medic.callbacks)
    assert not [f for f in medic.findings if f.code == "TM343"]
    medic, _, _, _ = train(3e-2, "heal", epochs=1, batch=False)  # no batches to replay: it cannot audit
    assert not [f for f in medic.findings if f.code == "TM343"]


def test_a_loop_that_clips_is_not_audited():
    # The copies would take the steps the script clips (under `run`, a healthy clipped GRU got a false cut:
    # HEAL_RESULTS.md, "runaudit"); the audit refuses rather than judge unclipped replays.
    medic, _, healed, _ = train(3e-2, "heal", epochs=2, clip=0.5)
    _, _, plain, _ = train(3e-2, "plain", epochs=2, clip=0.5)
    audit = next(cb for cb in medic.callbacks if isinstance(cb, RateAudit))
    assert medic.collector.clip_bound == pytest.approx(0.5)
    assert audit.runs == 0 and not [f for f in medic.findings if f.code == "TM343"]
    assert healed == plain


def test_tm343_is_documented():
    r = get_rule("TM343")
    assert r.severity == "warning" and "rate_audit_gain" in r.what
    assert "TM343" in r.render()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_run_still_at_its_first_loss_is_left_to_tm317(seed):
    # Adam at 100x: at the first evaluation (step 32) the loss is still at its first level (ln 4); the audit
    # waits, TM317 names it at step 60, and heal rolls back and probes; after a rollback the audit stays out.
    medic, _, vals, _ = train(1e-1, "heal", seed=seed)
    assert vals[0] > 0.95 * 1.386
    assert [f.code for f in medic.findings if f.severity == "warning"][:1] == ["TM317"]
    assert not [f for f in medic.findings if f.code == "TM343"]
    acts = [e for e in medic.events if e.get("type") == "action"]
    assert acts[0]["action"] == "rollback" and acts[0]["reason"] == "TM317" and acts[0]["step"] == 60
    assert not next(cb for cb in medic.callbacks if isinstance(cb, RateAudit)).due


def _epochs(medic, model, opt, epochs: range) -> list[float]:
    x, y, xv, yv = DATA
    vals = []
    for epoch in epochs:
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            vals.append(float(F.cross_entropy(model(xv), yv)))
        medic.end_epoch(val_loss=vals[-1])
    return vals


def _medic(ckpt):
    torch.manual_seed(0)
    model = mlp(0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    return Medic(model, opt, mode="heal", console=False, loss_fn=F.cross_entropy, checkpoint_dir=ckpt), model, opt


def test_a_restart_decided_at_the_evaluation_survives_a_resume_from_its_checkpoint(tmp_path):
    # The checkpoint written at the first epoch end holds the restart heal decided there but has not carried
    # out yet (it happens at the next step): a run resumed from it restarts as the uninterrupted run does.
    medic, model, opt = _medic(tmp_path / "a")
    ref = _epochs(medic, model, opt, range(3))
    medic, model, opt = _medic(tmp_path / "b")
    first = _epochs(medic, model, opt, range(1))
    medic2, model2, opt2 = _medic(tmp_path / "b")
    assert medic2.resume().step == 32
    rest = _epochs(medic2, model2, opt2, range(1, 3))
    assert first + rest == ref
    acts = [(e["action"], e["reason"], e["step"]) for e in medic2.events if e.get("type") == "action"]
    assert [a for a in acts if a[1] == "TM343"] == [("rollback", "TM343", 32), ("probe", "TM343", 68)]


def _train_evaluated_at(evals: set[int], thresholds: dict, steps: int = 128, callbacks=()):
    """Adam at 30x, evaluated after each step in ``evals`` and every 32 steps: the rate audit's evaluations."""
    x, y, xv, yv = DATA
    torch.manual_seed(0)
    model = mlp(0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=F.cross_entropy, thresholds=thresholds,
                  callbacks=callbacks)
    t = 0
    for epoch in range(steps // 32):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
            t += 1
            if t in evals or t % 32 == 0:
                with torch.no_grad():
                    v = float(F.cross_entropy(model(xv), yv))
                medic.end_epoch(val_loss=v)
    return medic


def test_the_restart_window_counts_from_the_last_evaluation_that_was_not_learning_yet():
    # With the window at 31 steps the audit at step 32 cuts (the late-evaluation fallback above). An evaluation
    # at step 4, where the loss is still at its first level, moves the window's start there: the run has learned
    # for at most 28 steps, so the audit at step 32 restarts, and its finding and rollback say from where.
    # (A GRU at 30x sat at its first loss through its first 62-step epoch and was cut at step 124; round seven.)
    cut = _train_evaluated_at(set(), {"rate_audit_window": 31})
    assert [a["action"] for a in _audit_actions(cut)][:1] == ["lr-change"]
    medic = _train_evaluated_at({4}, {"rate_audit_window": 31})
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.step == 32 and f.action.startswith("restart from step 0")
    back = _audit_actions(medic)[0]
    assert back["action"] == "rollback" and back["to_step"] == 0 and back["learning_since"] == 4
    late = _train_evaluated_at({4}, {"rate_audit_window": 27})  # 28 steps > 27: the cut again
    assert [a["action"] for a in _audit_actions(late)][:1] == ["lr-change"]


class Gate(MedicCallback):
    """Records, at each evaluation, the smoothed loss over the run's first loss (what the audit's gate reads)."""

    name = "gate"

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}

    def on_epoch_end(self, medic, epoch, record):
        from trainmedic.rules.learning import start_level

        w = medic.engine.window
        self.seen[medic.engine.step_count] = float(w.smoothed) / start_level(w)


def test_a_run_below_tm317s_band_but_not_clearly_learning_is_audited_there():
    # Adam at 30x, evaluated at step 26 too: the smoothed loss there is 0.825 of the first loss, below the band in
    # which TM317 reads "learned nothing" (0.9) and above heal's "learning" (0.8). Until round eight the audit
    # waited for the evaluation at step 32 there; neither rule judged the run in between (a GRU at 30x sat in
    # that gap for a hundred steps, until TM317 fired at step 230 of 310). Now the audit runs at step 26.
    gate = Gate()
    x, y, xv, yv = DATA
    torch.manual_seed(0)
    model = mlp(0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=F.cross_entropy, callbacks=[gate])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for t, i in enumerate(range(0, len(x) - 31, 32), start=1):
        xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(xb, yb))
        if t in (26, 32):
            with torch.no_grad():
                v = float(F.cross_entropy(model(xv), yv))
            medic.end_epoch(val_loss=v)
    assert 0.8 < gate.seen[26] < 0.9  # in the gap between the two rules
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.step == 26 and f.action.startswith("restart from step 0")
    back = _audit_actions(medic)[0]
    assert back["action"] == "rollback" and back["step"] == 26 and back["to_step"] == 0


def test_an_evaluation_soon_after_one_at_the_first_loss_still_gets_its_audit():
    # Adam at 30x, evaluated at step 4 (still at its first loss: TM317's question, the audit waits) and again at
    # step 26, 22 steps later, below TM317's band. Until round eight part three the step-4 evaluation cleared the
    # audit's batches, the step-26 one found 22 of the 24 it replays and ended the audit: no TM343 at all, at
    # step 26 or later. The batches are now kept across the step-4 evaluation (the most recent 24 either way).
    gate = Gate()
    medic = _train_evaluated_at({4, 26}, {}, callbacks=[gate])
    assert not gate.seen[4] < 0.9 and gate.seen[26] < 0.9  # step 4 not past TM317's band (no level yet); 26 past
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.step == 26 and f.action.startswith("restart from step 0")
    back = _audit_actions(medic)[0]
    assert back["action"] == "rollback" and back["step"] == 26 and back["learning_since"] == 4


def test_an_evaluation_before_one_audits_worth_of_batches_leaves_the_audit_due():
    # Evaluated at step 22, below TM317's band but with 22 of the 24 batches the audit replays: it neither runs on
    # fewer (its bar was measured with 16 + 8) nor ends (as it did until round eight part three: no TM343 at
    # all); it runs at the next evaluation (step 32).
    gate = Gate()
    medic = _train_evaluated_at({22}, {}, callbacks=[gate])
    assert gate.seen[22] < 0.9
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.step == 32
