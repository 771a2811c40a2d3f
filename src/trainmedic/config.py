"""Every threshold the run-time detectors and heal policy use, in one overridable place.

The defaults were calibrated on the pathology zoo (``benchmarks/zoo.py``): each must catch its fault and
stay silent on every healthy control. Override any of them with ``Medic(..., thresholds=dict(...))`` or
``Thresholds(...)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    # --- windows -------------------------------------------------------------------------------
    warmup_steps: int = 20  # statistical detectors stay silent before this many finite steps
    window: int = 128  # recent steps kept for the window detectors
    check_every: int = 10  # loss-level window detectors run every k steps (O(1) checks run every step)
    slow_check_every: int = 50  # oscillation, vanishing and stalled-update detectors run every k steps
    smooth: int = 10  # steps averaged into the smoothed loss

    # --- TM303 exploding gradients: robust z-score of log grad norm over the window -------------
    spike_factor: float = 10.0  # grad norm above this multiple of the running median ...
    spike_z: float = 6.0  # ... and above this robust z-score (log space, MAD-based)
    clip_z: float = 3.0  # heal clips a spike to exp(median + clip_z * robust sigma) of log norms
    spike_min_norm: float = 1.0  # ... and at least this large in absolute terms (0.36 vs 0.035 is no explosion)
    spike_extreme: float = 1000.0  # a spike this many times the median is reported at once; a smaller one
    spike_confirm: int = 10  # ... only if it repeats within the window or the loss stays up this many steps
    # after the optimizer's memory of it (1 / (1 - momentum or beta1) steps, signals/stepping.py)

    # --- TM304 vanishing gradients (AUTOTRAINER) -----------------------------------------------
    vanish_ratio: float = 1e-3  # first/last layer gradient-norm ratio below this ...
    vanish_first_norm: float = 1e-4  # ... and first-layer norm below this, over the whole window
    vanish_min_steps: int = 50

    # --- TM305 divergence ----------------------------------------------------------------------
    divergence_ratio: float = 4.0  # smoothed loss above this multiple of its best ...
    divergence_progress: float = 0.5  # ... and risen by more than this share of the progress made
    divergence_early_factor: float = 10.0  # before any best (warm-up) or just before a NaN: a climb this many
    #   times above the starting level names the learning rate (TM305 reported before TM301/TM302)

    # --- TM306 loss spike that does not come down ------------------------------------------------
    spike_loss_rel: float = 0.5  # recent median above baseline by this relative amount ...
    spike_loss_k: float = 8.0  # ... and by this many robust sigmas of the baseline window
    spike_loss_progress: float = 0.2  # ... and by this share of the progress made so far
    spike_persist: int = 20  # and it stays up for this many steps

    # --- TM307 oscillation ---------------------------------------------------------------------
    osc_window: int = 64
    osc_alternation: float = 0.9  # share of consecutive differences that change sign (iid noise: 2/3)
    osc_amplitude: float = 0.2  # mean |difference| relative to the mean loss
    osc_max_progress: float = 0.05  # and the window's second half no better than this share

    # --- TM308 plateau / TM309 overfitting (per evaluation, ReduceLROnPlateau semantics) ----------
    plateau_patience: int = 5
    plateau_threshold: float = 1e-3  # relative improvement that counts as progress
    plateau_cooldown: int = 2
    overfit_patience: int = 4
    overfit_margin: float = 0.05  # validation loss this far (relative) above its best
    overfit_train_gain: float = 0.1  # while the training loss improved by at least this much
    overfit_z: float = 3.0  # the validation trend's rise since its best, in units of the curve's own noise
    overfit_t: float = 2.0  # the Theil-Sen slope since the best, in standard errors of its residuals

    # --- TM310 grads never zeroed ----------------------------------------------------------------
    accumulate_min_repeats: int = 2  # steps in a row that find stale gradients before it is reported

    # --- TM311 dead ReLUs during training (sampled forward passes) -------------------------------
    activation_every: int = 100  # one training forward pass in this many steps is sampled
    dead_relu_fraction: float = 0.9  # share of a ReLU layer's units never positive on the sampled batch ...
    dead_relu_samples: int = 3  # ... on this many samples in a row

    # --- TM312 stalled updates / TM315 slow convergence -----------------------------------------
    ratio_every: int = 25  # update/weight ratio sampled every k steps
    stall_ratio: float = 1e-7
    stall_samples: int = 4
    slow_window: int = 200  # steps after which early progress is judged
    slow_min_gain: float = 0.02  # relative loss improvement expected over that window
    slow_max_ratio: float = 1e-4  # and only when the updates are this small (a low learning rate)
    slow_min_steps: int = 50  # a phase that ends before slow_window is judged over all its steps from this many

    # --- TM314 AMP scale collapse ----------------------------------------------------------------
    amp_max_consecutive_skips: int = 8
    amp_min_scale: float = 1.0

    # --- heal policy -----------------------------------------------------------------------------
    snapshot_every: int = 25
    snapshots_kept: int = 3
    nonfinite_rollback_after: int = 3  # consecutive non-finite steps that trigger a rollback
    max_rollbacks: int = 5
    rollback_lr_factor: float = 0.5
    oscillation_lr_factor: float = 0.5
    plateau_lr_factor: float = 0.1
    min_lr: float = 1e-8
    recovery_grace: int = 0  # extra quiet steps after a rollback (warmup_steps applies anyway)
    # The rate after a rollback is chosen by a short learning-rate probe from the snapshot (issue 12):
    # 36 steps over 3 decades below the rate that failed is 12 rates a decade, the density lr_find was
    # calibrated with; 4 probes bound what heal spends on probing, as max_rollbacks bounds rollbacks.
    probe_steps: int = 36  # 0: no probe, a rollback halves the rate (rollback_lr_factor) as before
    max_probes: int = 4
    heal_warmup_steps: int = 50  # linear warmup to the probed rate when heal restarts from the first steps
    # Plain SGD with loss_fn= and batch= (or run's rebuilt loss, or Lightning's loss_fn=): once a probe is
    # done, copies from its snapshot replay its batches at the rate its curve supports, 1/2 and 1/4 of it,
    # and heal continues at the best (heal/probe_replay.py).
    probe_replay: bool = True
    # A probe from the first steps is itself an exponential warmup: for plain SGD heal copies the state
    # every `probe_rewind_every` probe steps (the `probe_rewind_keep` latest) and continues from the copy
    # taken where the ramp reached the chosen rate, instead of the restored snapshot plus a linear warmup
    # (benchmarks/heal_rewind.py; heal/policy.py). 0: restore and warm up, as before.
    probe_rewind_every: int = 3
    probe_rewind_keep: int = 8
    # SGD with momentum: the same copies, and after a clear valley heal continues from the one taken at the
    # probe's lowest loss, at the chosen rate, without the warmup (heal/steering.py `Steering.rewind_rate`;
    # HEAL_RESULTS.md round seven). Memory while such a probe runs: up to `probe_rewind_keep` copies of the
    # weights and the momentum buffer, on the model's device (plain SGD: of the weights). False: restore the
    # snapshot and warm up, as before.
    probe_rewind_best: bool = True
    # After a clear valley, optimizers with momentum or running moments (the minimum/10 rule) read the valley at
    # its edge: the highest rate after the lowest point up to which the smoothed probe curve stays within this
    # many standard errors of that point, and no step's loss rose above where the probe started (heal/lr_probe.py
    # `valley_edge`). Where the bottom is flat, where in it the lowest point falls is noise. Plain SGD (minimum/2,
    # the replay) keeps the lowest point. 0: the lowest point for every optimizer, as before (HEAL_RESULTS.md
    # round eight).
    probe_valley_edge_z: float = 2.0
    early_steps: int = 50  # trouble that began before this step is "the run started unstable"
    # TM343, the rate audit (heal/rate_audit.py; an adaptive optimizer, loss_fn= and batch=; acts in heal mode): at the
    # first evaluation, copies replay `rate_audit_passes` passes over `rate_audit_train_batches` recent batches at
    # the rate and at 1/3 and 1/10 of it; a lower rate whose loss on `rate_audit_held_batches` other recent
    # batches is more than `rate_audit_gain` below the rate's wins, and heal moves to it (benchmarks/
    # healz_evidence.py: tuned Adam/AdamW/RMSprop runs 0.972-1.13 of the rate's loss, 10x-30x too high 0.44-0.94)
    rate_audit: bool = True
    rate_audit_train_batches: int = 16
    rate_audit_held_batches: int = 8
    rate_audit_passes: int = 2
    rate_audit_gain: float = 0.045
    rate_audit_max_cuts: int = 3
    # Heal's answer (heal/rate_answer.py): roll back to the initial snapshot and probe below the audited rate, then
    # warm up - the weights after an epoch at 10-30x sit in a poor basin a cut does not leave - when the audit's
    # evaluation comes within `rate_audit_window` steps of the last evaluation at which the run was not yet
    # learning, or of the start (later, a restart throws away too much: a held-out autoencoder first evaluated
    # after 3-5 epochs got false restarts in 10/24 runs without it); else, or with
    # `rate_audit_restart=False`, or no snapshot or budget for it, cut the rate and keep the weights
    rate_audit_restart: bool = True
    rate_audit_window: int = 64
    # In watch mode the audit runs too (copies only; it reports TM343 and changes nothing), where the model has
    # at most `rate_audit_watch_max_params` parameters: its copies hold one more model and optimizer state for
    # the length of the audit, a cost a watch run did not opt into for a large model. False: heal mode only.
    # The same for the batches it keeps (`rate_audit_train_batches` + `rate_audit_held_batches` of them, on the
    # device they came on): in watch mode it stands aside when they would hold more than this many bytes.
    rate_audit_watch: bool = True
    rate_audit_watch_max_params: int = 50_000_000
    rate_audit_watch_max_bytes: int = 256 * 2**20

    # --- TM317 not learning / TM318 dead network / TM319 harmful rate raise ----------------------
    not_learning_window: int = 50  # steps at the no-learning level, with no downward trend beyond noise
    not_learning_margin: float = 0.1  # the window's median at most this share below the first loss (one batch)
    not_learning_min_ratio: float = 1e-4  # and the update/weight ratio above this: the rate is not low
    dead_steps: int = 10  # steps in a row with an exactly zero first-layer gradient
    raise_factor: float = 1.5  # the loop multiplied the rate by more than this between two steps ...
    raise_window: int = 50  # ... and the loss level of this many steps after it is above the steps before

    # TM317's second reference, the loss of the best constant prediction (signals/levels.py): the window sits
    # within these bounds of it and the sampled predictions no longer depend on the input
    level_margin: float = 0.05  # the window's median at most this share below the constant level ...
    level_band: float = 0.25  # ... and at most this share above it
    level_gain: float = 0.01  # |loss of the batch's mean prediction - the prediction's loss| below this share
    #   of the level in every sample of the window: the output ignores the input (a learning net gains more)

    # --- TM205 started wrong (rules/levels.py) ---------------------------------------------------
    started_wrong_factor: float = 10.0  # the first loss above this multiple of a neutral output's loss (log K,
    #   log 2, the mean squared target + 1): a sound init starts within ~2x of it, an N(0, 1) init 10-1000x above
    started_wrong_input_rms: float = 3.0  # ... unless the model's input is this large (RMS): unscaled inputs (TM108)

    def replace(self, **changes: Any) -> Thresholds:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(
                f"unknown threshold(s) {sorted(unknown)}; known: {sorted(f.name for f in fields(self))}"
            )
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
