"""Checkpoints on disk that survive a crash, and resuming from them (practitioner note 004).

Note 004 saves the model whenever the loss improves, watches for the rebound, reloads, lowers the
learning rate, and keeps the loss history with the checkpoint so the curve continues. Here:

    medic = trainmedic.Medic(model, opt, scheduler=sched, checkpoint_dir="ckpt", every=200, keep=3)
    medic.resume()                      # no-op on a fresh start; otherwise continues where the run stopped
    for epoch in range(medic.epoch, epochs):
        for i in range(medic.step_count - epoch * steps_per_epoch, steps_per_epoch):
            ...; medic.step(loss)
        medic.end_epoch(val_loss=...)

A checkpoint holds the model, the optimizer (Adam's moments included), the scheduler, the GradScaler,
every RNG state (torch, CUDA, Python, NumPy) and the Medic's state: counters, detector state, findings,
events, the whole downsampled loss / grad-norm / lr history, the in-memory rollback snapshots and the
best weights. Only tensors and plain containers go in, so it loads with ``torch.load(weights_only=True)``
and a file crafted to run code on load is refused (TM322).

Files, in ``checkpoint_dir``:

    ckpt-000001200-00003.pt      the checkpoint after step 1200 (1200 steps done), next epoch 3
    ckpt-000001200-00003.json    its sidecar: sha256, size, step, epoch, why it was written

Writing is atomic: the bytes go to a temporary file which is fsynced, renamed over the final name, and
only then is the sidecar written (itself atomically). A crash at any moment leaves either a complete
checkpoint with its sidecar, or a file without a sidecar, which is ignored. On resume each candidate's
size and SHA-256 are checked before it is unpickled; a damaged or refused file is renamed
``*.corrupt`` and the previous checkpoint is used, with a finding (TM320 / TM322). A failed write
(ENOSPC) removes its temporary file, keeps every earlier checkpoint, and reports TM321; training goes on.
The last ``keep`` checkpoints and the best one are kept.

Exact resume: a checkpoint taken after step ``t`` holds the RNG states of that moment, so a loop that
draws its batches from the RNG (dropout, random augmentation, ``randperm``) continues with the same
numbers. A ``DataLoader`` with ``shuffle=True`` draws its permutation when the epoch starts; for an
exact mid-epoch resume give it a per-epoch seeded generator (as ``DistributedSampler.set_epoch`` does)
and skip the batches already done.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import io
import json
import math
import os
import pickle
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainmedic.callbacks import MedicCallback
from trainmedic.errors import TrainmedicError
from trainmedic.heal.snapshot import rng_from_plain, rng_state, rng_to_plain, set_rng_state
from trainmedic.rules.checkpoints import (
    CHECKPOINT_CORRUPT,
    CHECKPOINT_UNSAFE,
    CHECKPOINT_WRITE_FAILED,
    NO_USABLE_CHECKPOINT,
)

if TYPE_CHECKING:
    from trainmedic.driver import Driver

FORMAT = "trainmedic-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{9,})-(\d{5,})\.pt$")
_TMP_PREFIX = ".ckpt-"


class CheckpointError(TrainmedicError):
    """A checkpoint file cannot be used."""


class CheckpointCorrupt(CheckpointError):
    """Wrong checksum or size, truncated, unreadable, or not a trainmedic checkpoint."""


class CheckpointUnsafe(CheckpointError):
    """The file references Python callables or classes: loading it would run code. Refused."""


@dataclass
class CheckpointInfo:
    """One checkpoint on disk, as its file name and sidecar describe it."""

    path: Path
    step: int  # medic.step_count when written: steps done
    epoch: int  # the epoch the run continues with
    seq: int = 0  # write order within the directory
    sha256: str = ""
    size: int = -1
    reason: str = ""  # "step", "epoch" or "best"
    improved: bool = False  # written at the end of an epoch whose monitored value improved
    train_loss: float | None = None  # the smoothed training loss at that moment
    time: str = ""
    problem: str | None = None  # why the sidecar is unusable (the checkpoint is then not trusted)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.step, self.epoch, self.seq)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    return Path(path).with_suffix(".json")


def checkpoint_name(step: int, epoch: int) -> str:
    return f"ckpt-{step:09d}-{epoch:05d}.pt"


# ----------------------------------------------------------------------------------------------------
# listing and loading
# ----------------------------------------------------------------------------------------------------
def list_checkpoints(directory: str | os.PathLike[str], *, include_untrusted: bool = False) -> list[CheckpointInfo]:
    """Checkpoints in ``directory``, oldest first.

    A ``.pt`` without its sidecar is an interrupted write and is never listed. One whose sidecar cannot be
    read is listed only with ``include_untrusted=True`` (``problem`` says why).
    """
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if not m or not p.is_file():
            continue
        side = sidecar_path(p)
        if not side.exists():
            continue
        info = CheckpointInfo(path=p, step=int(m.group(1)), epoch=int(m.group(2)))
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            info.seq = int(meta.get("seq", 0))
            info.sha256 = str(meta["sha256"])
            info.size = int(meta["size"])
            info.reason = str(meta.get("reason", ""))
            info.improved = bool(meta.get("improved", False))
            tl = meta.get("train_loss")
            info.train_loss = float(tl) if isinstance(tl, (int, float)) else None
            info.time = str(meta.get("time", ""))
            if int(meta.get("step", info.step)) != info.step or len(info.sha256) != 64:
                info.problem = "sidecar does not describe this file"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            info.problem = f"sidecar unreadable ({type(exc).__name__}: {exc})"
        if info.problem is None or include_untrusted:
            out.append(info)
    out.sort(key=lambda i: i.order)
    return out


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint whose sidecar is intact (its content is verified when loaded)."""
    infos = list_checkpoints(directory)
    return infos[-1].path if infos else None


def best_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint of the best evaluation (or, without evaluations, the lowest smoothed training loss)."""
    best = _best(list_checkpoints(directory))
    return best.path if best else None


def _best(infos: list[CheckpointInfo]) -> CheckpointInfo | None:
    improved = [i for i in infos if i.improved]
    if improved:
        return improved[-1]
    scored = [i for i in infos if i.train_loss is not None and math.isfinite(i.train_loss)]
    return min(scored, key=lambda i: (i.train_loss, i.order)) if scored else None


def verify_checkpoint(path: str | os.PathLike[str], info: CheckpointInfo | None = None) -> bytes:
    """Read the file and check its size and SHA-256 against the sidecar; returns the bytes."""
    path = Path(path)
    if info is None:
        m = _NAME.match(path.name)
        info = next((i for i in list_checkpoints(path.parent, include_untrusted=True) if i.path == path), None)
        if info is None:
            hint = "" if m else " (not a trainmedic checkpoint name)"
            raise CheckpointCorrupt(f"{path}: no sidecar {sidecar_path(path).name} with its checksum{hint}; "
                                    "pass verify=False to load it unverified (still weights-only)")
    if info.problem:
        raise CheckpointCorrupt(f"{path}: {info.problem}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointCorrupt(f"{path}: cannot be read ({exc})") from exc
    if len(data) != info.size:
        raise CheckpointCorrupt(f"{path}: {len(data)} bytes, the sidecar says {info.size} (truncated or replaced)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256:
        raise CheckpointCorrupt(f"{path}: SHA-256 {digest[:12]}... does not match the sidecar's {info.sha256[:12]}...")
    return data


def load_checkpoint(path: str | os.PathLike[str], *, verify: bool = True,
                    info: CheckpointInfo | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; tensors land on the CPU.

    Raises :class:`CheckpointCorrupt` (checksum, size, truncation, wrong content) or
    :class:`CheckpointUnsafe` (the file would run code when unpickled; nothing was run).
    """
    path = Path(path)
    if verify:
        data = verify_checkpoint(path, info)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointCorrupt(f"{path}: cannot be read ({exc})") from exc
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise CheckpointUnsafe(
                f"{path}: refused, loading it would run code or build arbitrary objects "
                f"({detail or 'not weights-only'}); it was not written by trainmedic") from None
        raise CheckpointCorrupt(f"{path}: not a readable checkpoint ({text.splitlines()[0][:200]})") from None
    except Exception as exc:  # truncated zip, bad header, EOF...
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointCorrupt(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointCorrupt(f"{path}: not a trainmedic checkpoint (no format={FORMAT!r} field)")
    if int(payload.get("version", 0)) > VERSION:
        raise CheckpointCorrupt(f"{path}: checkpoint format version {payload.get('version')} is newer than this "
                                f"trainmedic understands ({VERSION}); upgrade trainmedic")
    return payload


# ----------------------------------------------------------------------------------------------------
# capture and restore
# ----------------------------------------------------------------------------------------------------
_SCALARS = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """Reduce a state to what ``torch.load(weights_only=True)`` accepts, or say precisely what cannot be."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None), tuple)):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} cannot be stored weights-only")
            out[k] = to_plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, tuple):
        return tuple(to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, (list, deque)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(sorted(obj, key=repr))]
    raise TypeError(f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}, which a weights-only "
                    "checkpoint cannot store (only tensors, numbers, strings and containers of them)")


def _callback_key(cb: MedicCallback, i: int) -> str:
    return f"{i}:{getattr(cb, 'name', type(cb).__name__)}"


def capture(medic: Driver, *, next_epoch: int | None = None, snapshots: bool = True) -> dict[str, Any]:
    """Everything a resume needs, as plain data: the torch objects' states, the RNGs, the driver's whole
    state (``Driver.state_dict``) and the callbacks' states. ``next_epoch`` overrides the epoch the run
    continues with (a checkpoint taken inside ``end_epoch``, before the epoch counter advances).
    ``snapshots=False`` leaves out heal mode's in-memory rollback snapshots (each a copy of model and
    optimizer state)."""
    from trainmedic import __version__

    state = medic.state_dict(snapshots=snapshots)
    epoch = medic.epoch if next_epoch is None else next_epoch
    state["engine"]["epoch"] = epoch
    callbacks = {_callback_key(cb, i): cb.state_dict() for i, cb in enumerate(medic.callbacks)
                 if not isinstance(cb, CheckpointCallback)}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "trainmedic": __version__,
        "step": medic.step_count,
        "epoch": int(epoch),
        "model": medic.model.state_dict(),
        "optimizer": medic.optimizer.state_dict(),
        "scheduler": medic.scheduler.state_dict() if medic.scheduler is not None else None,
        "scaler": medic.scaler.state_dict() if medic.scaler is not None else None,
        "rng": rng_to_plain(rng_state()),
        "driver": state,
        "callbacks": callbacks,
    }
    return to_plain(payload)


def restore(medic: Driver, payload: dict[str, Any]) -> None:
    """Load a captured checkpoint into the live model, optimizer, scheduler, scaler, RNGs and driver."""
    if "driver" not in payload:
        raise CheckpointCorrupt("written by an earlier trainmedic (no driver state); it cannot resume this run")
    medic.model.load_state_dict(payload["model"])
    medic.optimizer.load_state_dict(payload["optimizer"])
    if medic.scheduler is not None and payload.get("scheduler") is not None:
        medic.scheduler.load_state_dict(payload["scheduler"])
    if medic.scaler is not None and payload.get("scaler") is not None:
        medic.scaler.load_state_dict(payload["scaler"])
    saved = payload.get("callbacks") or {}
    for i, cb in enumerate(medic.callbacks):
        state = saved.get(_callback_key(cb, i))
        if state is not None and not isinstance(cb, CheckpointCallback):
            cb.load_state_dict(state)
    set_rng_state(rng_from_plain(payload["rng"]))
    medic.load_state_dict(payload["driver"])


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------
def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync one file. (Tests replace this to simulate a full disk.)"""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.parent / f"{_TMP_PREFIX}{path.name}.{os.getpid()}.tmp"
    try:
        _write_bytes(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_checkpoint(directory: str | os.PathLike[str], payload: dict[str, Any], *, seq: int = 0,
                     reason: str = "step", improved: bool = False,
                     train_loss: float | None = None) -> CheckpointInfo:
    """Serialize ``payload`` (from :func:`capture`) atomically, then write its checksummed sidecar."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    step, epoch = int(payload["step"]), int(payload["epoch"])
    path = d / checkpoint_name(step, epoch)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    # A sidecar must never vouch for other bytes: drop any old one before the file is replaced.
    try:
        sidecar_path(path).unlink()
    except FileNotFoundError:
        pass
    _atomic_write(path, data)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    tl = train_loss if train_loss is not None and math.isfinite(train_loss) else None
    meta = {"format": FORMAT, "version": VERSION, "file": path.name, "sha256": sha, "size": len(data),
            "step": step, "epoch": epoch, "seq": seq, "reason": reason, "improved": improved,
            "train_loss": tl, "time": now}
    _atomic_write(sidecar_path(path), (json.dumps(meta, indent=1) + "\n").encode())
    _fsync_dir(d)
    return CheckpointInfo(path=path, step=step, epoch=epoch, seq=seq, sha256=sha, size=len(data), reason=reason,
                          improved=improved, train_loss=tl, time=now)


def _set_aside(info: CheckpointInfo) -> str:
    """Rename a bad checkpoint (and its sidecar) to ``*.corrupt`` so it is never tried again."""
    target = info.path.with_name(info.path.name + ".corrupt")
    try:
        os.replace(info.path, target)
        side = info.sidecar
        if side.exists():
            os.replace(side, side.with_name(side.name + ".corrupt"))
    except OSError:
        return str(info.path)
    return str(target)


# ----------------------------------------------------------------------------------------------------
# the callback and resume
# ----------------------------------------------------------------------------------------------------
class CheckpointCallback(MedicCallback):
    """Writes checkpoints while the Medic trains; ``Medic(checkpoint_dir=...)`` adds one for you.

    Args:
        directory: where the checkpoints go (created if needed).
        every: write one every ``every`` steps; ``None`` writes one at the end of every epoch instead.
        keep: how many of the newest checkpoints to keep (the best one is kept in addition).
        save_best: also write one at the end of every epoch whose monitored value improved
            (note 004: save whenever it improves).
        snapshots: include heal mode's rollback snapshots (``Thresholds.snapshots_kept`` copies of the
            model and optimizer state; exact heal behaviour after a resume). ``False`` keeps checkpoints
            the size of one model + optimizer state; a resumed heal run then starts a new snapshot at the
            resumed step.
    """

    name = "checkpoint"

    def __init__(self, directory: str | os.PathLike[str], every: int | None = None, keep: int = 3,
                 save_best: bool = True, snapshots: bool = True) -> None:
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ValueError(f"every must be a positive number of steps or None (once per epoch), got {every!r}")
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep!r}")
        self.directory = Path(directory)
        self.every = every
        self.keep = keep
        self.save_best = save_best
        self.snapshots = snapshots
        self.written = 0
        self.failures = 0
        self.last: CheckpointInfo | None = None
        self.seconds = 0.0  # total time spent writing checkpoints
        self._seq = 0

    # hooks -----------------------------------------------------------------------------------------
    def on_attach(self, medic: Driver) -> None:
        existing = list_checkpoints(self.directory)
        self._seq = max((i.seq for i in existing), default=-1) + 1

    def resumed_from(self, info: CheckpointInfo) -> None:
        """The run continues from ``info``: later checkpoints are numbered after it."""
        self._seq = max(self._seq, info.seq + 1)

    def on_step_end(self, medic: Driver, step: int, applied: bool) -> None:
        if self.every is not None and medic.step_count % self.every == 0:
            self.save(medic, reason="step")

    def on_epoch_end(self, medic: Driver, epoch: int, record: dict[str, Any]) -> None:
        improved = medic.best_epoch == epoch and record.get("epoch") == epoch
        if self.every is None or (self.save_best and improved):
            self.save(medic, reason="best" if improved else "epoch", next_epoch=epoch + 1, improved=improved)

    # API -------------------------------------------------------------------------------------------
    def save(self, medic: Driver, *, reason: str = "manual", next_epoch: int | None = None,
             improved: bool = False) -> CheckpointInfo | None:
        """Write a checkpoint now. A failure is reported (TM321) and returns None; it never raises."""
        from trainmedic.driver import _rank

        if _rank() != 0:
            return None
        import time

        t0 = time.perf_counter()
        try:
            payload = capture(medic, next_epoch=next_epoch, snapshots=self.snapshots)
            info = write_checkpoint(self.directory, payload, seq=self._seq, reason=reason, improved=improved,
                                    train_loss=medic.smoothed_loss)
        except Exception as exc:
            self.failures += 1
            self.seconds += time.perf_counter() - t0
            code = getattr(exc, "errno", None)
            kept = latest_checkpoint(self.directory)
            what = "disk full (ENOSPC)" if code == errno.ENOSPC else f"{type(exc).__name__}: {exc}"
            medic.report(CHECKPOINT_WRITE_FAILED.code,
                         f"checkpoint at step {medic.step_count} not written: {what}",
                         evidence={"error": repr(exc), "errno": errno.errorcode.get(code, code) if code else None,
                                   "directory": str(self.directory), "failures": self.failures,
                                   "previous": kept.name if kept else None},
                         action="training continues; earlier checkpoints kept")
            return None
        self._seq += 1
        self.written += 1
        self.last = info
        self._prune(keep_path=info.path)
        self.seconds += time.perf_counter() - t0
        return info

    def _prune(self, keep_path: Path) -> None:
        infos = list_checkpoints(self.directory)
        keep = {i.path for i in infos[-self.keep:]} | {keep_path}
        best = _best(infos)
        if best is not None:
            keep.add(best.path)
        for info in infos:
            if info.path not in keep:
                for p in (info.sidecar, info.path):  # sidecar first: a crash leaves an ignored orphan
                    try:
                        p.unlink()
                    except OSError:
                        pass
        # Orphans of interrupted writes: a .pt without sidecar, a temporary file of a dead process.
        listed = {i.path for i in list_checkpoints(self.directory, include_untrusted=True)}
        for p in self.directory.iterdir():
            orphan = _NAME.match(p.name) and p not in listed and p != keep_path
            stale_tmp = p.name.startswith(_TMP_PREFIX) and p.name.endswith(".tmp") \
                and not p.name.endswith(f".{os.getpid()}.tmp")
            if orphan or stale_tmp:
                try:
                    p.unlink()
                except OSError:
                    pass


def find_callback(medic: Driver) -> CheckpointCallback | None:
    return next((cb for cb in medic.callbacks if isinstance(cb, CheckpointCallback)), None)


def resume(medic: Driver, directory: str | os.PathLike[str] | None = None) -> CheckpointInfo | None:
    """Continue a run from the newest good checkpoint in ``directory`` (default: the Medic's checkpoint_dir).

    Returns the checkpoint used, or None when there is none (a fresh start: nothing is changed). Damaged
    or refused files are set aside as ``*.corrupt`` and reported (TM320, TM322) once the run is restored.
    When the directory held checkpoint files and none could be used (all damaged or refused, sidecars
    lost, or set aside by an earlier resume), the fresh start is reported too (TM323): an empty directory
    is a first run, a directory of unusable files is lost work.
    """
    cb = find_callback(medic)
    if directory is None:
        if cb is None:
            raise ValueError("resume() needs a directory, or a Medic built with checkpoint_dir=...")
        directory = cb.directory
    problems: list[tuple[str, str, dict[str, Any]]] = []
    chosen: CheckpointInfo | None = None
    for info in reversed(list_checkpoints(directory, include_untrusted=True)):
        try:
            payload = load_checkpoint(info.path, info=info)
        except CheckpointUnsafe as exc:
            problems.append((CHECKPOINT_UNSAFE.code, str(exc), {"file": info.path.name,
                                                                 "moved_to": _set_aside(info)}))
            continue
        except CheckpointCorrupt as exc:
            problems.append((CHECKPOINT_CORRUPT.code, str(exc), {"file": info.path.name,
                                                                  "moved_to": _set_aside(info)}))
            continue
        restore(medic, payload)
        chosen = info
        break
    for code, message, evidence in problems:
        evidence["resumed_from"] = chosen.path.name if chosen else None
        action = f"resumed from {chosen.path.name}" if chosen else "no usable checkpoint: starting fresh"
        medic.report(code, message, evidence=evidence, action=action, key=f"{code}:{evidence['file']}")
    if chosen is not None:
        medic.record_action("resume", "checkpoint", file=chosen.path.name)
        if cb is not None:
            cb.resumed_from(chosen)
    else:
        _report_nothing_usable(medic, Path(directory), problems)
    return chosen


def unusable_files(directory: Path, problems: list[tuple[str, str, dict[str, Any]]]) -> dict[str, str]:
    """Checkpoint files that resume() could not use, and why: the ones it just set aside, ``.pt`` files
    without a sidecar, and files an earlier resume set aside (``*.corrupt``)."""
    out = {ev["file"]: f"{code}: {msg}" for code, msg, ev in problems}
    just_set_aside = {Path(ev["moved_to"]).name for _, _, ev in problems}
    if not directory.is_dir():
        return out
    for p in sorted(directory.iterdir()):
        if p.name in out or p.name in just_set_aside or not p.name.startswith("ckpt-"):
            continue
        if _NAME.match(p.name) and not sidecar_path(p).exists():
            out[p.name] = "no sidecar with its checksum (lost in a copy, or an interrupted write): not trusted"
        elif p.name.endswith(".pt.corrupt"):
            out[p.name] = "set aside as damaged or refused by an earlier resume"
    return out


def _report_nothing_usable(medic: Driver, directory: Path, problems: list[tuple[str, str, dict[str, Any]]]) -> None:
    files = unusable_files(directory, problems)
    if not files:
        return  # an empty directory: a first run, nothing lost
    medic.report(NO_USABLE_CHECKPOINT.code,
                 f"none of the {len(files)} checkpoint file(s) in {directory} could be used: the run starts fresh "
                 f"from step 0",
                 evidence={"directory": str(directory), "files": files},
                 action="no usable checkpoint: starting fresh", key=f"{NO_USABLE_CHECKPOINT.code}:{directory}")


def iter_checkpoint_files(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Every checkpoint-like file in the directory, set-aside ones included (for tools and tests)."""
    d = Path(directory)
    if d.is_dir():
        yield from sorted(p for p in d.iterdir() if p.name.startswith("ckpt-"))
