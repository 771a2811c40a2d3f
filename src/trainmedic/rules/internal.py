"""TM9xx: trainmedic's own failures. A check that raises is disabled and reported, never propagated."""

from trainmedic.rules.registry import rule

CHECK_FAILED = rule(
    "TM901",
    "check-failed",
    "info",
    summary="One of trainmedic's own checks raised an exception and was switched off for the rest of the run.",
    what="""
        A detector, a signal collector or a forensic replay failed inside trainmedic. The failing part was
        disabled and training went on untouched; the other checks kept working.
        """,
    why="""
        An unusual model, optimizer or tensor type that the check did not expect (sparse gradients,
        a custom optimizer without param groups, a tensor subclass...), or a bug in trainmedic.
        """,
    fix="""
        Nothing is needed for the training itself. The evidence holds the check's name and the exception;
        please report it so the check can handle this case.
        """,
    example="""
        TM901 check-failed: update-ratio sampling raised RuntimeError('...') and was disabled at step 120
        """,
)

INSTRUMENTATION_FAILED = rule(
    "TM902",
    "instrumentation-failed",
    "info",
    summary="trainmedic could not attach part of its instrumentation to this script.",
    what="""
        `trainmedic run` attaches hooks to optimizers, modules and losses. One of them could not be attached
        or raised when called; it was removed and the script ran on without it.
        """,
    why="A patched or exotic training framework, or a PyTorch version whose hook API differs.",
    fix="The run's other findings stand. Use the `Medic` API in the loop for full coverage.",
)
