# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# fitF: replays stopping rules on gbm_rounds.py's records (regression tables): for each fold, the round at which
# the rule would have stopped lgb.cv's mean curve, the refit's rounds (x K/(K-1)), the outer fold's LightGBM
# prediction at that round (the refitted booster's staged predictions), fit's blend with the other members'
# unchanged out-of-fold predictions, and the estimated LightGBM time (cv time scaled by rounds run, refit by
# rounds).
#   PYTHONPATH=src python benchmarks/house_experiments/gbm_replay.py /tmp/fitF/house_0.pkl [...]
# BASE.pkl:VARIANT.pkl: the variant's LightGBM records (e.g. another rate, models=lightgbm) blended with the
# base run's network and linear member.
import pickle, sys
import numpy as np
from trainmedic.tabular import blend as B

PATIENCE = 300


def stop(m: np.ndarray, rule: str, r: float, std: np.ndarray) -> int:
    """Rounds chosen (1-based) by early stopping with patience 300 where an improvement counts only when the
    mean curve goes below best - delta; delta = r * (m[0] - best) ('gain') or r * std at best ('std')."""
    best, bi = m[0], 0
    for i in range(1, len(m)):
        delta = r * (m[0] - best) if rule == "gain" else r * std[bi]
        if m[i] < best - delta:
            best, bi = m[i], i
        if i - bi >= PATIENCE:
            break
    return bi + 1


def replay(d: dict, rule: str, r: float) -> dict:
    task = "log-regression" if d["table"] == "house" else "regression"
    oof = {k: v.copy() for k, v in d["oof"].items() if k not in ("blend",)}
    t_old = t_new = 0.0
    rounds = []
    for rec, (tr, va) in zip(d["rec"], d["folds"]):
        m, n_old = rec["mean"], rec["refit_rounds"]
        b = stop(m, rule, r, rec["std"])
        n = max(10, int(round(b * 3 / 2)))
        rounds.append(b)
        oof["lightgbm"][va] = rec["staged_raw"][:, n - 1] if rule != "avg" else rec["avg_raw"]
        t_old += rec["cv_s"] + rec["refit_s"]
        ran_old, ran_new = min(len(m) + PATIENCE, 8000), min(b + PATIENCE, 8000)
        t_new += rec["cv_s"] * ran_new / ran_old + (rec["refit_s"] * n / n_old if rule != "avg" else 0.0)
    names = ["mlp", "lightgbm", "linear"]
    preds = [oof[k] for k in names]
    w = B.fit_weights(task, preds, d["y"])
    bl = B.apply_weights(task, preds, w)
    score = lambda p: float(np.mean([list(B.score(task, p[va], d["y"][va]).values())[0] for _, va in d["folds"]]))
    return {"rounds": rounds, "lgb": score(oof["lightgbm"]), "blend": score(bl), "t_old": t_old, "t_new": t_new}


for path in sys.argv[1:]:
    d = pickle.load(open(path.split(":")[0], "rb"))
    if ":" in path:
        v = pickle.load(open(path.split(":")[1], "rb"))
        d["rec"] = v["rec"]
        d["oof"]["lightgbm"] = v["oof"]["lightgbm"]
        d["models"]["lightgbm"] = v["models"]["lightgbm"]
        print(path, "variant lightgbm wall", round(v["wall"], 1))
    base = replay(d, "gain", 0.0)
    print(f"{d['table']} seed {d['seed']}: recorded lightgbm {d['models']['lightgbm']:.5f} blend {d['models']['blend']:.5f};"
          f" replay r=0: lightgbm {base['lgb']:.5f} blend {base['blend']:.5f} rounds {base['rounds']} lgb time {base['t_old']:.0f}s")
    if "avg_raw" in d["rec"][0]:
        x = replay(d, "avg", 0.0)
        print(f"  average of the inner CV models, no refit: lightgbm {x['lgb']:.5f} ({x['lgb'] - base['lgb']:+.5f}) blend {x['blend']:.5f} "
              f"({x['blend'] - base['blend']:+.5f}) time ~{x['t_new']:.0f}s ({x['t_new'] / x['t_old']:.2f}x)")
    for rule, rs in (("gain", (3e-5, 1e-4, 2e-4, 3e-4, 1e-3, 3e-3)), ("std", (0.01, 0.03, 0.1))):
        for r in rs:
            x = replay(d, rule, r)
            print(f"  {rule} {r:g}: lightgbm {x['lgb']:.5f} ({x['lgb'] - base['lgb']:+.5f}) blend {x['blend']:.5f} "
                  f"({x['blend'] - base['blend']:+.5f}) rounds {x['rounds']} time ~{x['t_new']:.0f}s ({x['t_new'] / x['t_old']:.2f}x)")
