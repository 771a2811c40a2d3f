"""Writes the Medic-API versions (medic_*.py) of four fresh scripts, as a user following the README would.

Run once, then `ruff check --fix benchmarks/fresh` (import order); the outputs are committed.
"""
from pathlib import Path

HERE = Path(__file__).parent

HEADER_ARGS = ('args = p.parse_args()',
               'p.add_argument("--mode", default="watch")\np.add_argument("--out", default=None)\n'
               'args = p.parse_args()')


def edit(src, pairs, loop_start, loop_end, medic_line, here=HERE):
    """Rewrite ``here/src`` to ``here/medic_src``: ``pairs`` of exact text edits (each must occur once), the
    loop from the line ``loop_start`` to the first line starting with ``loop_end`` indented under ``with
    medic:``, ``medic_line`` building the Medic. benchmarks/fresh2/_make_medic.py uses it too."""
    s = (here / src).read_text()
    for a, b in pairs + [HEADER_ARGS, ('import torch\n', 'import torch\nimport trainmedic\n')]:
        assert s.count(a) == 1, (src, a)
        s = s.replace(a, b)
    lines = s.split("\n")
    i = lines.index(loop_start)
    j = next(k for k in range(i, len(lines)) if lines[k].startswith(loop_end))
    body = ["    " + ln if ln else ln for ln in lines[i:j]]
    while body and not body[-1]:
        body.pop()
    out = lines[:i] + [medic_line, "with medic:"] + body + ["", "if args.out:", "    medic.save_report(args.out)"] + lines[j:]
    text = "\n".join(out)
    text = text.replace('"""', f'"""Medic-API version of {src} (the README\'s `with Medic(...)`, `loss_fn=`, `batch=`).\n\n', 1)
    (here / f"medic_{src}").write_text(text)


def main():
    edit("diabetes_onecycle.py", [
        ('        optimizer.step()\n        scheduler.step()\n', '        medic.step(loss, batch=(xb, yb))\n'),
        ('        val = criterion(model(X_va), y_va).item()\n',
         '        val = criterion(model(X_va), y_va).item()\n    medic.end_epoch(val_loss=val)\n    if medic.should_stop:\n        break\n'),
    ], "for epoch in range(args.epochs):", "print(\"FINAL",
        "medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode, loss_fn=criterion)")

    edit("digits_resnet.py", [
        ('        optimizer.step()\n        scheduler.step()\n', '        medic.step(loss, batch=(x, y))\n'),
        ('    err = 1 - correct / len(val_ds)\n',
         '    err = 1 - correct / len(val_ds)\n    medic.end_epoch(val_metric=err, higher_is_better=False)\n    if medic.should_stop:\n        break\n'),
    ], "for epoch in range(args.epochs):", "print(\"FINAL",
        "medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode, loss_fn=F.cross_entropy,\n"
        "                         scheduler_interval=\"step\")")

    edit("multitask.py", [
        ('        opt.step()\n', '        medic.step(loss, batch=(train_x[b], (train_cls[b], train_reg[b])))\n'),
        ('        v_mse = mse(reg, val_reg).item()\n',
         '        v_mse = mse(reg, val_reg).item()\n        v_loss = (bce(logit, val_cls) + 0.5 * mse(reg, val_reg)).item()\n'
         '    medic.end_epoch(val_loss=v_loss)\n    if medic.should_stop:\n        break\n'),
    ], "for epoch in range(args.epochs):", "print(\"FINAL",
        "medic = trainmedic.Medic(model, opt, mode=args.mode,\n"
        "                         loss_fn=lambda out, y: bce(out[0], y[0]) + 0.5 * mse(out[1], y[1]))")

    edit("digits_vae.py", [
        ('        opt.step()\n', '        medic.step(loss, batch=(x, x))\n'),
        ('        val = vae_loss(recon, val_data, mu, logvar).item()\n',
         '        val = vae_loss(recon, val_data, mu, logvar).item()\n    medic.end_epoch(val_loss=val)\n'
         '    if medic.should_stop:\n        break\n'),
    ], "for epoch in range(args.epochs):", "print(\"FINAL",
        "medic = trainmedic.Medic(vae, opt, mode=args.mode, loss_fn=lambda out, x: vae_loss(out[0], x, out[1], out[2]))")


if __name__ == "__main__":
    main()
