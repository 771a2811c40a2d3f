"""TM343: the rate audit at the first evaluation found the learning rate too high (issue 12, round five).

The audit itself lives in :mod:`trainmedic.heal.rate_audit` (a Medic callback, with ``loss_fn=`` and
``batch=``, or under ``trainmedic run`` with the script's loss rebuilt by
:mod:`trainmedic.instrument.loss_rebuild`; heal mode acts on it, watch mode only reports it); this module holds the rule's documentation, as ``rules/forensics.py`` does
for the forensics callback.
"""

from trainmedic.rules.registry import rule

RATE_TOO_HIGH = rule(
    "TM343",
    "rate-too-high-audit",
    "warning",
    summary="On copies of the run, a lower learning rate clearly beat the current one on held-back batches.",
    what="""
        At the first evaluation (and, after a cut, at the next one; an evaluation with fewer than
        `rate_audit_train_batches` + `rate_audit_held_batches` recent batches waits for the next one),
        the audit replays recent batches on three copies of the model and optimizer, from the current weights and optimizer state, at the current
        rate and at 1/3 and 1/10 of it (`rate_audit_passes` passes over `rate_audit_train_batches`
        batches), then compares their losses on `rate_audit_held_batches` other recent batches, none of
        which the copies trained on. The finding means a lower rate's held loss was more than
        `rate_audit_gain` (4.5 %) below the current rate's: the run learns, but it bounces around at a
        level a lower rate gets below within a few dozen steps. The evidence gives the ratios.
        Measured at the first evaluation (`benchmarks/healz_evidence.py audit`, `HEAL_RESULTS.md` "Round
        five"): at their tuned rates the Adam, AdamW and RMSprop tasks give a best ratio of 0.972 to 1.13
        (four tasks, twelve seeds: a lower rate does not win, or by at most 2.8 %); at 10x and 30x the tuned
        rate the Adam and AdamW tasks give 0.44 to 0.94 (four seeds). Later in training the tuned runs'
        ratios fall towards the threshold (0.956 after three epochs), hence the first evaluation only. The audit does not run while the loss is
        still within `not_learning_margin` of the run's first loss (that is TM317's question; below it, TM317
        cannot fire and the audit judges the run), and not for plain SGD, with or without
        momentum: at its tuned rate a lower one wins these replays by 6 to 17 % on the regression task and
        the CNN's ratios swing from 0.67 to 1.73 (the short-horizon bias and noise), so the comparison
        says nothing there. Under `trainmedic run --heal` the replays use the script's loss rebuilt from
        its first steps, only where it is one `torch.nn.functional` loss (or `nn` loss module) applied to
        the model's output unchanged, and the script does not clip its gradients (the replays take plain
        steps); otherwise the audit does not run. Under a learning-rate scheduler it runs only where the
        schedule held the rate over the replayed steps (not in a warmup's climb nor across a step
        scheduler's drop), the copies' rates anneal linearly to 0 (a decaying schedule's future: a
        constant replay found lower rates better at the best peak rate of a cosine schedule), and heal's
        restart keeps the scheduler's place and scales its base rates instead of probing; a `CyclicLR` or a
        scheduler that is not torch's is refused (TM904).
        """,
    why="""
        A learning rate several times too high for an adaptive optimizer does not diverge: Adam's
        normalized steps have a fixed size, so the weights keep moving by about the rate per coordinate
        and the loss settles at a noise floor set by the rate, well above the tuned run's, with no spike,
        no plateau at the start level and nothing a per-step detector sees.
        """,
    fix="""
        Lower the learning rate (the ratios say by how much helped on the copies), or add a warmup or a
        decay schedule. Watch mode reports and changes nothing (it audits models of at most
        `rate_audit_watch_max_params` parameters whose kept batches fit `rate_audit_watch_max_bytes`;
        `rate_audit_watch=False` keeps the audit to heal mode). Heal mode restarts: at the next step it rolls back to the initial snapshot (step 0)
        and runs the probe it uses after early instability, `probe_steps` rates rising over three decades up
        to the audited rate and never above it, then warms up linearly (`heal_warmup_steps`) to the rate
        the probe supports; the finding's action reads "restart from step 0, probe up to <rate>, warmup".
        After an epoch at 10-30x the rate the weights sit in a poor basin that a lower rate from there
        does not leave; restarting from them did better than cutting on the heal benchmark. The restart
        is for an evaluation within `rate_audit_window` (64) steps of the last evaluation at which the run
        was not yet learning, or of the start (steps at the first loss are no training lost): later it would
        throw away too much training (a held-out autoencoder first evaluated after 3-5 epochs got false
        restarts in 10 of 24 runs without this limit). Later, with `rate_audit_restart=False`, or when no initial snapshot or
        no rollback or probe budget is left, heal cuts the rate by the factor that won, keeping the weights,
        and audits again at the next evaluation, at most `rate_audit_max_cuts` times. Under a scheduler
        the restart rolls back the weights and optimizer state only, the scheduler keeps its place, and
        every rate and the scheduler's base rates are multiplied by the factor that won ("restart from step
        0, schedule x<factor>"); a cut scales the base rates too, so either survives the scheduler's steps.
        """,
    example="""
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)   # tuned: 1e-3
        medic = trainmedic.Medic(model, optimizer, mode="heal", loss_fn=F.cross_entropy)
        ...  medic.step(loss, batch=(x, y))
        """,
)
