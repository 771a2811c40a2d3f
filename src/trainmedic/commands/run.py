"""``trainmedic run [--out DIR] [--heal] SCRIPT [ARGS...]``: watch an unmodified training script."""

from __future__ import annotations

import argparse

from trainmedic.errors import UsageError

HELP = """\
Run a PyTorch training script under trainmedic, without changing it. trainmedic's options come before the
script; everything after the script is the script's own command line. The script's output reaches the
terminal as usual and its exit code is passed through. Findings go to DIR/findings.json, events.jsonl and
report.html, and a short summary is printed at the end.

Training loops: optimizer.step(), step(closure) (LBFGS: each step judged on its own closure's loss), a
loop that updates its parameters by hand without an optimizer object (watched from its backward passes;
heal cannot skip such a step), optimizers over plain tensors, and torch.compile'd models (checks that need
hooks inside compiled code step aside, TM904). A run in which no step could be watched says so (TM903).

Validation loss: losses computed without gradient (under torch.no_grad) between training steps are taken
as an evaluation, as is ReduceLROnPlateau.step(val); or add `trainmedic.log(val_loss=...)`.
Distributed: torchrun --nproc_per_node 2 -m trainmedic run train.py (rank 0 writes the report).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run a training script under trainmedic (no code changes)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", metavar="DIR", help="where to write the report (default runs/<script>-<time>)")
    p.add_argument("--heal", action="store_true",
                   help="repair the run: skip non-finite steps, clip spikes, roll back, lower the lr")
    p.add_argument("--quiet", action="store_true", help="print no live findings, only the summary")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="write crash-safe checkpoints there (atomic, sha256-checked, weights_only loadable)")
    p.add_argument("--checkpoint-every", metavar="N", type=int,
                   help="steps between checkpoints (default: at each epoch end, and when validation improves)")
    p.add_argument("script", help="the training script (a .py file, or a folder or zip with __main__.py); it "
                                  "sees the __file__, sys.argv and sys.path that python would give it")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from trainmedic.instrument.runner import run_script

    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be a positive number of steps, got {args.checkpoint_every}")
    return run_script(args.script, list(args.args), out=args.out, heal=args.heal, console=not args.quiet,
                      checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every)
