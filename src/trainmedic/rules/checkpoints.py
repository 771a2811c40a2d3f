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
