"""TM3xx: run-time rules, each documented beside its detector.

Detectors are pure functions of signal history (numpy arrays and numbers in, a ``Detection`` or ``None``
out), so they can be tested on recorded traces without training anything. Each is registered with its
rule and cadence (``@detector``, :mod:`trainmedic.rules.detectors`) through a small adapter that reads the
:class:`~trainmedic.rules.detectors.Observation` the engine builds; the engine runs whatever is registered.
"""

from __future__ import annotations

import math

import numpy as np

from trainmedic.config import Thresholds
from trainmedic.rules.curves import overfitting_evidence
from trainmedic.rules.detectors import Cadence, Detection, Observation, detector
from trainmedic.rules.learning import reported_dead
from trainmedic.rules.registry import rule
from trainmedic.rules.shape import is_jump
from trainmedic.signals.monitor import Monitor, gradient_bounds, median
from trainmedic.signals.monitor import robust_sigma as _robust_sigma

__all__ = ["Detection", "gradient_bounds", "median"]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------------------------------------------
NONFINITE_LOSS = rule(
    "TM301",
    "nonfinite-loss",
    "error",
    summary="The loss is NaN or infinite.",
    what="""
        The value passed to `backward()` is NaN or ±Inf. Its gradients are NaN too: one optimizer step
        with them writes NaN into every weight and the run is lost from then on.
        """,
    why="""
        A log or sqrt of a value <= 0, a division by zero, an exp or softmax that overflows, NaN already
        present in the inputs or labels (dirty rows), or weights that diverged because the learning rate
        is too high (practitioner notes 000, 002, 003).
        """,
    fix="""
        Look at the op that produced it (TM210) and the rows that trigger it (TM313). Add an epsilon to
        log/div (`torch.log(p + 1e-8)`, `x / (n + 1e-8)`), use numerically stable losses
        (`cross_entropy` on logits instead of `log(softmax)`), clean the data, lower the learning rate.
        In heal mode the step is skipped; repeated non-finite steps roll the weights back.
        """,
    example="""
        loss = -(y * torch.log(model(x))).mean()      # log of a prediction that reached 0 -> -inf
        loss = -(y * torch.log(model(x).clamp_min(1e-8))).mean()
        """,
)

NONFINITE_GRAD = rule(
    "TM302",
    "nonfinite-grad",
    "error",
    summary="A gradient is NaN or infinite although the loss is finite.",
    what="""
        The loss was finite but backward produced NaN/Inf in the gradients of the named parameters.
        Applying the step would poison the weights and the optimizer's moments.
        """,
    why="""
        The backward of an op is unstable where its forward is not: `sqrt` at 0 (infinite derivative),
        `torch.where` selecting a safe branch while the other branch's gradient is NaN, `norm` of a zero
        vector, or an overflow in float16 without a GradScaler.
        """,
    fix="""
        Guard the op (`sqrt(x + eps)`, compute the unsafe branch on a masked input), use a GradScaler with
        float16. In heal mode the step is skipped and the optimizer state stays untouched.
        """,
    example="""
        d = (a - b).pow(2).sum(-1).sqrt()             # gradient of sqrt at 0 is inf
        d = ((a - b).pow(2).sum(-1) + 1e-12).sqrt()
        """,
)


@detector(NONFINITE_LOSS, NONFINITE_GRAD, cadence=Cadence.NONFINITE, anomaly=True, needs_warmup=False)
def _nonfinite(obs: Observation) -> Detection | None:
    """TM301 when the loss is NaN/Inf; TM302 when only gradients are (naming the parameters). With a
    GradScaler, a finite loss with overflowing gradients is the scaler's business (see TM314)."""
    sig = obs.signals
    if sig is None:
        return None
    if not sig.loss_finite:
        return Detection(NONFINITE_LOSS.code, f"loss is {sig.loss}", {"loss": sig.loss})
    if obs.has_scaler:
        return None
    bad = [n for n, v in zip(obs.layers, sig.norms) if not math.isfinite(v)]
    return Detection(NONFINITE_GRAD.code, f"non-finite gradient in {len(bad)} parameter(s): {', '.join(bad[:5])}",
                     {"parameters": bad[:20], "n_parameters": len(bad), "loss": sig.loss})


EXPLODING_GRADIENTS = rule(
    "TM303",
    "exploding-gradients",
    "warning",
    summary="The gradient norm jumped far above its running level.",
    what="""
        The global gradient norm of a step was more than `spike_factor` times its recent median, more than
        `spike_z` robust standard deviations above it (in log space) and at least `spike_min_norm` in
        absolute terms, in a script that does not clip its gradients itself (`clip_grad_norm_`,
        `clip_grad_value_`, Lightning's `gradient_clip_val`: its bound holds every step). A spike of
        `spike_extreme` times the median is reported at once; a smaller one when it repeats within the
        window or when the loss has not come back down once the optimizer's memory of the spike has decayed
        (momentum or Adam's beta1 0.9: 10 steps) and `spike_confirm` steps more. A lone outlier batch after
        which training goes on as before, momentum's echo of it included, is not reported.
        """,
    why="""
        Too high a learning rate, deep nets whose layers multiply the gradient (practitioner note 001:
        1.5^100), a bad batch, or attention logits that grew large. Occasional large gradients are normal;
        a jump of an order of magnitude is not.
        """,
    fix="""
        Clip gradients (`torch.nn.utils.clip_grad_norm_`), lower the learning rate, normalize the inputs,
        use a better initialization. Note 000: lr 0.08 with clip 5 exploded, lr 0.02 with clip 2 trained.
        In heal mode the step is clipped to the running bound (in the spirit of ZClip / AutoClip).
        """,
    example="""
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        """,
    references=("ZClip: adaptive spike mitigation (Kumar et al., 2025)", "AutoClip (Seetharaman et al., 2020)"),
)


def detect_exploding_gradients(grad_norm: float, threshold: float, median: float) -> Detection | None:
    """The bare relative test (kept for callers that judge one norm against a bound)."""
    if not (grad_norm > threshold):
        return None
    return Detection(
        EXPLODING_GRADIENTS.code,
        f"gradient norm {_fmt(grad_norm)} is {grad_norm / max(median, 1e-30):.1f}x its running median "
        f"{_fmt(median)}",
        {"grad_norm": grad_norm, "running_median": median, "threshold": threshold},
    )


def judge_gradient_spikes(spikes: list[list[float]], step: int, losses: np.ndarray, steps: np.ndarray,
                          cfg: Thresholds, clip_bound: float | None = None, reported: int = -1,
                          memory: int = 0) -> Detection | None:
    """TM303 from the recent spike candidates ``[step, norm, median, threshold, loss level before, its
    sigma]`` (each already above ``spike_factor`` x the median and ``spike_z`` robust sigmas).

    A candidate counts only when it is at least ``spike_min_norm`` in absolute terms and the script does
    not clip (a clipped script bounds every step itself: ``clip_bound`` is its bound). It is reported:
    at once when it is ``spike_extreme`` x the median; when a second one follows within the window; or
    when, over the ``spike_confirm`` steps after the optimizer's ``memory``, the loss stayed above its level
    before the spike (by ``spike_loss_rel`` relative and ``spike_loss_k`` robust sigmas). A lone spike after
    which the loss goes on as before is a transient outlier, not an explosion.

    ``memory`` (:func:`~trainmedic.signals.stepping.memory_steps`, at most ``4 * spike_confirm``): with
    momentum 0.9 one spiked gradient keeps pushing the weights for about ten steps, and the loss shows that
    echo for as long. A healthy Nesterov run (benchmarks/fresh/multitask.py, seed 0) had one 53x spike after
    which the loss sat near 10x its median for 13 steps and then came back: judged over the ten steps right
    after the spike it read as "the loss stayed up". Whether the loss came back is judged once that push has
    decayed to about 1/e.
    """
    if clip_bound is not None:
        return None
    live = [sp for sp in spikes if sp[0] > reported and sp[1] >= cfg.spike_min_norm]
    if not live:
        return None
    lag = echo_steps(memory, cfg)
    for i, (s, norm, med, threshold, *level) in enumerate(live):
        s = int(s)
        why = None
        if norm >= cfg.spike_extreme * med:
            why = "extreme"
        elif i > 0 and cfg.spike_confirm < s - int(live[i - 1][0]) <= cfg.window:
            why = "repeated"
        elif lag + cfg.spike_confirm <= step - s <= lag + cfg.spike_confirm + cfg.check_every:
            base, sigma = level if len(level) == 2 else (math.nan, math.nan)  # a checkpoint written before levels were kept
            after = losses[(steps > s + lag) & (steps <= s + lag + cfg.spike_confirm)]
            if math.isfinite(base) and len(after):
                if median(after) > base + max(cfg.spike_loss_rel * abs(base), cfg.spike_loss_k * sigma):
                    why = "loss stayed up"
        if why is None:
            continue
        det = detect_exploding_gradients(norm, threshold, med)
        if det is not None:
            det.onset = s
            det.message += {"extreme": "", "repeated": " (repeated within the window)",
                            "loss stayed up": "; the loss did not come back down after it"}[why]
            det.evidence.update({"spike_step": s, "reason": why})
            return det
    return None


def echo_steps(memory: int, cfg: Thresholds) -> int:
    """Steps after a spike before TM303 reads whether the loss came back: the optimizer's memory, kept within
    the ``4 * spike_confirm`` steps of loss before the spike that it is compared with."""
    return min(max(memory, 0), 4 * cfg.spike_confirm)


def _mark_spikes_reported(monitor: Monitor, obs: Observation) -> None:
    monitor.step_window.spikes_reported = obs.step


@detector(EXPLODING_GRADIENTS, cadence=Cadence.STEP, anomaly=True, after_fire=_mark_spikes_reported)
def _exploding_gradients(obs: Observation) -> Detection | None:
    """O(1) unless a spike candidate is pending: the candidates are recorded by the step window."""
    w = obs.monitor.step_window
    if obs.signals is None or not w.spikes or w.spikes[-1][0] <= w.spikes_reported:
        return None
    if obs.step - w.spikes[-1][0] > echo_steps(obs.memory, obs.cfg) + obs.cfg.spike_confirm + obs.cfg.check_every:
        return None  # every candidate has been judged: nothing more to learn about them
    det = judge_gradient_spikes(w.spikes, obs.step, w.losses.values(), w.steps.values(), obs.cfg,
                                obs.signals.clip_bound, w.spikes_reported, obs.memory)
    if det:
        det.evidence["clip_bound"] = w.clip_bound
    return det


VANISHING_GRADIENTS = rule(
    "TM304",
    "vanishing-gradients",
    "warning",
    summary="The first layers receive almost no gradient compared with the last ones.",
    what="""
        Over the whole recent window, the gradient norm of the first layer was below `vanish_ratio`
        times that of the last layer, and below `vanish_first_norm` in absolute terms. The early layers
        barely learn; the network behaves like a shallow one on top of random features.
        """,
    why="""
        Each layer multiplies the backward signal by its Jacobian; with sigmoid (derivative <= 0.25) or
        badly scaled weights the product shrinks geometrically with depth (practitioner note 001: 0.8^100
        is 2e-10). AUTOTRAINER's rule for this case uses the same two conditions.
        """,
    fix="""
        Use ReLU/GELU instead of sigmoid/tanh in hidden layers, Xavier/Kaiming initialization, normalization
        layers (BatchNorm/LayerNorm), residual connections, or fewer layers.
        """,
    example="""
        layers = [nn.Linear(64, 64), nn.Sigmoid()] * 20          # gradients vanish
        layers = [nn.Linear(64, 64), nn.LayerNorm(64), nn.ReLU()] * 20
        """,
    references=("AUTOTRAINER (Zhang et al., ICSE 2021)",),
)


def detect_vanishing(first: np.ndarray, last: np.ndarray, cfg: Thresholds) -> Detection | None:
    """Vanishing needs a live top: when the last layer gets no gradient either the network is dead
    (:func:`detect_dead_network`), and a 0/0 ratio is no evidence of depth attenuating anything."""
    if len(first) < cfg.vanish_min_steps or not median(last) > DEAD_GRAD:
        return None
    ratio = first / np.maximum(last, 1e-38)
    if np.all(ratio < cfg.vanish_ratio) and np.all(first < cfg.vanish_first_norm):
        return Detection(
            VANISHING_GRADIENTS.code,
            f"first-layer gradient norm is {_fmt(float(np.median(ratio)))} of the last layer's "
            f"(median over {len(first)} steps)",
            {"first_layer_norm": float(np.median(first)), "last_layer_norm": float(np.median(last)),
             "ratio": float(np.median(ratio)), "steps": len(first)},
        )
    return None


DEAD_GRAD = 1e-30  # a gradient norm at or below this is exactly zero for our purposes


def detect_dead_network(first: np.ndarray, last: np.ndarray, cfg: Thresholds) -> Detection | None:
    """TM311 without activations: the first and the last weight layer both got exactly zero gradient on
    every step of the window (finite loss). Nothing below the output's bias learns any more."""
    if len(first) < cfg.vanish_min_steps or len(last) != len(first):
        return None
    if np.all(first <= DEAD_GRAD) and np.all(last <= DEAD_GRAD):
        return Detection(
            DEAD_RELU_TRAINING.code,
            f"every weight layer received exactly zero gradient for {len(first)} steps: the network is dead "
            "(its hidden units output constants; not vanishing gradients, nothing reaches any layer)",
            {"steps": len(first), "first_layer_norm": float(np.max(first)), "last_layer_norm": float(np.max(last)),
             "dead": "network"}, key="TM311:network")
    return None


@detector(VANISHING_GRADIENTS, cadence=Cadence.SLOW, order=20)
def _vanishing(obs: Observation) -> Detection | None:
    w = obs.monitor.step_window
    return detect_vanishing(w.first_norms.values(), w.last_norms.values(), obs.cfg)


DIVERGENCE = rule(
    "TM305",
    "divergence",
    "error",
    summary="The smoothed loss rose far above the best it had reached.",
    what="""
        The loss averaged over the last steps is more than `divergence_ratio` times its best value, and
        has given back more than half of the progress made since the start. Training is going the wrong
        way and will not come back by itself.

        Two earlier forms name the learning rate where the main rule has no best to judge against: a loss
        that climbs `divergence_early_factor` times above its starting level within the warm-up (before
        any best exists), and a loss that climbed step after step to `divergence_early_factor` times its
        previous level just before it turned NaN/Inf (reported before TM301/TM302, which are then the
        symptom).
        """,
    why="""
        A learning rate too high for the current region of the loss surface (often after warmup ends or a
        schedule raises it), a momentum too high, or a feedback loop between large weights and large
        gradients (practitioner note 002: the learning rate is the first knob).
        """,
    fix="""
        Lower the learning rate (try /10), add warmup and gradient clipping. In heal mode the weights,
        optimizer and scheduler are rolled back to the last healthy snapshot and the learning rate is
        halved (practitioner note 004's procedure, automated).
        """,
    example="""
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)    # diverges
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        """,
)


def detect_divergence(smoothed: float, best: float, best_step: int, initial: float, cfg: Thresholds,
                      losses: np.ndarray | None = None, steps: np.ndarray | None = None) -> Detection | None:
    """``losses``/``steps`` (the recent window) sharpen the onset: the first step after the best whose
    loss is past halfway from the best to the current level. Without them the onset is the best step."""
    rise = smoothed - best
    progress = max(initial - best, 0.0)
    if rise > (cfg.divergence_ratio - 1.0) * abs(best) and rise > cfg.divergence_progress * progress \
            and rise > 1e-12:
        onset = best_step
        if losses is not None and steps is not None and len(losses):
            up = np.nonzero((steps > best_step) & (losses > best + 0.5 * rise))[0]
            if len(up):
                onset = int(steps[up[0]])
        return Detection(
            DIVERGENCE.code,
            f"smoothed loss {_fmt(smoothed)} is up from its best {_fmt(best)} (step {best_step}); "
            f"initial {_fmt(initial)}",
            {"smoothed_loss": smoothed, "best_smoothed_loss": best, "best_step": best_step,
             "initial_loss": initial, "onset_step": onset},
            onset=onset,
        )
    return None


LOSS_SPIKE = rule(
    "TM306",
    "loss-spike",
    "error",
    summary="The loss jumped far above its running level and did not come back down.",
    what="""
        Within a few steps the loss rose well above the level of the steps before (by more than
        `spike_loss_rel` relative, `spike_loss_k` robust sigmas and a fifth of the progress made), and it
        stayed there for `spike_persist` steps. A spike that comes back down by itself is normal and is
        not reported.
        """,
    why="""
        A learning-rate jump (a schedule restart, a manual change), a run of bad batches, or a step that
        threw the weights into a worse basin. Practitioner note 004 calls it the loss that suddenly
        rebounds: checkpoint whenever the loss improves, notice the rebound, roll back, lower the LR.
        PaLM's training rewound to a checkpoint before a spike and skipped the batches that caused it.
        A jump right after the first step is the first update's doing: the rate is too large for the model
        as initialized, and the message says so.
        """,
    fix="""
        Roll back to a checkpoint from before the jump and lower the learning rate; keep the loss history
        with the checkpoint so the curve continues. Heal mode does exactly this with in-memory snapshots.
        """,
    example="""
        for g in optimizer.param_groups: g["lr"] *= 20      # at epoch 10: the loss rebounds
        medic = trainmedic.Medic(model, optimizer, mode="heal")  # rolls back, halves the lr
        """,
    references=("PaLM (Chowdhery et al., 2022), section 5.1: rewinding on loss spikes",),
)


def detect_loss_spike(losses: np.ndarray, steps: np.ndarray, initial: float, best: float,
                      cfg: Thresholds) -> Detection | None:
    p = cfg.spike_persist
    base_n = max(2 * p, 40)
    if len(losses) < p + base_n:
        return None
    recent, base = losses[-p:], losses[-(p + base_n):-p]
    base_med = median(base)
    sigma = _robust_sigma(base, base_med)
    progress = max(initial - best, 0.0)
    threshold = base_med + max(cfg.spike_loss_rel * abs(base_med), cfg.spike_loss_k * sigma,
                               cfg.spike_loss_progress * progress)
    # "Does not come down": at least three quarters of the recent steps sit above the threshold.
    q = len(recent) // 4
    if float(np.partition(recent, q)[q]) <= threshold:
        return None
    above = np.nonzero(recent > threshold)[0]
    onset = int(steps[-p:][above[0]])
    level = median(recent)
    return Detection(
        LOSS_SPIKE.code,
        f"loss jumped from {_fmt(base_med)} to {_fmt(level)} at step {onset} and stayed up for {p} steps",
        {"baseline": base_med, "level": level, "onset_step": onset, "threshold": threshold,
         "baseline_sigma": sigma},
        onset=onset,
    )


def _rebase(monitor: Monitor, obs: Observation) -> None:
    w = monitor.step_window
    last = w.losses.values(1)
    w.rebase(obs.step)
    if not math.isfinite(w.best):  # reported before any smoothed level existed: the next one sets the best
        w.best, w.best_step = math.inf, -1
    elif len(last) and math.isfinite(float(last[0])) and float(last[0]) > w.best:
        # reported within a few steps of a jump or a climb, the smoothed level still lags below the loss:
        # the curve that follows is judged from where the loss is now, not from before the event
        w.best = float(last[0])


@detector(LOSS_SPIKE, DIVERGENCE, cadence=Cadence.WINDOW, anomaly=True, after_fire=_rebase, curve=True)
def _loss_curve(obs: Observation) -> Detection | None:
    """A spike names its onset more precisely than divergence (the step of the best loss), so it is asked
    first: a rollback then loses fewer good steps."""
    w = obs.monitor.step_window
    losses, steps = w.losses.values(), w.steps.values()
    return (detect_loss_spike(losses, steps, w.initial, w.best, obs.cfg)
            or detect_divergence(w.smoothed, w.best, w.best_step, w.initial, obs.cfg, losses, steps))


def detect_early_divergence(losses: np.ndarray, cfg: Thresholds) -> Detection | None:
    """TM305 before any best exists: the loss of the first steps climbed ``divergence_early_factor`` times
    above where it started, and most steps since then are up there too (not one outlier batch). The main rule cannot see
    this: its initial level and its best are both taken from the blown-up curve."""
    n = len(losses)
    if n < 6:
        return None
    start = float(np.min(losses[:3]))  # the lowest of the first steps: the blow-up may begin at step 1
    now = median(losses[-3:])
    since = median(losses[3:])  # the whole climb, not one outlier batch: most steps since the start are up
    if not (start > 0 and now > cfg.divergence_early_factor * start and since > cfg.divergence_early_factor * start):
        return None
    return Detection(
        DIVERGENCE.code,
        f"the loss rose from {_fmt(start)} to {_fmt(now)} within the first {n} steps, before any best was set: "
        "the learning rate is the likely cause",
        {"initial_loss": start, "smoothed_loss": now, "steps": n, "cause": "learning rate", "early": True},
        onset=0,
    )


def detect_rise_before_nonfinite(losses: np.ndarray, steps: np.ndarray, cfg: Thresholds, initial: float = math.nan,
                                 symptom: str = " before it turned non-finite") -> Detection | None:
    """TM305 named with the NaN: the last finite losses before a non-finite one climbed step after step to
    ``divergence_early_factor`` times the level before them, and above the run's initial loss. A NaN that comes out of a steady loss (dirty
    rows, a log of 0) is not preceded by such a climb and stays TM301/TM302 alone."""
    n = len(losses)
    if n < 4:
        return None
    k = min(3, n - 1)
    tail = losses[-k:]
    base = median(losses[:-k][-40:])
    if not (base > 0 and np.all(np.diff(losses[-(k + 1):]) > 0)):
        return None
    if math.isfinite(initial) and not tail[-1] > initial:
        return None  # not back above where the run started: a climb of a near-zero loss is no divergence
    if tail[-1] > cfg.divergence_early_factor * base and tail[-2] > math.sqrt(cfg.divergence_early_factor) * base:
        return Detection(
            DIVERGENCE.code,
            f"the loss climbed from {_fmt(base)} to {_fmt(float(tail[-1]))} over the last {k} steps{symptom}: "
            "the learning rate is the likely cause",
            {"base_loss": base, "last_finite_loss": float(tail[-1]), "cause": "learning rate",
             "onset_step": int(steps[-k])}, onset=int(steps[-k]),
        )
    return None


@detector(DIVERGENCE, cadence=Cadence.NONFINITE, order=-10, anomaly=True, needs_warmup=False,
          after_fire=_rebase, curve=True)
def _rise_before_nonfinite(obs: Observation) -> Detection | None:
    """Asked before TM301/TM302, so that the cause is reported first and the NaN as its symptom."""
    w = obs.monitor.step_window
    if obs.monitor.consecutive_nonfinite != 1:
        return None  # only the first non-finite step of a run of them
    return detect_rise_before_nonfinite(w.losses.values(), w.steps.values(), obs.cfg, w.initial)


@detector(DIVERGENCE, LOSS_SPIKE, cadence=Cadence.STEP, order=-10, anomaly=True, needs_warmup=False,
          after_fire=_rebase, curve=True)
def _climb(obs: Observation) -> Detection | None:
    """A loss climbing step after step by an order of magnitude is a divergence now, before its gradient
    spikes (TM303) or its NaN (TM301) are reported as the symptoms they are. O(1) until the last four
    losses are strictly increasing. A rise that is one jump followed by smaller increases is a loss spike
    (TM306, :mod:`~trainmedic.rules.shape`): something happened at that step."""
    w = obs.monitor.step_window
    tail = w.losses.values(4)
    if len(tail) < 4 or not (tail[0] < tail[1] < tail[2] < tail[3]):
        return None
    d = detect_rise_before_nonfinite(w.losses.values(), w.steps.values(), obs.cfg, w.initial, symptom="")
    if d is None or not is_jump(tail):
        return d
    at = int(w.steps.values(4)[1])
    # The loss of the first step is the untrained model's: a jump right after it is the first update's doing
    # (a rate too large for the model as initialized), not something that changed mid-run.
    first_update = at <= int(w.steps.values()[0]) + 1 and w.finite_steps == len(w.losses)
    cause = ("the first update did it: the learning rate is too large for the model as initialized (lower it, "
             "or warm up to it)" if first_update else
             "something changed at that step (a warm restart or a change of the learning rate, the data, a bad batch)")
    return Detection(LOSS_SPIKE.code, f"the loss jumped from {_fmt(float(tail[0]))} to {_fmt(float(tail[1]))} at step "
                     f"{at} and rose on from there, by less each step, to {_fmt(float(tail[3]))}: a jump, not a "
                     f"climb - {cause}", {**d.evidence, "shape": "jump", "onset_step": at,
                                          "cause": "the first update" if first_update else "a change at the onset step"},
                     onset=at)


@detector(DIVERGENCE, cadence=Cadence.WINDOW, order=-10, anomaly=True, needs_warmup=False,
          after_fire=_rebase, curve=True)
def _early_divergence(obs: Observation) -> Detection | None:
    w = obs.monitor.step_window
    if w.finite_steps > obs.cfg.warmup_steps + obs.cfg.check_every or len(w.losses) != w.finite_steps:
        return None  # the main rule has a best to judge against from here on (or the window was rebased)
    return detect_early_divergence(w.losses.values(), obs.cfg)


OSCILLATION = rule(
    "TM307",
    "oscillation",
    "warning",
    summary="The loss zigzags up and down with a large amplitude and makes no progress.",
    what="""
        Over the last `osc_window` steps almost every change of the loss reversed the previous one (more
        than `osc_alternation` of them; minibatch noise alone gives about two thirds), the swings were
        large relative to the loss, and the second half of the window was no better than the first.
        """,
    why="""
        The learning rate is just below the divergence point: each step overshoots the minimum along the
        sharpest direction and lands on the other side; or the data is not shuffled and consecutive
        batches alternate between groups that pull the weights in opposite directions (practitioner note
        002: a loss that shakes hard signals a problem even when training continues).
        """,
    fix="""
        Shuffle the data (`DataLoader(..., shuffle=True)`), halve the learning rate, add a decay schedule.
        Heal mode halves the learning rate.
        """,
    example="""
        optimizer = torch.optim.SGD(model.parameters(), lr=1.9 / L)   # near 2/L: zigzag
        """,
)


def detect_oscillation(losses: np.ndarray, cfg: Thresholds) -> Detection | None:
    n = cfg.osc_window
    if len(losses) < n:
        return None
    x = losses[-n:]
    d = np.diff(x)
    nz = d[d != 0]
    if len(nz) < n // 2:
        return None
    alternation = float(np.mean(np.sign(nz[1:]) != np.sign(nz[:-1])))
    level = float(np.mean(np.abs(x)))
    amplitude = float(np.mean(np.abs(d))) / max(level, 1e-12)
    first, second = float(np.mean(x[: n // 2])), float(np.mean(x[n // 2:]))
    progress = (first - second) / max(abs(first), 1e-12)
    if alternation >= cfg.osc_alternation and amplitude >= cfg.osc_amplitude and progress < cfg.osc_max_progress:
        return Detection(
            OSCILLATION.code,
            f"{alternation:.0%} of loss changes reversed direction over {n} steps, swings of "
            f"{amplitude:.0%} of the loss, no progress",
            {"alternation": alternation, "relative_amplitude": amplitude, "progress": progress, "window": n},
        )
    return None


@detector(OSCILLATION, cadence=Cadence.SLOW, order=10, quiet=lambda cfg: cfg.osc_window, curve=True)
def _oscillation(obs: Observation) -> Detection | None:
    return detect_oscillation(obs.monitor.step_window.losses.values(), obs.cfg)


PLATEAU = rule(
    "TM308",
    "plateau",
    "info",
    summary="The monitored loss has not improved for `plateau_patience` evaluations.",
    what="""
        The validation loss (or the epoch's training loss when no validation is given) did not improve by
        more than `plateau_threshold` relative for `plateau_patience` evaluations in a row.
        """,
    why="""
        The learning rate is too large to settle into the minimum it is circling, or the model has learned
        what it can. Practitioner note 002: start with a learning rate and lower it when the metric stops
        improving for some epochs.
        """,
    fix="""
        Reduce the learning rate (`torch.optim.lr_scheduler.ReduceLROnPlateau`), or stop if the model has
        converged. Heal mode multiplies the learning rate by 0.1, with a cooldown.
        """,
    example="""
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=5)
        sched.step(val_loss)
        """,
)


def detect_plateau(values: np.ndarray, cfg: Thresholds) -> Detection | None:
    """``values``: the monitored loss per evaluation since the last learning-rate change."""
    if len(values) <= cfg.plateau_patience:
        return None
    best_i = 0
    for i in range(1, len(values)):
        if values[i] < values[best_i] - cfg.plateau_threshold * abs(values[best_i]):
            best_i = i
    waited = len(values) - 1 - best_i
    if waited >= cfg.plateau_patience:
        return Detection(
            PLATEAU.code,
            f"no improvement for {waited} evaluations (best {_fmt(float(values[best_i]))})",
            {"best": float(values[best_i]), "evaluations_without_improvement": waited,
             "last": float(values[-1])},
        )
    return None


def _restart_plateau(monitor: Monitor, obs: Observation) -> None:
    monitor.restart_plateau(obs.cfg.plateau_cooldown)


@detector(PLATEAU, cadence=Cadence.EPOCH, order=20, exclusive=True, after_fire=_restart_plateau,
          needs_warmup=False, curve=True)
def _plateau(obs: Observation) -> Detection | None:
    m = obs.monitor
    if obs.plateau_scheduler or m.plateau_cooldown > 0:
        return None  # the user's ReduceLROnPlateau answers plateaus; or an lr change is settling
    det = detect_plateau(np.asarray(m.val_hist[m.plateau_from:]), obs.cfg)
    if det:
        det.evidence["monitored"] = "val_loss" if obs.has_val else "train_loss"
    return det


OVERFITTING = rule(
    "TM309",
    "overfitting",
    "warning",
    summary="Validation loss keeps getting worse while the training loss keeps improving.",
    what="""
        The validation loss has not improved for `overfit_patience` evaluations, and since its best it has
        risen along a trend that stands out of the curve's own noise: the robust (Theil-Sen) slope of the
        evaluations since the best is positive by `overfit_t` standard errors, the rise it implies is more
        than `overfit_z` times the scatter of the whole validation curve and more than `overfit_margin` of
        the best value, most evaluations since the best sit above it (their median by more than the
        curve's noise), and the last evaluations are not coming back down. Meanwhile the training loss
        fell by at least `overfit_train_gain` (relative). The model is memorizing the training set. A
        transient bump that recedes, two high evaluations after a flat stretch, or a zigzag as large as
        the rise, is not reported. On a quantized curve (a quarter or more of consecutive evaluations repeat
        their value exactly: an error rate over a small validation set) the noise is at least the curve's
        step, and for a rate in [0, 1] the binomial standard error of its best value on 1/step examples.
        """,
    why="""
        Too little data for the model's capacity, too many epochs, no regularization, or a shortcut in the
        training data that does not hold on validation (practitioner note 004: a model learns whatever
        separates the labels).
        """,
    fix="""
        Stop early and keep the best weights, add weight decay or dropout, augment or collect more data,
        use a smaller model. Heal mode stops and restores the weights of the best evaluation.
        """,
    example="""
        medic.end_epoch(val_loss=evaluate(model))
        if medic.should_stop:      # set on TM309 in heal mode, best weights restored
            break
        """,
)


def detect_overfitting(val: np.ndarray, train: np.ndarray, cfg: Thresholds,
                       monitored_as: str = "val_loss") -> Detection | None:
    """The validation curve judged against its own noise and trend (:func:`~trainmedic.rules.curves.
    overfitting_evidence`): a bump inside the scatter, or one that comes back down, is not overfitting.

    ``monitored_as`` (:attr:`Monitor.monitored_as`) only words the message: a higher-is-better metric is
    judged negated (lower is better for every rule) and reported as the user logged it, "fell from 0.85 to
    0.80", not as a loss that "rose from -0.85 to -0.80"."""
    ev = overfitting_evidence(val, train, patience=cfg.overfit_patience, margin=cfg.overfit_margin,
                              train_gain=cfg.overfit_train_gain, z=cfg.overfit_z, t_min=cfg.overfit_t)
    if not ev.overfitting:
        return None
    b = ev.best_index
    sign, what, moved = (-1.0, "validation metric", "fell") if monitored_as == "-val_metric" else (
        (1.0, "validation metric", "rose") if monitored_as == "val_metric" else (1.0, "validation loss", "rose"))
    best, last = sign * float(val[b]), sign * float(val[-1])
    key = "val_metric" if what == "validation metric" else "val_loss"
    return Detection(
        OVERFITTING.code,
        f"{what} {moved} from {_fmt(best)} to {_fmt(last)} over {ev.waited} "
        f"evaluations (trend {'-' if sign < 0 else '+'}{_fmt(ev.rise)}, {ev.rise / max(ev.noise, 1e-30):.1f}x "
        f"the curve's noise) while training loss fell from {_fmt(float(train[b]))} to {_fmt(float(train[-1]))}",
        {f"best_{key}": best, "best_evaluation": b, key: last, "monitored": monitored_as,
         "train_loss_at_best": float(train[b]), "train_loss": float(train[-1]), **ev.as_dict()},
    )


@detector(OVERFITTING, cadence=Cadence.EPOCH, order=10, exclusive=True, needs_warmup=False, curve=True)
def _overfitting(obs: Observation) -> Detection | None:
    m = obs.monitor
    if not obs.has_val:
        return None
    det = detect_overfitting(np.asarray(m.val_hist), np.asarray(m.train_hist), obs.cfg, m.monitored_as)
    if det:
        det.evidence["best_epoch"] = m.best_epoch
    return det


GRADS_NEVER_ZEROED = rule(
    "TM310",
    "grads-never-zeroed",
    "error",
    summary="The optimizer stepped again on gradients that were never reset.",
    what="""
        PyTorch adds every `backward()` into `.grad`. At this step the gradients of the previous step were
        still there when the new backward ran, so the update used the sum of all gradients since the start
        of training: steps grow, then the run diverges or stalls. Intentional accumulation (several
        backwards, one step, then `zero_grad()`) is recognised and not reported.
        """,
    why="""
        `optimizer.zero_grad()` was forgotten, placed outside the loop, or called on a different
        optimizer/model than the one that steps (practitioner note 003).
        """,
    fix="""
        Call `optimizer.zero_grad()` once per step, before `loss.backward()` (or right after
        `optimizer.step()`). Heal mode zeroes the gradients after each step from then on.
        """,
    example="""
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()          # missing: optimizer.zero_grad()
        """,
)


def detect_stale_gradients(stale_steps: int, backwards: int, cfg: Thresholds) -> Detection | None:
    if stale_steps < cfg.accumulate_min_repeats:
        return None
    return Detection(
        GRADS_NEVER_ZEROED.code,
        f"{stale_steps} steps in a row found the previous step's gradients still in .grad",
        {"stale_steps": stale_steps, "backwards_before_step": backwards},
    )


@detector(GRADS_NEVER_ZEROED, cadence=Cadence.EVERY, needs_warmup=False)
def _stale_gradients(obs: Observation) -> Detection | None:
    if obs.signals is None or not (obs.signals.stale or 0) > 0:
        return None
    return detect_stale_gradients(obs.monitor.stale_run, obs.signals.backwards, obs.cfg)


DEAD_RELU_TRAINING = rule(
    "TM311",
    "dead-relu-training",
    "warning",
    summary="Most units of a ReLU layer stay inactive over a window of training, or the whole network is dead.",
    what="""
        Sampled forward passes show that most units of the named ReLU layer output zero for every sample.
        Dead units get no gradient and never recover. Without sampled activations the same state is seen in
        the gradients: the first and the last weight layer both receive exactly zero gradient on every step
        of the window while the loss is finite (a dead network, not vanishing gradients: nothing reaches
        any layer, so there is no first-to-last ratio to speak of).
        """,
    why="A learning rate spike pushed biases negative, a bad init, or inputs that are not centered.",
    fix="Lower the learning rate, use LeakyReLU/GELU, Kaiming init, normalize the inputs.",
    example="nn.ReLU()  ->  nn.LeakyReLU(0.01)",
)

@detector(DEAD_RELU_TRAINING, cadence=Cadence.SLOW, order=19)
def _all_gradients_zero(obs: Observation) -> Detection | None:
    if reported_dead(obs):
        return None
    w = obs.monitor.step_window
    return detect_dead_network(w.first_norms.values(), w.last_norms.values(), obs.cfg)


@detector(DEAD_RELU_TRAINING, cadence=Cadence.ACTIVATIONS, needs_warmup=False)
def _dead_relu_training(obs: Observation) -> list[Detection]:
    """One finding per layer, when the layer was dead on ``dead_relu_samples`` sampled batches in a row
    (also after TM318: which layer died is news that the first layer's zero gradient does not give)."""
    out = []
    for layer, dead in obs.activations.items():
        if obs.monitor.dead_runs.get(layer, 0) == obs.cfg.dead_relu_samples:
            out.append(Detection(
                DEAD_RELU_TRAINING.code,
                f"{dead:.0%} of the units of ReLU layer '{layer}' were never positive on "
                f"{obs.cfg.dead_relu_samples} sampled batches in a row",
                {"layer": layer, "dead_fraction": dead, "samples": obs.cfg.dead_relu_samples,
                 "sample_every": obs.cfg.activation_every}, key=f"TM311:{layer}"))
    return out


STALLED_UPDATES = rule(
    "TM312",
    "stalled-updates",
    "warning",
    summary="The optimizer steps barely change the weights.",
    what="""
        The ratio of the update's norm to the weights' norm, sampled every `ratio_every` steps, stayed
        below `stall_ratio` (or the weights did not change at all). A healthy run moves the weights by
        roughly 1e-4 to 1e-2 of their norm per step.
        """,
    why="""
        A learning rate of (almost) zero, a scheduler that decayed it away, an optimizer that holds other
        tensors than the model's parameters, or gradients that are all zero.
        """,
    fix="Check the learning rate and the optimizer's parameters; run an LR range test (`trainmedic lr-find`).",
    example="""
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-9)   # updates ~1e-9 of the weights
        """,
)


def detect_stalled(ratios: np.ndarray, cfg: Thresholds) -> Detection | None:
    if len(ratios) < cfg.stall_samples:
        return None
    recent = ratios[-cfg.stall_samples:]
    if np.all(recent < cfg.stall_ratio):
        return Detection(
            STALLED_UPDATES.code,
            f"updates moved the weights by {_fmt(float(np.median(recent)))} of their norm "
            f"(last {len(recent)} samples)",
            {"update_ratio": float(np.median(recent)), "samples": len(recent)},
        )
    return None


@detector(STALLED_UPDATES, cadence=Cadence.SLOW, order=30)
def _stalled(obs: Observation) -> Detection | None:
    return detect_stalled(obs.monitor.ratios.values(), obs.cfg)


AMP_SCALE_COLLAPSE = rule(
    "TM314",
    "amp-scale-collapse",
    "warning",
    summary="The GradScaler keeps skipping steps or its scale keeps falling.",
    what="""
        With mixed precision, a GradScaler skips a step and halves its scale when the scaled gradients
        overflow. An occasional skip is normal. Here it skipped `amp_max_consecutive_skips` steps in a
        row, or the scale fell below `amp_min_scale`: the gradients are non-finite even unscaled, and the
        model is not being trained.
        """,
    why="A real NaN/Inf in the forward or backward (see TM301/TM302), or a float16 overflow in activations.",
    fix="Find the non-finite op (TM210), use bfloat16 autocast, keep the loss in float32.",
    example="""
        with torch.autocast("cuda", dtype=torch.bfloat16):   # no scaler needed
            loss = loss_fn(model(x), y)
        """,
)


def detect_amp_collapse(consecutive_skips: int, scale: float, cfg: Thresholds) -> Detection | None:
    if consecutive_skips >= cfg.amp_max_consecutive_skips or (0 < scale < cfg.amp_min_scale):
        return Detection(
            AMP_SCALE_COLLAPSE.code,
            f"GradScaler skipped {consecutive_skips} steps in a row; scale {_fmt(scale)}",
            {"consecutive_skips": consecutive_skips, "scale": scale},
        )
    return None


@detector(AMP_SCALE_COLLAPSE, cadence=Cadence.NONFINITE, order=10, needs_warmup=False)
def _amp_collapse(obs: Observation) -> Detection | None:
    """Only a long run of GradScaler skips is a problem; an occasional overflow is how the scaler works."""
    m = obs.monitor
    if not obs.has_scaler or m.amp_skips < obs.cfg.amp_max_consecutive_skips:
        return None
    return detect_amp_collapse(m.amp_skips, float(obs.scale or 0.0), obs.cfg)


SLOW_CONVERGENCE = rule(
    "TM315",
    "slow-convergence",
    "warning",
    summary="The loss barely moved over a long early window, with tiny updates.",
    what="""
        After `slow_window` steps the smoothed loss had improved by less than `slow_min_gain` of its
        initial value, while the updates were below `slow_max_ratio` of the weights: the learning rate is
        too small for this problem. A training phase that ends sooner (a short run, or a pre-training
        whose program then moves on to a new optimizer) is judged the same way over all its steps, from
        `slow_min_steps` on.
        """,
    why="""
        A learning rate several orders of magnitude too small (practitioner note 001: a too small rate
        makes training crawl; note 002: start at 0.1 and divide by 10).
        """,
    fix="Raise the learning rate; find the range with an LR range test (`trainmedic.lr_find`).",
    example="""
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)   # crawls
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
        """,
)


def detect_slow_convergence(early: np.ndarray, recent: np.ndarray, ratios: np.ndarray,
                            cfg: Thresholds, steps: int | None = None) -> Detection | None:
    if len(early) == 0 or len(recent) == 0:
        return None
    start, now = float(np.mean(early)), float(np.mean(recent))
    gain = (start - now) / max(abs(start), 1e-12)
    ratio = float(np.median(ratios)) if len(ratios) else math.nan
    steps = cfg.slow_window if steps is None else steps
    if gain < cfg.slow_min_gain and not (ratio >= cfg.slow_max_ratio):
        return Detection(
            SLOW_CONVERGENCE.code,
            f"loss moved from {_fmt(start)} to {_fmt(now)} ({gain:+.1%}) in {steps} steps; "
            f"update/weight ratio {_fmt(ratio)}",
            {"initial_loss": start, "loss": now, "relative_gain": gain, "update_ratio": ratio,
             "steps": steps},
        )
    return None


@detector(SLOW_CONVERGENCE, cadence=Cadence.SLOW, order=40, once=True)
def _slow_convergence(obs: Observation) -> Detection | None | list[Detection]:
    w, cfg = obs.monitor.step_window, obs.cfg
    steps = min(w.finite_steps, cfg.slow_window)
    if steps < cfg.slow_window and not (obs.final and steps >= cfg.slow_min_steps):
        return None  # the window is not complete, and the phase goes on (or was too short to judge)
    det = detect_slow_convergence(np.asarray(w.initial_parts), w.losses.values()[-cfg.smooth:],
                                  obs.monitor.ratios.values(), cfg, steps)
    return det if det else []  # [] (not None): it has run, and does not run again


HEAL_EXHAUSTED = rule(
    "TM316",
    "heal-exhausted",
    "error",
    summary="Heal mode used up its budget of rollbacks or reached its minimum learning rate.",
    what="""
        The run kept failing after `max_rollbacks` rollbacks, or the learning rate could not be lowered
        below `min_lr`. trainmedic stops repairing so it can never loop forever, and sets `should_stop`.
        """,
    why="The fault is not one a smaller learning rate can fix: broken data, a wrong loss, a bug in the model.",
    fix="Read the other findings of the run; TM210 and TM313 name the op and the rows behind a NaN.",
    example="if medic.should_stop: break",
)
