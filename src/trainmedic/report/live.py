"""The console as a sink of the engine's events: one line per new finding or action worth a human's eye.

The engine publishes every finding and action (:meth:`trainmedic.engine.Engine.subscribe`); this turns
them into lines on :class:`~trainmedic.report.console.MedicConsole`. A repeated finding is counted, not
reprinted.
"""

from __future__ import annotations

from typing import Any

from trainmedic.report.console import MedicConsole


class ConsoleSink:
    def __init__(self, console: MedicConsole, prefix: str = "") -> None:
        self.console = console
        self.prefix = prefix

    def __call__(self, event: dict[str, Any], new: bool) -> None:
        kind = event.get("type")
        if kind == "finding":
            key = event.get("key") or event.get("code")
            if not new:
                self.console.line("", key=key)  # counted in the status line
                return
            msg = f"{self.prefix}{event['code']} {event.get('name')} at step {event.get('step')}: {event.get('message')}"
            if event.get("action"):
                msg += f" -> {event['action']}"
            self.console.line(msg, event.get("severity") or "info", key=key)
        elif kind == "action":
            text = action_line(event)
            if text:
                self.console.line(self.prefix + text, "warning")


def action_line(event: dict[str, Any]) -> str | None:
    """The console text of an action, for those a user should see as they happen."""
    action, step = event.get("action"), event.get("step")
    if action == "rollback":
        return (f"step {step}: rolled back to step {event.get('to_step')}, lr {event.get('lr_before'):.3g} -> "
                f"{event.get('lr_after'):.3g}")
    if action == "lr-change":
        return f"step {step}: lr {event.get('lr_before'):.3g} -> {event.get('lr_after'):.3g} ({event.get('reason')})"
    if action == "restore-best":
        return f"restored the weights of epoch {event.get('epoch')}"
    return None
