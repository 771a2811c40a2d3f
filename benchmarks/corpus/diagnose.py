"""Every miss and every false warning of a corpus run, with the evidence the detectors had.

Reads ``benchmarks/results/corpus.json`` and the cached runs it points to, and prints, per entry point:
  * each warning/error on a healthy run: the finding's evidence next to the threshold it crossed;
  * each harmful mutant instance that was missed: what was found instead, and a few statistics of the
    run's recorded curves (loss, gradient norm, validation) next to the same statistics of its healthy
    twin (same program, entry point and seed), so the signal that separates them can be read off;
  * each detected instance whose first finding is a symptom, not the cause.

    .venv/bin/python benchmarks/corpus/diagnose.py [--entry run] [--operator lr_x10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def curve_stats(result: dict[str, Any]) -> dict[str, Any]:
    """Summary statistics of the first engine's recorded curves (downsampled samples, epoch records)."""
    if not result.get("traces"):
        return {"watched_steps": 0}
    tr = result["traces"][0]
    samples = [[_num(v) for v in row] for row in tr["samples"]]
    loss = [s[1] for s in samples if s[1] is not None]
    gn = [s[2] for s in samples if s[2] is not None]
    finite_l = [x for x in loss if math.isfinite(x)]
    finite_g = [x for x in gn if math.isfinite(x) and x > 0]
    first_bad = next((s[0] for s in samples if s[1] is None or not math.isfinite(s[1])), None)
    out: dict[str, Any] = {"watched_steps": tr.get("steps"), "samples": len(samples), "first_nonfinite_sample": first_bad}
    if finite_l:
        k = max(1, min(5, len(finite_l) // 10))
        out["loss_first"] = statistics.fmean(finite_l[:k])
        out["loss_min"] = min(finite_l)
        out["loss_last"] = statistics.fmean(finite_l[-k:])
        out["loss_max_over_first"] = max(finite_l) / max(abs(out["loss_first"]), 1e-12)
    if finite_g:
        med = statistics.median(finite_g)
        out["gnorm_median"] = med
        out["gnorm_max_over_median"] = max(finite_g) / med
        out["gnorm_first"] = finite_g[0]
        out["gnorm_zero_share"] = sum(1 for x in gn if x == 0) / len(gn)
    lrs = [s[3] for s in samples if s[3] is not None]
    if lrs:
        out["lr_first"], out["lr_max"] = lrs[0], max(lrs)
    ep = [[_num(v) for v in e] for e in tr["epochs"]]
    ep = [e for e in ep if e[3] is not None and math.isfinite(e[3])]
    if ep:
        vals = [e[3] for e in ep]
        b = min(range(len(vals)), key=vals.__getitem__)
        out["val_n"] = len(vals)
        out["val_best_at"] = b
        out["val_last_over_best"] = vals[-1] / vals[b] if vals[b] else math.inf
        out["val_first"], out["val_last"] = vals[0], vals[-1]
        tr_l = [e[2] for e in ep if e[2] is not None and math.isfinite(e[2])]
        if tr_l:
            out["train_epoch_first"], out["train_epoch_last"] = tr_l[0], tr_l[-1]
    return out


def _num(v: Any) -> Any:
    """trainmedic writes non-finite values as strings ("nan", "inf") in its JSON."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return v


def fmt_stats(s: dict[str, Any]) -> str:
    keys = ("watched_steps", "first_nonfinite_sample", "loss_first", "loss_min", "loss_last", "loss_max_over_first",
            "gnorm_first", "gnorm_median", "gnorm_max_over_median", "gnorm_zero_share", "lr_first", "lr_max",
            "val_n", "val_best_at", "val_first", "val_last", "val_last_over_best")
    parts = []
    for k in keys:
        v = s.get(k)
        if v is None:
            continue
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def load(cache: Path, rel: str | None) -> dict[str, Any] | None:
    if not rel:
        return None
    p = cache / rel
    return json.loads(p.read_text()) if p.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT / "benchmarks" / "results" / "corpus.json"))
    ap.add_argument("--entry", nargs="*")
    ap.add_argument("--operator", nargs="*")
    ap.add_argument("--json", help="also write the per-instance statistics here")
    args = ap.parse_args()
    rep = json.loads(Path(args.corpus).read_text())
    cache = Path(rep["cache"])
    entries = args.entry or list(rep["summary"])
    healthy = {(h["program"], h["seed"], h["entry"]): h for h in rep["healthy"]}
    dump: dict[str, Any] = {"healthy_alarms": [], "misses": [], "symptom_first": []}

    for entry in entries:
        print(f"\n=== {entry}: warnings/errors on healthy runs ===")
        for h in rep["healthy"]:
            if h["entry"] != entry:
                continue
            for f in h["findings"]:
                if f["severity"] in ("warning", "error"):
                    ev = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in (f.get("evidence") or {}).items()}
                    print(f"  {h['program']} seed {h['seed']}: {f['code']} at step {f['step']}: {f['message']}  {ev}")
                    dump["healthy_alarms"].append({"entry": entry, "program": h["program"], "seed": h["seed"], **f})

        print(f"\n=== {entry}: missed mutant instances ===")
        by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for inst in rep["instances"]:
            d = inst["entries"].get(entry)
            if d is None or (args.operator and inst["operator"] not in args.operator):
                continue
            if not d["detected"]:
                by_op[inst["operator"]].append(inst)
            elif not d["cause_named"] and rep["operators"][inst["operator"]]["cause"]:
                dump["symptom_first"].append({"entry": entry, "mutant": inst["mutant"], "seed": inst["seed"],
                                              "first": d["first_code"], "found": d["codes"]})
        for op, insts in sorted(by_op.items()):
            print(f"\n-- {op} ({len(insts)} missed; expected {', '.join(rep['operators'][op]['expected'])})")
            for inst in insts:
                d = inst["entries"][entry]
                res = load(cache, d.get("cache"))
                twin = healthy.get((inst["program"], inst["seed"], entry))
                twin_res = load(cache, twin.get("cache")) if twin else None
                s = curve_stats(res) if res else {}
                t = curve_stats(twin_res) if twin_res else {}
                found = ", ".join(f"{f['code']}@{f['step']}" for f in (res or {}).get("findings", [])) or "nothing"
                print(f"  {inst['mutant']} seed {inst['seed']} [{inst['half']}] harm={inst['harm']} ({inst['why'][:90]})")
                print(f"      found: {found}")
                print(f"      fault  : {fmt_stats(s)}")
                print(f"      healthy: {fmt_stats(t)}")
                dump["misses"].append({"entry": entry, "mutant": inst["mutant"], "operator": op, "seed": inst["seed"],
                                       "half": inst["half"], "harm": inst["harm"], "found": found, "fault": s,
                                       "healthy": t})
        print(f"\n=== {entry}: detected, but the first finding is a symptom ===")
        for x in dump["symptom_first"]:
            if x["entry"] == entry:
                print(f"  {x['mutant']} seed {x['seed']}: first {x['first']}; found {', '.join(x['found'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1, default=str))


if __name__ == "__main__":
    main()
