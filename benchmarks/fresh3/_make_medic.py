"""Writes the Medic-API versions (medic_*.py) of four fresh3 scripts, as a user following the README would.

Same approach as benchmarks/fresh/_make_medic.py and benchmarks/fresh2/_make_medic.py: `with Medic(...)`
around the loop, `loss_fn=` the loop's loss as a function of the model's output and the target, `batch=`
what the model and the loss take, `end_epoch` after each evaluation, a scheduler handed to Medic (its own
`.step` removed). Run once, then `ruff check --fix benchmarks/fresh3` (import order); the outputs are committed.
"""
import functools
import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("fresh_make_medic", HERE.parent / "fresh" / "_make_medic.py")
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
edit = functools.partial(_shared.edit, here=HERE)

edit("gnn_message.py", [
    ('    optimizer.step()\n', '    medic.step(loss, batch=((x, edge_index), y))\n'),
    ('    val_err = error(val_idx)\n',
     '    val_err = error(val_idx)\n    medic.end_epoch(val_metric=val_err, higher_is_better=False)\n'
     '    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, mode=args.mode,\n"
    "                         loss_fn=lambda out, y: F.cross_entropy(out[train_idx], y[train_idx]))")

edit("unet1d_denoise.py", [
    ('        optimizer.step()\n', '        medic.step(loss, batch=(xb, yb))\n'),
    ('        val_mse = F.mse_loss(model(noisy_val), clean_val).item()\n',
     '        val_mse = F.mse_loss(model(noisy_val), clean_val).item()\n    medic.end_epoch(val_loss=val_mse)\n'
     '    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, mode=args.mode, loss_fn=F.l1_loss)")

edit("gaussnll_hetero.py", [
    ('        optimizer.step()\n        scheduler.step()\n', '        medic.step(loss, batch=(xb, yb))\n'),
    ('        val_nll = F.gaussian_nll_loss(mu, y_val, var, full=True).item()\n',
     '        val_nll = F.gaussian_nll_loss(mu, y_val, var, full=True).item()\n    medic.end_epoch(val_loss=val_nll)\n'
     '    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode,\n"
    "                         loss_fn=lambda out, y: criterion(out[0], y, out[1]), scheduler_interval=\"step\")")

edit("sgdr_imbalanced.py", [
    ('        optimizer.step()\n', '        medic.step(loss, batch=(xb, yb))\n'),
    ('    scheduler.step()\n', ''),
    ('    bal_err = 1 - balanced_accuracy_score(y_te.numpy(), pred.numpy())\n',
     '    bal_err = 1 - balanced_accuracy_score(y_te.numpy(), pred.numpy())\n'
     '    medic.end_epoch(val_metric=bal_err, higher_is_better=False)\n    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode, loss_fn=F.cross_entropy)")
