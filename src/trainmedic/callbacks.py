"""Extension points of the Medic, named after Lightning's and Keras's callback hooks.

Forensics, pre-flight checks, checkpoints and the zero-code instrumentation plug into the Medic through
these hooks instead of editing its step. Every hook call is guarded: a callback that raises is
switched off and reported as TM901, and training goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainmedic.findings import Finding
    from trainmedic.medic import Medic
    from trainmedic.signals.collect import StepSignals


class MedicCallback:
    """Override the hooks you need; all of them do nothing by default."""

    #: a short name used in TM901 findings when the callback fails
    name: str = "callback"

    def on_attach(self, medic: Medic) -> None:
        """The Medic was built; keep a reference if needed."""

    def on_loss(self, medic: Medic, step: int, loss: Any, batch: Any) -> Any:
        """First thing in ``medic.step``: return None, or a replacement loss whose backward you have already
        run (forensics uses it to recompute a batch without quarantined rows)."""
        return None

    def on_before_step(self, medic: Medic, step: int, loss: Any, batch: Any) -> None:
        """``medic.step`` was called, before signals are collected (loss and gradients are ready)."""

    def on_nonfinite(self, medic: Medic, step: int, signals: StepSignals, finding: Finding, batch: Any) -> None:
        """The loss or a gradient of this step is NaN/Inf (called once per step, before the step is skipped)."""

    def on_step_end(self, medic: Medic, step: int, applied: bool) -> None:
        """The step was applied (``applied=True``), skipped, or rolled back."""

    def on_rollback(self, medic: Medic, step: int, to_step: int) -> None:
        """Heal mode restored a snapshot."""

    def on_epoch_end(self, medic: Medic, epoch: int, record: dict[str, Any]) -> None:
        """``medic.end_epoch`` ran its checks."""

    def on_save(self, medic: Medic, out_dir: Any) -> None:
        """``medic.save_report(out_dir)`` wrote its files."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
