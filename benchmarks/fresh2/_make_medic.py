"""Writes the Medic-API versions (medic_*.py) of four fresh2 scripts, as a user following the README would.

Same approach as benchmarks/fresh/_make_medic.py: `with Medic(...)` around the loop, `loss_fn=` the loop's
loss as a function of the model's output and the target, `batch=` what the model and the loss take,
`end_epoch` after each evaluation, a scheduler handed to Medic (its own `.step` removed).
Run once, then `ruff check --fix benchmarks/fresh2` (import order); the outputs are committed.
"""
import functools
import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("fresh_make_medic", HERE.parent / "fresh" / "_make_medic.py")
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
edit = functools.partial(_shared.edit, here=HERE)

edit("lstm_packed.py", [
    ('        optimizer.step()\n', '        medic.step(loss, batch=((x, lengths), y))\n'),
    ('    val_mse = total / n\n', '    val_mse = total / n\n    medic.end_epoch(val_loss=val_mse)\n    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, mode=args.mode, loss_fn=loss_fn)")

edit("multilabel_pos_weight.py", [
    ('        optimizer.step()\n', '        medic.step(loss, batch=(xb, yb))\n'),
    ('    err = evaluate()\n',
     '    err = evaluate()\n    medic.end_epoch(val_metric=err, higher_is_better=False)\n    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, mode=args.mode, loss_fn=criterion)")

edit("plateau_earlystop.py", [
    ('        optimizer.step()\n', '        medic.step(loss, batch=(xb, yb))\n'),
    ('    scheduler.step(val_loss)\n', '    medic.end_epoch(val_loss=val_loss)\n    if medic.should_stop:\n        break\n'),
], "for epoch in range(args.epochs):", "model.load_state_dict(best_state)",
    "medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode, loss_fn=F.cross_entropy)")

edit("tied_lm.py", [
    ('    optimizer.step()\n', '    medic.step(loss, batch=(ctx, nxt))\n'),
    ('        val = evaluate()\n', '        val = evaluate()\n        medic.end_epoch(val_loss=val)\n'),
], "for step in range(args.steps):", "print(\"FINAL",
    "medic = trainmedic.Medic(model, optimizer, mode=args.mode,\n"
    "                         loss_fn=lambda logits, nxt: F.cross_entropy(logits.float(), nxt))")
