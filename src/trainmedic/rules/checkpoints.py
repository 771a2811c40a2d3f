"""TM32x: checkpoints on disk (``Medic(checkpoint_dir=...)``, ``Medic.resume``).

The detectors are in ``trainmedic.heal.checkpoint``: a checkpoint whose checksum does not match, that
cannot be read, or that would need to run code to load, is set aside and the previous one is used.
"""

from trainmedic.rules.registry import rule

CHECKPOINT_CORRUPT = rule(
    "TM320",
    "checkpoint-corrupt",
    "warning",
    summary="A checkpoint on disk is damaged; the previous good one was used instead.",
    what="""
        While resuming, a checkpoint file did not match the SHA-256 checksum written beside it, had the
        wrong size, or could not be read back. trainmedic renamed it to `*.corrupt` (kept for
        inspection, never loaded again) and resumed from the newest checkpoint that checks out. The run
        continues from an earlier step: the steps after it are trained again, so no progress is
        invented and the loss history has no gap.
        """,
    why="""
        The process or the machine died while the file was being written (a kill, an OOM, a power cut, a
        preempted cloud instance), the disk filled up, the file was copied only in part, or the storage
        flipped bits. trainmedic writes to a temporary file, fsyncs it and renames it, so a crash alone
        leaves the previous checkpoint intact; a damaged file usually means a copy or storage problem.
        """,
    fix="""
        Nothing is needed for the run itself. If it happens more than once, check the disk (`df -h`,
        `dmesg`) and the tool that copies checkpoints. The evidence names the file and what was wrong;
        the file is kept as `NAME.corrupt`.
        """,
    example="""
        medic = trainmedic.Medic(model, opt, checkpoint_dir="ckpt", every=100)
        medic.resume()        # ckpt-000000300-00003.pt is truncated -> resumes from ckpt-000000200-00002.pt
        """,
    references=("practitioner note 004: save whenever the loss improves, reload after a rebound",),
)

CHECKPOINT_WRITE_FAILED = rule(
    "TM321",
    "checkpoint-write-failed",
    "warning",
    summary="A checkpoint could not be written; training went on and the previous checkpoint is intact.",
    what="""
        Writing a checkpoint raised an error (most often the disk is full: ENOSPC, or a quota). The
        partial temporary file was removed; the checkpoints written before are untouched and loadable.
        Training was not interrupted, and trainmedic tries again at the next checkpoint.
        """,
    why="""
        The checkpoint directory is on a full or read-only filesystem, a quota was reached, or a part of
        the training state cannot be stored as plain tensors (a scheduler holding a Python object), which
        a checkpoint loaded with `weights_only=True` cannot contain.
        """,
    fix="""
        Free space or point `checkpoint_dir` somewhere larger; lower `keep` (checkpoints kept) or raise
        `every` (steps between checkpoints). The evidence holds the error and the count of failed writes.
        """,
    example="""
        medic = trainmedic.Medic(model, opt, checkpoint_dir="/big/disk/ckpt", every=500, keep=2)
        """,
)

CHECKPOINT_UNSAFE = rule(
    "TM322",
    "checkpoint-unsafe",
    "error",
    summary="A checkpoint asked to run code while loading; it was refused and not used.",
    what="""
        trainmedic loads checkpoints with `torch.load(weights_only=True)`: only tensors and plain
        containers (dicts, lists, numbers, strings) may come out. This file references a Python callable
        or class (for example through a pickle `__reduce__`), which an ordinary `torch.load` would have
        called. It was refused before anything ran, renamed to `*.corrupt`, and the previous checkpoint
        was used.
        """,
    why="""
        The file was not written by trainmedic: it was replaced or crafted, possibly maliciously (a pickle
        can run any command when loaded), or it was saved by code that stored whole Python objects.
        """,
    fix="""
        Do not load the file with `weights_only=False`. Find out who wrote it. Checkpoints written by
        trainmedic hold only tensors and plain containers and always load with `weights_only=True`.
        """,
    example="""
        torch.load("ckpt.pt")                      # may execute code hidden in the pickle
        torch.load("ckpt.pt", weights_only=True)   # refuses it (what trainmedic does)
        """,
    references=("https://pytorch.org/docs/stable/generated/torch.load.html (weights_only)",),
)

NO_USABLE_CHECKPOINT = rule(
    "TM323",
    "no-usable-checkpoint",
    "error",
    summary="resume() found checkpoints but none could be used; the run started fresh from step 0.",
    what="""
        The checkpoint directory held checkpoint files, and every one of them was damaged, refused, set
        aside by an earlier resume, or had lost the sidecar that holds its checksum. None was loaded: the
        model, the optimizer and the step count are those of a fresh start, and the work the checkpoints
        held is lost to this run. The evidence lists each file and what was wrong with it (the damaged and
        refused ones also have their own TM320 / TM322 finding and were renamed to `*.corrupt`).
        """,
    why="""
        The files were copied or synced only in part (a `cp *.pt` that left the `.json` sidecars behind,
        an interrupted rsync), the storage damaged them, the directory was replaced, or an earlier resume
        already set every file aside. A crash while writing cannot cause it alone: the previous checkpoint
        stays intact until the next one is complete.
        """,
    fix="""
        Stop the run if starting over is not what you want. Look at the files in the evidence: a file
        without its sidecar can still be loaded by hand with
        `trainmedic.heal.checkpoint.load_checkpoint(path, verify=False)` (weights-only, unverified);
        restore the directory from a good copy; then check the disk and the copy tool.
        """,
    example="""
        medic = trainmedic.Medic(model, opt, checkpoint_dir="ckpt", every=100)
        medic.resume()   # every ckpt-*.pt truncated -> None, TM323 (plus one TM320 per file), fresh start
        """,
    references=("practitioner note 004: save whenever the loss improves, reload after a rebound",),
)
