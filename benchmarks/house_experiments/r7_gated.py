# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round seven (house): a "gated" extrapolation-aware blend. Rows out of their fold's training range get a
# second set of convex weights w_out, mixed in by a(s) = min(1, lam * s):
#   pred = P @ w + a(s) * (P @ w_out - P @ w)
# w: fit's weights (all out-of-fold rows, as fit reports); lam and w_out chosen together on the other folds'
# out-of-fold rows only (cross-fitted), so no member is named in advance as the one to trust.
#   PYTHONPATH=src python benchmarks/house_experiments/r7_gated.py SEED [BASE_TAG] [SCORE]
import sys, numpy as np
sys.argv += [] ; seed = int(sys.argv[1]); base = sys.argv[2] if len(sys.argv) > 2 else "base"
which = sys.argv[3] if len(sys.argv) > 3 else "count"
sys.argv = [sys.argv[0], str(seed), base, "tree"]
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    import r7_extrap as E  # the scores, folds and members (its own printout discarded)
from trainmedic.tabular import blend as B
y, P, folds, two, S, w_all, mf = E.y, E.P, E.folds, E.two, E.S, E.w_all, E.mf
s = S[which]; b_all = P @ w_all
LAMS = np.concatenate([[0.0], np.geomspace(1e-2, 10, 31)])


def fit_gate(idx, w):
    b = P @ w; best = (np.mean((b[idx] - y[idx]) ** 2), 0.0, w)
    for lam in LAMS[1:]:
        a = np.minimum(1.0, lam * s)[idx]
        if not (a > 0).any():
            continue
        loss = lambda v: float(np.mean((b[idx] + a * (P[idx] @ v - b[idx]) - y[idx]) ** 2))
        v = B.convex_weights(loss, 3); L = loss(v)
        if L < best[0]:
            best = (L, float(lam), v)
    return best[1], best[2]


def pred(w, lam, v):
    return P @ w + np.minimum(1.0, lam * s) * (P @ v - P @ w)


out = np.zeros(len(y)); per = []
for tr, va in folds:
    lam, v = fit_gate(tr, w_all); out[va] = pred(w_all, lam, v)[va]; per.append((round(lam, 3), np.round(v, 2).tolist()))
lam, v = fit_gate(np.arange(len(y)), w_all)
print(f"seed {seed} score {which}: blend {mf(b_all):.5f} (w/o two {mf(b_all, two):.5f}) -> gated, crossfit {mf(out):.5f} "
      f"(w/o two {mf(out, two):.5f}); all rows: lam {lam:.3g} w_out {np.round(v, 3)} in-sample {mf(pred(w_all, lam, v)):.5f}")
print("   per fold (lam, w_out):", per)
print("   residuals of Ids 1299/524: blend", np.round((b_all - y)[two], 3), "gated", np.round((out - y)[two], 3))
