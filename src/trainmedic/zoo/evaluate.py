"""Run a zoo case the way the demo and ``benchmarks/zoo.py`` judge it: watch, heal and the healthy baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trainmedic.zoo import Case


def evaluate(case: Case, seed: int = 0, out: Path | None = None) -> dict[str, Any]:
    """Detection in watch mode, the heal outcome against the healthy baseline, and false alarms.

    For a fault case: ``detected`` (an expected code was raised), ``first_step`` of it, ``heal_metric``
    and ``healthy_metric`` (validation loss where the script has one, else the last epoch's training
    loss) and the heal ``actions``. Healthy baselines (``fault=False``) and controls contribute
    ``false_alarms``: warning or error findings on a run that has nothing wrong.
    """
    mod = case.load()
    t0 = time.perf_counter()
    row: dict[str, Any] = {"case": case.module, "title": case.title, "control": case.control,
                           "expect": sorted(case.expect), "seed": seed}
    false_alarms: list[str] = []
    if case.control:
        for mode in ("watch", "heal"):
            res = mod.train(mode=mode, seed=seed)
            false_alarms += [f"{mode}:{c}" for c in res.problems()]
            if out is not None and mode == "watch":
                res.medic.save_report(out / case.module)
        row.update(detected=None, found=[], false_alarms=false_alarms)
    else:
        watch = mod.train(mode="watch", seed=seed)
        heal = mod.train(mode="heal", seed=seed)
        healthy = mod.train(mode="watch", fault=False, seed=seed)
        false_alarms += [f"healthy:{c}" for c in healthy.problems()]
        hits = [f for f in watch.medic.findings if f.code in case.expect]
        first = min(hits, key=lambda f: f.step) if hits else None

        def metric(r):
            return r.val_loss if r.val_loss is not None else r.final_loss

        actions: dict[str, int] = {}
        for e in heal.medic.events:
            if e["type"] == "action":
                actions[e["action"]] = actions.get(e["action"], 0) + 1
        row.update(
            detected=bool(hits), found=[f"{f.code}@{f.step}" for f in watch.medic.findings],
            first_code=first.code if first else None, first_step=first.step if first else None,
            watch_metric=metric(watch), heal_metric=metric(heal), healthy_metric=metric(healthy),
            healable=case.healable, actions=actions, false_alarms=false_alarms,
        )
        if out is not None:
            heal.medic.save_report(out / case.module)
    row["seconds"] = time.perf_counter() - t0
    return row
