"""An optional TensorBoard sink: the run's scalars, and findings and actions as text.

    from trainmedic.report.tensorboard import TensorBoardCallback
    medic = trainmedic.Medic(model, opt, callbacks=[TensorBoardCallback("runs/tb/exp1")])

Scalars: ``trainmedic/loss``, ``trainmedic/grad_norm``, ``trainmedic/lr`` (the steps the Medic keeps in its
history: every step until the history is full, then evenly spaced), ``trainmedic/epoch/*`` (train loss,
validation loss and metric per epoch, at the step the epoch ended). Text: ``trainmedic/findings/TMxxx``
(the message and the rule's explanation, once per finding) and ``trainmedic/actions`` (rollbacks, lr
changes, ...).

TensorBoard is not a dependency of trainmedic. Without it (``torch.utils.tensorboard`` cannot be
imported) the callback warns once and does nothing. After ``Medic.resume()`` it continues the same curves:
the writer is opened with ``purge_step`` at the resumed step, so steps logged after the checkpoint by the
interrupted process are dropped by TensorBoard instead of being drawn twice.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any

from trainmedic.callbacks import MedicCallback

if TYPE_CHECKING:
    from trainmedic.medic import Medic


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # ImportError, or a broken tensorboard/protobuf install
        return False
    return True


class TensorBoardCallback(MedicCallback):
    """Mirror the Medic's curves, findings and actions into a TensorBoard log directory.

    Args:
        log_dir: the TensorBoard run directory.
        writer_factory: builds the writer, ``factory(log_dir, purge_step=...)``; default
            ``torch.utils.tensorboard.SummaryWriter`` (tests pass a fake).
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike[str], *, writer_factory: Any = None) -> None:
        self.log_dir = str(log_dir)
        self._factory = writer_factory
        self.writer: Any = None
        self.available = True
        self._seen = 0  # events (counting dropped ones) already mirrored
        self._last_row = -1

    def on_attach(self, medic: Medic) -> None:
        if self._factory is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception as exc:
                self.available = False
                warnings.warn(f"TensorBoardCallback: tensorboard is not installed ({type(exc).__name__}); "
                              "nothing is written to TensorBoard (pip install tensorboard)", stacklevel=3)
                return
            self._factory = SummaryWriter

    def _open(self, medic: Medic, first_step: int) -> bool:
        if not self.available:
            return False
        if self.writer is None:
            # Begin at this step: history restored by a resume was logged by the earlier process.
            kwargs = {"purge_step": first_step} if first_step > 0 else {}
            self.writer = self._factory(self.log_dir, **kwargs)
            tail = 0
            for ev in reversed(medic.events):
                if not isinstance(ev.get("step"), int) or ev["step"] < first_step:
                    break
                tail += 1
            self._seen = medic.events_dropped + len(medic.events) - tail
            self._last_row = first_step - 1
        return True

    def on_step_end(self, medic: Medic, step: int, applied: bool) -> None:
        if not self._open(medic, step):
            return
        self._scalars(medic)
        self._events(medic)

    def on_epoch_end(self, medic: Medic, epoch: int, record: dict[str, Any]) -> None:
        if not self._open(medic, medic.step_count):
            return
        at = int(record.get("step", medic.step_count))
        for key in ("train_loss", "val_loss", "val_metric"):
            v = record.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"trainmedic/epoch/{key}", float(v), at)
        self._events(medic)

    def on_save(self, medic: Medic, out_dir: Any) -> None:
        if self.writer is not None:
            self._events(medic)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    # ---------------------------------------------------------------------------------------------
    def _scalars(self, medic: Medic) -> None:
        rows = medic.history.rows
        new = []
        for row in reversed(rows):
            if row[0] <= self._last_row:
                break
            new.append(row)
        for step, loss, grad_norm, lr in reversed(new):
            for key, v in (("loss", loss), ("grad_norm", grad_norm), ("lr", lr)):
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(f"trainmedic/{key}", float(v), step)
        if new:
            self._last_row = new[0][0]

    def _events(self, medic: Medic) -> None:
        total = medic.events_dropped + len(medic.events)
        fresh = min(total - self._seen, len(medic.events))
        self._seen = total
        if fresh <= 0:
            return
        for ev in list(medic.events)[-fresh:]:
            kind = ev.get("type")
            step = ev.get("step") if isinstance(ev.get("step"), int) else medic.step_count
            if kind == "finding":
                self.writer.add_text(f"trainmedic/findings/{ev.get('code')}", _finding_text(ev), step)
            elif kind == "action":
                detail = ", ".join(f"{k}={v}" for k, v in ev.items()
                                   if k not in ("type", "step", "epoch", "action", "reason"))
                self.writer.add_text("trainmedic/actions",
                                     f"step {step}: **{ev.get('action')}** ({ev.get('reason')}) {detail}", step)


def _finding_text(ev: dict[str, Any]) -> str:
    from trainmedic.rules.registry import get_rule

    code = str(ev.get("code"))
    head = f"**{code}** ({ev.get('severity')}) at step {ev.get('step')}: {ev.get('message')}"
    try:
        doc = get_rule(code).render()
    except KeyError:
        return head
    # TensorBoard renders text as Markdown: keep the explanation verbatim in a code block.
    return head + "\n\n```\n" + doc + "\n```"
