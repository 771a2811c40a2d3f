"""Which dataset rows is the step's batch made of? ``trainmedic run`` reads it off the script's DataLoaders.

When a DataLoader over a map-style dataset draws a batch, its batch sampler yields the list of dataset
indices and the loader fetches and collates those rows. ``trainmedic run`` records that list, so that
TM313 (and heal's quarantine) name the dirty rows by their index in the dataset, and follow them into
later epochs whatever the shuffling, instead of by a hash of their content:

* the batch sampler's class gets a wrapped ``__iter__`` (:mod:`~trainmedic.instrument.patches`; removed
  with every other wrapper) that appends each index list it yields to a queue of that loader;
* the loader's iterator class gets a wrapped ``__next__`` that takes the oldest list off the queue with
  each batch it returns. The two stay paired also with worker processes: the iterator asks the sampler
  for index lists ahead of time (prefetching) but returns the batches in that same order
  (``in_order=True``, the default; with ``in_order=False`` nothing is recorded);
* :meth:`BatchIndices.lookup` gives the indices of the latest batch when the input the model was called
  with (or the target the loss was given) is one of that batch's tensors, or the same shape moved to
  another device (``x.to("cuda")``). A batch transformed or sliced before the model sees it is not
  recognised: its rows are named by content hash, and the finding says so.

IterableDatasets and loaders without a batch sampler (``batch_size=None``) have no indices to record.
Nothing the script sees changes: the loader, its sampler and its iterator are the script's own objects.
"""

from __future__ import annotations

import operator
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

MARK = "trainmedic_records_indices"  # set on our wrappers: a subclass that inherits one is not wrapped twice


class BatchIndices:
    """The index lists of the batches the script's DataLoaders yield; see the module docstring.

    ``wrap`` is :meth:`Patches.wrap` of the session, so the wrappers go with the session's others.
    """

    def __init__(self, wrap: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
        self.wrap = wrap
        self.queues: dict[int, deque[list[int]]] = {}  # id(batch sampler) -> index lists not yet returned
        self.of_iterator: weakref.WeakKeyDictionary[Any, deque[list[int]]] = weakref.WeakKeyDictionary()
        self.last: tuple[list[torch.Tensor], torch.Tensor] | None = None  # latest batch: its tensors, indices
        self.batches = 0  # batches returned with their indices

    def before_iter(self, loader: Any) -> None:
        """``iter(loader)`` is about to run: give its batch sampler an empty queue (and a wrapper)."""
        bs = getattr(loader, "batch_sampler", None)
        if bs is None or isinstance(getattr(loader, "dataset", None), torch.utils.data.IterableDataset) \
                or not getattr(loader, "in_order", True):
            return
        self._wrap_iter(type(bs))
        self.queues[id(bs)] = deque()

    def after_iter(self, loader: Any, iterator: Any) -> None:
        """``iter(loader)`` returned ``iterator``: its batches take their indices from the loader's queue."""
        queue = self.queues.get(id(getattr(loader, "batch_sampler", None)))
        if queue is None:
            return
        try:
            self.of_iterator[iterator] = queue
        except TypeError:  # an iterator that takes no weak reference: not followed
            return
        cls = type(iterator)
        if not getattr(getattr(cls, "__next__", None), MARK, False):
            self.wrap(cls, "__next__", self._next_wrapper)
            setattr(cls.__next__, MARK, True)

    def _wrap_iter(self, cls: type) -> None:
        if getattr(getattr(cls, "__iter__", None), MARK, False):
            return
        queues = self.queues

        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def __iter__(sampler: Any) -> Any:
                for batch in original(sampler):
                    queue = queues.get(id(sampler))
                    if queue is not None and isinstance(batch, (list, tuple)) and len(queue) < 10_000:
                        queue.append(list(batch))
                    yield batch

            return __iter__

        self.wrap(cls, "__iter__", make)
        setattr(cls.__iter__, MARK, True)

    def _next_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def __next__(iterator: Any) -> Any:
            batch = original(iterator)
            queue = self.of_iterator.get(iterator)
            if queue:
                self.saw(batch, queue.popleft())
            return batch

        return __next__

    def saw(self, batch: Any, indices: list[int]) -> None:
        """A batch of these dataset rows was returned to the script."""
        n = len(indices)
        try:
            rows = [operator.index(i) for i in indices]  # ints, numpy ints, 0-d integer tensors
        except TypeError:
            rows = []
        if not rows:
            self.last = None
            return
        tensors = [t for t in _tensors(batch) if t.dim() > 0 and t.shape[0] == n]
        self.last = (tensors, torch.tensor(rows)) if tensors else None
        self.batches += 1

    def lookup(self, *captured: Any) -> torch.Tensor | None:
        """The dataset indices of the latest batch, if one of ``captured`` (the model's input, the loss's
        target) is one of its tensors, or such a tensor moved to another device; else None."""
        if self.last is None:
            return None
        tensors, indices = self.last
        mine = [t for c in captured for t in _tensors(c)]
        if any(c is t for c in mine for t in tensors):
            return indices
        if any(c.device != t.device and c.shape == t.shape and c.dtype == t.dtype for c in mine for t in tensors):
            return indices
        return None


def _tensors(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 2:
        return []
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in _tensors(v, depth + 1)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v, depth + 1)]
    return []
