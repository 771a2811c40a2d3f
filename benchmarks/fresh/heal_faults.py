"""The fresh scripts' rate faults (and healthy runs) under the heal entry points, which run_fresh.py does not run.

run_fresh.py runs faults under watch only; this runs ``plain``, ``run_heal`` and ``medic_heal`` through its
``run_one`` (same subprocess commands, same cache) for the learning-rate faults of the scheduled scripts
(``digits_resnet``, ``diabetes_onecycle``) and, with ``--healthy``, the healthy runs of every fresh script
with a scheduler. Used to measure the rate audit under a scheduler (``heal/audit_schedule.py``).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 5 python benchmarks/fresh/heal_faults.py --seeds 0 1 2
    ... heal_faults.py --src /tmp/main_export/src        # the same on an export of main
    ... heal_faults.py --healthy --seeds 0 1
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_fresh as rf  # noqa: E402

FAULTED = {"digits_resnet": ("lr_x300", "lr_x30"), "diabetes_onecycle": ("lr_x300", "lr_x30")}
SCHEDULED = ("digits_resnet", "diabetes_onecycle", "conv1d_smooth", "closure_poly")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(rf.ROOT / "src"))
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--healthy", action="store_true", help="the healthy runs instead of the faults")
    a = ap.parse_args()
    cache = rf.ROOT / "benchmarks" / "results" / "fresh_cache"
    cache.mkdir(parents=True, exist_ok=True)
    src = Path(a.src).resolve()
    rev = rf.revision(src)
    jobs = []
    for prog in SCHEDULED if a.healthy else FAULTED:
        text = (rf.HERE / f"{prog}.py").read_text()
        mpath = rf.HERE / f"medic_{prog}.py"
        mtext = mpath.read_text() if mpath.exists() else None
        if a.healthy:
            jobs.append((prog, "healthy", text, mtext))
            continue
        for fname, _, edits in rf.FAULTS[prog]:
            if fname in FAULTED[prog]:
                jobs.append((prog, fname, rf.apply(text, edits), mtext and rf.apply(mtext, edits)))
    for prog, tag, text, mtext in jobs:
        for seed in a.seeds:
            for entry in ["plain", "run_heal"] + (["medic_heal"] if mtext else []):
                r = rf.run_one(mtext if entry.startswith("medic") else text, prog, entry, seed, cache, rev,
                               400, src)
                print(json.dumps({"prog": prog, "tag": tag, "seed": seed, "entry": entry, "metric": r["metric"],
                                  "rc": r["rc"], "alarms": [(f["code"], f["step"]) for f in rf.severe(r["findings"])],
                                  "actions": [(x["action"], x["step"]) for x in r["actions"]]}), flush=True)


if __name__ == "__main__":
    main()
