"""The fault corpus: base programs x mutation operators, run under every entry point, scored.

    nice -n 10 .venv/bin/python benchmarks/corpus.py --quick        # one seed, a subset (~10 min)
    nice -n 10 .venv/bin/python benchmarks/corpus.py                # full: healthy x5 seeds, mutants x2
    .venv/bin/python benchmarks/corpus.py --programs gan --operators lr_x100 --seeds 0

What it does:
1. Builds every mutant of every base program (``benchmarks/corpus/mutate.py``).
2. Runs each base program and each mutant plainly (``python prog.py --seed S``, no trainmedic) for the harm
   criterion. A mutant instance (mutant, seed) enters the corpus when its fault measurably hurts:
   it crashes after at least one optimizer step, or ends with a missing/non-finite metric, or its final
   metric ``m`` (lower is better) exceeds ``max(1.10 * h_s + a, max(h))`` where ``h_s`` is the healthy
   twin's metric at the same seed, ``h`` the healthy metrics over all seeds and ``a`` the program's
   absolute margin (0.01 on error rates, 0 otherwise). Excluded, with the reason recorded: mutants that
   fail before the first optimizer step ("stillborn": the exception is the diagnosis; this includes
   mutations that turn out not to apply at run time) and mutants without measurable harm.
3. Runs the healthy programs (every seed) and the harmful mutants under each entry point:
   ``run`` (``trainmedic run`` on the unchanged script, through the same function the CLI calls),
   ``medic`` (the mechanical Medic-API rewrite, ``benchmarks/corpus/rewrite.py``: ``medic.step(loss)``),
   ``medic_batch`` (the same with ``loss_fn`` and ``batch=`` where the loss has the form for it, and
   ``medic.close()`` at the end, as the README recommends) and ``lightning``
   (a ``MedicCallback`` added to the Trainer of the Lightning twins). All in watch mode.
4. Scores, per entry point and per half of the calibration split (``benchmarks/corpus/programs.py``):
   recall per operator and per code, warnings/errors on healthy runs, the step of the first expected
   finding, and whether the first finding names the cause or only a symptom.

Each run is a forked child of this process (torch, sklearn, trainmedic and Lightning imported once),
one torch thread, stdout/stderr to files. Results are cached under ``benchmarks/results/corpus_cache``
keyed by the program's source hash, the entry point, the seed and (for trainmedic entry points) the
trainmedic source revision (the git tree hash of src/ plus a hash of uncommitted changes under it), so
reruns are cheap and a change to trainmedic reruns exactly the runs it can affect.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "benchmarks" / "corpus"
sys.path.insert(0, str(CORPUS))

from mutate import OPERATORS, Mutant, mutants  # noqa: E402
from programs import PROGRAMS, Program  # noqa: E402
from rewrite import NotRewritable, lightning_rewrite, medic_rewrite  # noqa: E402

HARNESS_VERSION = 3  # bump when what a cached result holds changes
HARM_REL = 0.10
QUICK_PROGRAMS = ("house_prices", "digits_cnn", "house_prices_lightning", "poisson_counts", "teacher_student")
SEVERE = ("warning", "error")


# -----------------------------------------------------------------------------------------------------
# tasks and the cache
# -----------------------------------------------------------------------------------------------------
@dataclass
class Task:
    program: Program
    mutant: Mutant | None  # None: the healthy program
    entry: str  # plain | run | medic | medic_batch | lightning
    seed: int
    source: str  # the program text as run for this entry (rewritten for medic/medic_batch/lightning)
    key: str = ""
    result: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        what = self.mutant.id if self.mutant else f"{self.program.name}:healthy"
        return f"{what} [{self.entry} seed {self.seed}]"


def trainmedic_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = "src@" + git("rev-parse", "HEAD:src").strip()[:12]  # changes only when trainmedic's code does
    dirty = git("diff", "HEAD", "--", "src")
    for path in git("ls-files", "--others", "--exclude-standard", "src").split():
        dirty += path + (ROOT / path).read_text(errors="replace")
    return head + ("+" + hashlib.sha256(dirty.encode()).hexdigest()[:12] if dirty else "")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Cache:
    def __init__(self, root: Path, revision: str) -> None:
        self.root = root
        self.revision = revision
        self.scripts = root / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)
        data = self.scripts / "data"
        if not data.exists():
            data.symlink_to(CORPUS / "data", target_is_directory=True)

    def key(self, task: Task) -> str:
        import torch

        parts = [HARNESS_VERSION, task.entry, task.seed, sha(task.source), torch.__version__]
        if task.entry != "plain":
            parts.append(self.revision)
        return sha(json.dumps(parts))

    def path(self, task: Task) -> Path:
        return self.root / task.entry / f"{task.key}.json"

    def script(self, task: Task) -> Path:
        p = self.scripts / f"{sha(task.source)}.py"
        if not p.exists():
            tmp = p.with_suffix(".tmp")
            tmp.write_text(task.source)
            tmp.replace(p)
        return p

    def load(self, task: Task) -> dict[str, Any] | None:
        p = self.path(task)
        if p.exists():
            try:
                return json.loads(p.read_text())
            except json.JSONDecodeError:
                return None
        return None


# -----------------------------------------------------------------------------------------------------
# running one task in a forked child
# -----------------------------------------------------------------------------------------------------
def _final_metric(stdout: str) -> float | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("FINAL "):
            try:
                return float(json.loads(line[6:])["value"])
            except (ValueError, KeyError, TypeError):
                return math.nan
    return None


def _trace_from_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    samples = [[e["step"], e.get("loss"), e.get("grad_norm"), e.get("lr")] for e in events if e.get("type") == "sample"]
    epochs = [[e.get("epoch"), e.get("step"), e.get("train_loss"), e.get("val_loss")] for e in events
              if e.get("type") == "epoch"]
    meta = next((e for e in events if e.get("type") == "meta"), {})
    return {"samples": samples, "epochs": epochs, "steps": meta.get("steps")}


def _child(task: Task, script: Path, result_path: Path, work: Path) -> None:
    """Runs in the forked child: the program under its entry point, then the result as JSON."""
    import runpy

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    torch.set_num_threads(1)
    out_f = open(work / "stdout.txt", "w")
    err_f = open(work / "stderr.txt", "w")
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out_f.fileno(), 1)
    os.dup2(err_f.fileno(), 2)
    steps = [0]
    handle = register_optimizer_step_post_hook(lambda *a: steps.__setitem__(0, steps[0] + 1))
    argv = ["--seed", str(task.seed)]
    sys.argv = [str(script), *argv]
    os.chdir(script.parent)
    rc, error = 0, None
    medics: list[Any] = []
    callbacks: list[Any] = []
    t0 = time.time()
    try:
        if task.entry == "run":
            from trainmedic.instrument.runner import run_script

            rc = run_script(str(script), argv, out=work / "tm", console=False, summary=False)
        elif task.entry in ("medic", "medic_batch"):
            try:
                runpy.run_path(str(script), init_globals={"_TM_MEDICS": medics}, run_name="__main__")
            except BaseException as exc:
                if task.entry == "medic_batch":  # the training raised through `with Medic(...)`
                    for m in medics:
                        m.__exit__(type(exc), exc, exc.__traceback__)
                raise
            if task.entry == "medic_batch":  # the end of training, as `with Medic(...)` would close it
                for m in medics:
                    m.close()
        elif task.entry == "lightning":
            runpy.run_path(str(script), init_globals={"_TM_CALLBACKS": callbacks}, run_name="__main__")
        else:
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # the program's own failure
        rc = 1
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]
    wall = time.time() - t0
    handle.remove()
    sys.stdout.flush()
    sys.stderr.flush()
    stdout = (work / "stdout.txt").read_text(errors="replace")
    stderr = (work / "stderr.txt").read_text(errors="replace")
    if error is None and rc and "Traceback" in stderr:
        error = stderr.strip().splitlines()[-1][-500:]
    findings: list[dict[str, Any]] = []
    traces: list[dict[str, Any]] = []
    tm_error = None
    try:
        if task.entry == "run":
            fj = work / "tm" / "findings.json"
            if fj.exists():
                findings = json.loads(fj.read_text())["findings"]
            ev = work / "tm" / "events.jsonl"
            if ev.exists():
                traces.append(_trace_from_events([json.loads(x) for x in ev.read_text().splitlines() if x.strip()]))
        elif task.entry in ("medic", "medic_batch"):
            for i, m in enumerate(medics):
                for f in m.findings:
                    findings.append({**f.to_dict(), "engine": i})
                traces.append(_trace_from_events([json.loads(json.dumps(e, default=str)) for e in m.event_stream()]))
        elif task.entry == "lightning":
            for cb in callbacks:
                for i, eng in enumerate(cb.run.drivers):
                    for f in eng.findings:
                        findings.append({**f.to_dict(), "engine": i})
                    traces.append(_trace_from_events([json.loads(json.dumps(e, default=str))
                                                      for e in eng.event_stream()]))
    except Exception as exc:  # reading trainmedic's output failed: record it, it is a finding of its own
        tm_error = repr(exc)
    result = {
        "rc": rc, "error": error, "metric": _final_metric(stdout), "optimizer_steps": steps[0], "wall": wall,
        "findings": json.loads(json.dumps(findings, default=str)), "traces": traces, "harness_error": tm_error,
        "stderr_tail": stderr[-1500:] if rc else "",
    }
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(result_path)


def run_tasks(tasks: list[Task], cache: Cache, workers: int, timeout: float) -> None:
    todo = []
    for t in tasks:
        t.key = cache.key(t)
        t.result = cache.load(t)
        if t.result is None:
            todo.append(t)
    if not todo:
        return
    print(f"  {len(tasks) - len(todo)} cached, {len(todo)} to run on {workers} worker(s)", flush=True)
    running: dict[int, tuple[Task, float, Path]] = {}
    queue = list(todo)
    done = 0
    t_start = time.time()
    while queue or running:
        while queue and len(running) < workers:
            task = queue.pop(0)
            script = cache.script(task)
            path = cache.path(task)
            path.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="corpus-"))
            pid = os.fork()
            if pid == 0:  # child
                try:
                    os.setpgid(0, 0)
                    _child(task, script, path, work)
                except BaseException:
                    path.with_suffix(".crash").write_text(traceback.format_exc())
                finally:
                    os._exit(0)
            running[pid] = (task, time.time(), work)
        time.sleep(0.05)
        for pid, (task, started, work) in list(running.items()):
            finished, _ = os.waitpid(pid, os.WNOHANG)
            timed_out = not finished and time.time() - started > timeout
            if timed_out:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
            if finished or timed_out:
                del running[pid]
                task.result = cache.load(task)
                if task.result is None:
                    crash = cache.path(task).with_suffix(".crash")
                    task.result = {"rc": "timeout" if timed_out else "died",
                                   "error": crash.read_text()[-800:] if crash.exists() else None, "metric": None,
                                   "optimizer_steps": 0, "findings": [], "traces": [], "wall": time.time() - started}
                    cache.path(task).write_text(json.dumps(task.result))
                _rmtree(work)
                done += 1
                rate = (time.time() - t_start) / done
                eta = rate * (len(todo) - done) / 1
                r = task.result
                codes = ",".join(sorted({f["code"] for f in r.get("findings", [])})) or "-"
                print(f"  [{done}/{len(todo)} eta {eta / 60:.0f} min] {task.label}: rc={r['rc']} "
                      f"metric={_fmt(r.get('metric'))} steps={r.get('optimizer_steps')} findings={codes}", flush=True)


def _rmtree(path: Path) -> None:
    for p in sorted(path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        if p.is_dir() and not p.is_symlink():
            p.rmdir()
        else:
            p.unlink()
    path.rmdir()


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


# -----------------------------------------------------------------------------------------------------
# the corpus: harm, detection, scoring
# -----------------------------------------------------------------------------------------------------
def entries_of(prog: Program) -> list[str]:
    return ["lightning", "run"] if prog.lightning else ["run", "medic", "medic_batch"]


def entry_source(prog: Program, text: str, entry: str) -> str | None:
    try:
        if entry == "medic":
            return medic_rewrite(text, prog.val_var, prog.epoch_var)
        if entry == "medic_batch":
            return medic_rewrite(text, prog.val_var, prog.epoch_var, batch=True)
        if entry == "lightning":
            return lightning_rewrite(text)
    except NotRewritable:
        return None
    return text


def ok_metric(r: dict[str, Any]) -> bool:
    return r["rc"] == 0 and r.get("metric") is not None and math.isfinite(r["metric"])


def harm_of(prog: Program, r: dict[str, Any], healthy: dict[int, float], seed: int) -> tuple[str, str]:
    """("crash"|"nonfinite"|"worse", why) for a harmful instance; ("excluded:<reason>", why) otherwise."""
    if r["rc"] == "timeout":
        return "excluded:timeout", "ran past the time limit"
    if r["rc"] != 0:
        err = (r.get("error") or "")[:200]
        if r.get("optimizer_steps", 0) == 0:
            why = "not applicable at run time" if "mutation not applicable" in err else "fails before the first step"
            return "excluded:stillborn", f"{why}: {err}"
        return "crash", f"crashed after {r['optimizer_steps']} steps: {err}"
    m = r.get("metric")
    if m is None or not math.isfinite(m):
        return "nonfinite", f"final metric {m}"
    if seed not in healthy:
        return "excluded:no_twin", "no healthy twin at this seed"
    h = healthy[seed]
    bar = max((1 + HARM_REL) * h + prog.harm_abs, max(healthy.values()))
    if m > bar:
        return "worse", f"{prog.metric} {m:.4g} vs healthy {h:.4g} (bar {bar:.4g})"
    return "excluded:no_harm", f"{prog.metric} {m:.4g} vs healthy {h:.4g} (bar {bar:.4g})"


def first_relevant(findings: list[dict[str, Any]], expected: frozenset[str]) -> dict[str, Any] | None:
    """The earliest finding that is a warning/error or an expected code (info notes like TM113 do not count)."""
    rel = [f for f in findings if f["severity"] in SEVERE or f["code"] in expected]
    if not rel:
        return None
    return min(rel, key=lambda f: (f["step"] if f.get("step") is not None else -1))


def score_detection(op, r: dict[str, Any]) -> dict[str, Any]:
    found = [f for f in r["findings"] if f["code"] in op.expected]
    first = first_relevant(r["findings"], op.expected)
    steps = [f["step"] if f.get("step") is not None else 0 for f in found]
    return {
        "detected": bool(found),
        "codes": sorted({f["code"] for f in r["findings"]}),
        "expected_found": sorted({f["code"] for f in found}),
        "first_code": first["code"] if first else None,
        "first_step": min(steps) if steps else None,
        "cause_named": bool(first and op.cause and first["code"] in op.cause),
        "steps_run": r.get("optimizer_steps"),
    }


@dataclass
class Instance:
    mutant: Mutant
    program: Program
    seed: int
    harm: str
    why: str
    plain: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


def summarize(instances: list[Instance], healthy_runs: list[Task], entries: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in entries:
        per_half: dict[str, Any] = {}
        for half in ("calibration", "held_out", "all"):
            inst = [i for i in instances if entry in i.entries and (half == "all" or i.program.half == half)]
            hr = [t for t in healthy_runs if t.entry == entry and (half == "all" or t.program.half == half)]
            by_op: dict[str, list[bool]] = defaultdict(list)
            code_found: Counter[str] = Counter()
            code_expected: Counter[str] = Counter()
            for i in inst:
                d = i.entries[entry]
                by_op[i.mutant.operator.name].append(d["detected"])
                for c in i.mutant.operator.expected:
                    code_expected[c] += 1
                for c in d["expected_found"]:
                    code_found[c] += 1
            with_cause = [i for i in inst if i.mutant.operator.cause]
            first_steps = [i.entries[entry]["first_step"] for i in inst if i.entries[entry]["first_step"] is not None]
            alarms = [t for t in hr if any(f["severity"] in SEVERE for f in t.result["findings"])]
            alarm_codes = Counter(f["code"] for t in hr for f in t.result["findings"] if f["severity"] in SEVERE)
            info_codes = Counter(f["code"] for t in hr for f in t.result["findings"] if f["severity"] not in SEVERE)
            per_half[half] = {
                "instances": len(inst),
                "detected": sum(i.entries[entry]["detected"] for i in inst),
                "recall": _ratio(sum(i.entries[entry]["detected"] for i in inst), len(inst)),
                "recall_by_operator": {k: [sum(v), len(v)] for k, v in sorted(by_op.items())},
                "recall_by_code": {c: [code_found[c], code_expected[c]] for c in sorted(code_expected)},
                "with_cause_code": len(with_cause),
                "cause_named_first": sum(i.entries[entry]["cause_named"] for i in with_cause),
                "cause_rate": _ratio(sum(i.entries[entry]["cause_named"] for i in with_cause), len(with_cause)),
                "median_first_step": statistics.median(first_steps) if first_steps else None,
                "healthy_runs": len(hr),
                "healthy_runs_with_warnings": len(alarms),
                "healthy_warning_codes": dict(alarm_codes.most_common()),
                "healthy_info_codes": dict(info_codes.most_common()),
                "healthy_alarm_runs": [f"{t.program.name} seed {t.seed}: " + ", ".join(
                    sorted({f['code'] for f in t.result['findings'] if f['severity'] in SEVERE})) for t in alarms],
            }
        out[entry] = per_half
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def print_tables(summary: dict[str, Any], instances: list[Instance], excluded: list[dict[str, Any]]) -> None:
    print()
    print(f"{'entry':<10} {'half':<12} {'recall':>14} {'cause first':>14} {'healthy w/e':>12} {'med step':>9}")
    for entry, halves in summary.items():
        for half, s in halves.items():
            print(f"{entry:<10} {half:<12} {s['detected']:>5}/{s['instances']:<4} {_pct(s['recall']):>4} "
                  f"{s['cause_named_first']:>5}/{s['with_cause_code']:<4} {_pct(s['cause_rate']):>4} "
                  f"{s['healthy_runs_with_warnings']:>4}/{s['healthy_runs']:<4} {_fmt(s['median_first_step']):>9}")
    ops = sorted({i.mutant.operator.name for i in instances})
    entries = list(summary)
    print()
    print(f"{'operator':<26}" + "".join(f"{e:>16}" for e in entries) + "   harmful/excluded")
    excl = Counter(e["operator"] for e in excluded)
    for op in [o.name for o in OPERATORS]:
        cells = []
        for e in entries:
            v = summary[e]["all"]["recall_by_operator"].get(op)
            cells.append(f"{v[0]}/{v[1]}" if v else "-")
        n = sum(1 for i in instances if i.mutant.operator.name == op)
        if n or excl[op]:
            print(f"{op:<26}" + "".join(f"{c:>16}" for c in cells) + f"   {n}/{excl[op]}")
    del ops
    print()
    for entry in entries:
        s = summary[entry]["all"]
        if s["healthy_warning_codes"]:
            print(f"healthy-run warnings/errors under {entry}: {s['healthy_warning_codes']}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


# -----------------------------------------------------------------------------------------------------
# main
# -----------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"seed 0 only, programs {', '.join(QUICK_PROGRAMS)}")
    ap.add_argument("--programs", nargs="*", help="base programs (default: all)")
    ap.add_argument("--operators", nargs="*", help="mutation operators (default: all)")
    ap.add_argument("--entries", nargs="*", default=["run", "medic", "lightning"])
    ap.add_argument("--healthy-seeds", type=int, default=None, help="seeds of the healthy runs (full: 5)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="mutant seeds (full: 0 1)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds before a run is killed")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "corpus.json"))
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / "results" / "corpus_cache"))
    args = ap.parse_args()

    healthy_seeds = list(range(args.healthy_seeds or (1 if args.quick else 5)))
    mutant_seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1])
    names = args.programs or (list(QUICK_PROGRAMS) if args.quick else [p.name for p in PROGRAMS])
    progs = [p for p in PROGRAMS if p.name in names]
    ops = tuple(o for o in OPERATORS if not args.operators or o.name in args.operators)
    need_seeds = sorted(set(healthy_seeds) | set(mutant_seeds))

    # everything the children need, imported once in the parent
    import numpy  # noqa: F401
    import sklearn.datasets  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401  (the transformer layers import it on first use)

    import trainmedic  # noqa: F401
    import trainmedic.instrument.runner  # noqa: F401

    torch.set_num_threads(1)
    if any(p.lightning for p in progs):
        import pytorch_lightning  # noqa: F401

        import trainmedic.integrations.lightning  # noqa: F401
    revision = trainmedic_revision()
    cache = Cache(Path(args.cache), revision)
    print(f"trainmedic revision {revision}; programs {len(progs)}; operators {len(ops)}; "
          f"healthy seeds {healthy_seeds}; mutant seeds {mutant_seeds}", flush=True)

    texts = {p.name: p.path.read_text() for p in progs}
    all_mutants = {p.name: mutants(p.name, texts[p.name], ops) for p in progs}

    # 1. plain runs: healthy twins and mutants
    plain_healthy = [Task(p, None, "plain", s, texts[p.name]) for p in progs for s in need_seeds]
    plain_mut = [Task(p, m, "plain", s, m.source) for p in progs for m in all_mutants[p.name] for s in mutant_seeds]
    print(f"plain runs: {len(plain_healthy)} healthy, {len(plain_mut)} mutant", flush=True)
    run_tasks(plain_healthy + plain_mut, cache, args.workers, args.timeout)
    healthy_metric: dict[str, dict[int, float]] = defaultdict(dict)
    for t in plain_healthy:
        if ok_metric(t.result):
            healthy_metric[t.program.name][t.seed] = t.result["metric"]
        else:
            print(f"WARNING: healthy {t.label} failed: rc={t.result['rc']} {t.result.get('error')}")

    # 2. harm
    instances: list[Instance] = []
    excluded: list[dict[str, Any]] = []
    for t in plain_mut:
        harm, why = harm_of(t.program, t.result, healthy_metric[t.program.name], t.seed)
        if harm.startswith("excluded"):
            excluded.append({"mutant": t.mutant.id, "operator": t.mutant.operator.name, "seed": t.seed,
                             "reason": harm.split(":", 1)[1], "detail": why})
        else:
            instances.append(Instance(t.mutant, t.program, t.seed, harm, why, t.result))
    print(f"corpus: {len(instances)} harmful mutant instances, {len(excluded)} excluded "
          f"({dict(Counter(e['reason'] for e in excluded))})", flush=True)

    # 3. entry points
    entry_tasks: list[Task] = []
    not_rewritable: dict[str, list[str]] = defaultdict(list)
    healthy_tasks: list[Task] = []
    for p in progs:
        for entry in entries_of(p):
            if entry not in args.entries:
                continue
            src = entry_source(p, texts[p.name], entry)
            if src is None:
                not_rewritable[entry].append(p.name)
                continue
            healthy_tasks += [Task(p, None, entry, s, src) for s in healthy_seeds]
    inst_tasks: dict[tuple[str, int, str], Task] = {}
    for i in instances:
        for entry in entries_of(i.program):
            if entry not in args.entries:
                continue
            src = entry_source(i.program, i.mutant.source, entry)
            if src is None:
                not_rewritable[entry].append(i.mutant.id)
                continue
            task = Task(i.program, i.mutant, entry, i.seed, src)
            inst_tasks[(i.mutant.id, i.seed, entry)] = task
    entry_tasks = healthy_tasks + list(inst_tasks.values())
    print(f"entry-point runs: {len(healthy_tasks)} healthy, {len(inst_tasks)} mutant", flush=True)
    run_tasks(entry_tasks, cache, args.workers, args.timeout)

    # 4. score
    fidelity = []
    for i in instances:
        for entry in entries_of(i.program):
            task = inst_tasks.get((i.mutant.id, i.seed, entry))
            if task is None:
                continue
            d = score_detection(i.mutant.operator, task.result)
            d["metric"] = task.result.get("metric")
            d["rc"] = task.result["rc"]
            d["cache"] = str(cache.path(task).relative_to(cache.root))
            i.entries[entry] = d
            _check_fidelity(i.plain, task.result, f"{i.mutant.id} seed {i.seed} [{entry}]", fidelity)
    plain_by = {(t.program.name, t.seed): t.result for t in plain_healthy}
    for t in healthy_tasks:
        _check_fidelity(plain_by[(t.program.name, t.seed)], t.result, f"{t.program.name}:healthy seed {t.seed} "
                        f"[{t.entry}]", fidelity)
    entries = [e for e in ("run", "medic", "medic_batch", "lightning") if e in args.entries]
    summary = summarize(instances, healthy_tasks, entries)
    print_tables(summary, instances, excluded)
    if fidelity:
        print(f"\n{len(fidelity)} run(s) where the entry point changed the program's outcome (rc or metric):")
        for f in fidelity[:30]:
            print("  " + f)

    report = {
        "harness_version": HARNESS_VERSION, "trainmedic_revision": revision,
        "harm_rule": f"crash after >=1 step, non-finite metric, or m > max({1 + HARM_REL:.2f}*h_seed + a, max h)",
        "healthy_seeds": healthy_seeds, "mutant_seeds": mutant_seeds,
        "programs": {p.name: {"half": p.half, "domain": p.domain, "metric": p.metric,
                              "healthy": healthy_metric[p.name], "entries": entries_of(p)} for p in progs},
        "operators": {o.name: {"summary": o.summary, "origin": o.origin, "expected": sorted(o.expected),
                               "cause": sorted(o.cause) if o.cause else None, "proposed": o.proposed} for o in ops},
        "summary": summary,
        "instances": [{"mutant": i.mutant.id, "operator": i.mutant.operator.name, "program": i.program.name,
                       "half": i.program.half, "seed": i.seed, "where": i.mutant.where, "harm": i.harm, "why": i.why,
                       "plain_metric": i.plain.get("metric"),
                       "entries": i.entries} for i in instances],
        "excluded": excluded,
        "cache": str(cache.root),
        "healthy": [{"program": t.program.name, "half": t.program.half, "seed": t.seed, "entry": t.entry,
                     "cache": str(cache.path(t).relative_to(cache.root)),
                     "findings": [{k: f.get(k) for k in ("code", "severity", "step", "message", "evidence")}
                                  for f in t.result["findings"]]} for t in healthy_tasks],
        "not_rewritable": {k: sorted(set(v)) for k, v in not_rewritable.items()},
        "fidelity": fidelity,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwritten {out}")


def _check_fidelity(plain: dict[str, Any], other: dict[str, Any], label: str, out: list[str]) -> None:
    """Watch mode must not change what the program does: same exit status, same final metric."""
    if (plain["rc"] == 0) != (other["rc"] == 0):
        out.append(f"{label}: rc {plain['rc']} plain vs {other['rc']} ({other.get('error') or ''})"[:300])
        return
    a, b = plain.get("metric"), other.get("metric")
    if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) \
            and abs(a - b) > 1e-6 * max(1.0, abs(a)):
        out.append(f"{label}: metric {a:.6g} plain vs {b:.6g}")


if __name__ == "__main__":
    main()
