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

NOTHING_WATCHED = rule(
    "TM903",
    "nothing-watched",
    "warning",
    summary="The run ended without a single training step watched: its findings say nothing about its health.",
    what="""
        `trainmedic run` watches a training loop at its optimizer steps (`optimizer.step()`, a closure step
        such as LBFGS's) or, in a loop without an optimizer, at the updates it makes by hand after
        `backward()`. This run ended without any step judged: no optimizer step and no hand-made update of
        the parameters was seen, steps were seen but no loss reached `backward()` where trainmedic could see
        it, or the engine of every optimizer failed to start (TM902). An empty list of findings would then
        look like a healthy run; it is not one.
        """,
    why="""
        The script did not train (a data-preparation or evaluation script, an early exit, an error before
        the first step), its training step runs inside a compiled function (`torch.compile` of a function
        that calls `backward()` and `optimizer.step()`), it accumulates gradients over several backward
        passes before a hand-written update, or it trains through a framework trainmedic does not hook.
        """,
    fix="""
        Check that the script trains when it runs as given. For a loop trainmedic cannot see, call the
        `Medic` API in the loop (`medic.step(loss)` in place of `optimizer.step()`), or use the Lightning or
        Hugging Face callback.
        """,
    example="""
        trainmedic run prepare_data.py     # never calls backward() -> TM903: nothing was watched
        """,
)

CHECK_SKIPPED = rule(
    "TM904",
    "check-skipped",
    "info",
    summary="A check or a heal action stepped aside because it cannot run on this setup; the others ran.",
    what="""
        Some checks need something the run does not allow without changing what the script sees: module
        hooks inside a compiled model (`torch.compile`) would make it recompile and print graph-break
        warnings, so the sampled activation checks (TM311) and the capture of the training inputs
        (pre-flight replay, forensics) step aside there; and heal cannot skip, clip or roll back a step in a
        loop that updates its parameters by hand, since the update is not a call it can intercept. The
        finding says which part stepped aside and why. Nothing failed (that would be TM901).
        """,
    why="A compiled model or training step, or `--heal` on a loop without an optimizer object.",
    fix="""
        Nothing is needed. For the skipped checks, run a few steps without `torch.compile` (the checks then
        see the uncompiled model); for heal, use an optimizer object (`torch.optim.SGD(model.parameters(),
        lr=lr)`) so trainmedic can take or skip its steps.
        """,
    example="""
        TM904 check-skipped: activations skipped: the model runs compiled (torch.compile); hooks on its
        modules would make it recompile
        """,
)
