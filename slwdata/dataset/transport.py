"""Transport: how batches travel from DataLoader workers to the main process.

The wire types (:class:`BatchAddress`, and the compact pickled form of a
:class:`~slwdata.dataset.plan.BatchPlan`, registered here so the planner stays pure numpy), the
loaders that turn what workers send into batches in the main process, and
:func:`make_dataloader`, which picks the transfer mode (``TRANSFER_MODES``).
"""

from __future__ import annotations

import copyreg
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

import numpy as np
import torch
from streaming import StreamingDataLoader

from slwdata.dataset.ledger import SEGMENT_DTYPE
from slwdata.dataset.plan import BatchPlan

if TYPE_CHECKING:
    from slwdata.dataset.dataset import SLWDataset

__all__ = [
    'TRANSFER_MODES',
    'BatchAddress',
    'SLWDataLoader',
    'SLWStreamingDataLoader',
    'make_dataloader',
    'reduce_plan',
]

TRANSFER_MODES = ('addresses', 'compact', 'full')

_I32_MAX = int(np.iinfo(np.int32).max)


def _narrow(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """For the wire: row ids as int32, segments as an int32 ``[n, 3]`` array, when every row
    id fits (else unchanged)."""
    if a is None or len(a) == 0:
        return a
    rows = a['row'] if a.dtype.names else a
    if int(rows.max()) > _I32_MAX:
        return a
    if not a.dtype.names:
        return a.astype(np.int32)
    out = np.empty((len(a), 3), np.int32)
    out[:, 0], out[:, 1], out[:, 2] = rows, a['start'], a['length']
    return out


def _rebuild_plan(
    step: int,
    index: int,
    kind: str,
    seq_len: int,
    row_len: int,
    rows_per_batch: int,
    fresh_index: Optional[int],
    rows: Optional[np.ndarray],
    taken: Optional[np.ndarray],
    gather: Any = None,
) -> BatchPlan:
    """A plan from its wire form (:func:`reduce_plan`)."""
    if rows is not None:
        rows = rows.astype(np.int64, copy=False)
    if taken is not None and not taken.dtype.names:
        seg = np.empty(len(taken), SEGMENT_DTYPE)
        seg['row'], seg['start'], seg['length'] = taken[:, 0], taken[:, 1], taken[:, 2]
        taken = seg
    return BatchPlan(
        step,
        index,
        kind,
        seq_len,
        row_len,
        rows_per_batch,
        fresh_index=fresh_index,
        rows=rows,
        taken=taken,
        gather=gather,
    )


def reduce_plan(plan: BatchPlan) -> tuple:
    """``BatchPlan``'s pickled form (registered with :mod:`copyreg`).

    Plans travel from DataLoader workers to the main process (``transfer='addresses'``). Row
    ids go as int32 where they fit and the row cut is recomputed on arrival: a worker's items
    in flight must fit the pipe to the main process (64 KiB on Linux), or the main process
    waits for the worker's feeder thread at every DataLoader item it receives. A plan with its
    reads worked out (``gather``) goes without ``rows`` / ``taken``: the receiver only reads
    it."""
    return (
        _rebuild_plan,
        (
            plan.step,
            plan.index,
            plan.kind,
            plan.seq_len,
            plan.row_len,
            plan.rows_per_batch,
            plan.fresh_index,
            _narrow(plan.rows) if plan.gather is None else None,
            _narrow(plan.taken) if plan.gather is None else None,
            plan.gather,
        ),
    )


copyreg.pickle(BatchPlan, reduce_plan)


@dataclass
class BatchAddress:
    """What a DataLoader worker yields in ``transfer='addresses'`` mode: the plans of a block
    of consecutive batches (row ids or tail segments, a few KB each, pickled inline), not their
    tokens; the loader gathers the rows in the main process. One DataLoader item per block,
    because the DataLoader's per-item cost (queues, pickling, a feeder thread) is about as much
    as gathering a batch. ``len()`` is the block's row count."""

    plans: list[BatchPlan]

    def __len__(self) -> int:
        return sum(p.rows_per_batch for p in self.plans)


class _MainSideLoader:
    """Mixin: turns what workers send into batches in the main process.

    ``BatchAddress`` -> its batches, gathered from the local shards
    (``SLWDataset.materialize_in_main``); compact token dtypes -> widened to the dataset's
    ``output_dtype``. Subclasses iterate :meth:`_batches`."""

    def _batches(self) -> Iterator[Any]:
        target = getattr(self.dataset, 'output_dtype', None)
        pin = self.pin_memory and torch.cuda.is_available()
        for item in torch.utils.data.DataLoader.__iter__(self):
            if isinstance(item, BatchAddress):
                batches = self.dataset.materialize_in_main(item)
                if pin:
                    batches = ({k: v.pin_memory() for k, v in b.items()} for b in batches)
                # `yield from`, not a loop variable: once the caller drops a batch, the next
                # one reuses its memory (already faulted in) instead of fresh pages.
                yield from batches
                continue
            if target is not None and isinstance(item, dict):
                # numpy, not Tensor.to: torch's uint16 casts are not vectorized.
                item = {
                    k: torch.from_numpy(v.numpy().astype(target))
                    if isinstance(v, torch.Tensor) and v.numpy().dtype != target
                    else v
                    for k, v in item.items()
                }
            yield item


class SLWDataLoader(_MainSideLoader, torch.utils.data.DataLoader):
    """DataLoader for SLWDataset (see :func:`make_dataloader`)."""

    def __iter__(self) -> Iterator[Any]:
        return self._batches()


class SLWStreamingDataLoader(_MainSideLoader, StreamingDataLoader):
    """StreamingDataLoader for SLWDataset (see :func:`make_dataloader`).

    Counts samples as batches are handed to the caller (a worker's item may hold several
    batches), so ``state_dict()`` is exact between any two batches."""

    def __iter__(self) -> Iterator[Any]:
        self.num_samples_yielded = 0
        for batch in self._batches():
            self.num_samples_yielded += self._get_batch_size(batch)
            yield batch


def make_dataloader(
    dataset: 'SLWDataset',
    num_workers: int = 0,
    streaming_loader: bool = True,
    transfer: str = 'addresses',
    addresses_per_item: int = 8,
    **kwargs: Any,
) -> torch.utils.data.DataLoader:
    """A DataLoader that passes SLWDataset's whole batches through (``batch_size=None``).

    ``streaming_loader=True`` returns a ``StreamingDataLoader`` (tracks samples for
    ``state_dict()`` / ``load_state_dict()`` resumption).

    ``transfer`` says how batches leave the workers (``num_workers > 0``):

    - ``"addresses"`` (default): workers plan each batch and make its shards local (download,
      decompress, cache eviction), then send the plan; the main process gathers the rows from
      its own memory maps of the same local files. Shipping a token tensor costs a fresh
      shared-memory segment per batch, written and then page-faulted in by the main process,
      which is several times the cost of the gather itself (see ``benchmarks/bench_dataset.py``).
      Shards without a fixed row layout fall back to ``"compact"``. Each DataLoader item holds
      the plans of ``addresses_per_item`` consecutive batches (a worker prepares their shards
      first, so with remote shards the first batch waits for that many batches' downloads).
    - ``"compact"``: workers gather rows in the shards' dtype (uint16: 4x less shared memory
      than int64); the main process widens them to ``output_dtype``.
    - ``"full"``: workers ship ``output_dtype`` batches (what a plain DataLoader does).

    A ``cache_limit`` too small for the shards of the batches in flight is refused here, with
    the minimum that works (:mod:`slwdata.dataset.cache`).

    Other keyword arguments go to the DataLoader. With ``transfer="addresses"`` the workers
    also work out each batch's reads, so the main process only gathers, into one scratch
    buffer of shared memory that forking does not turn copy-on-write. Workers may be started
    with ``multiprocessing_context='forkserver'`` (the batches are the same); they then take
    longer to start (each imports torch), the script needs an ``if __name__ == '__main__':``
    guard, and it gathers no faster (``benchmarks/bench_dataset.py``).

    Example::

        loader = make_dataloader(ds, num_workers=2)
        for batch in loader:
            ...
    """
    if 'batch_size' in kwargs and kwargs['batch_size'] is not None:
        raise ValueError('SLWDataset yields whole batches: leave batch_size unset (None).')
    if transfer not in TRANSFER_MODES:
        raise ValueError(f'transfer={transfer!r}; choose one of {", ".join(TRANSFER_MODES)}.')
    kwargs['batch_size'] = None
    if num_workers > 0:
        kwargs.setdefault('prefetch_factor', 2)
        kwargs.setdefault('persistent_workers', False)
    if not isinstance(addresses_per_item, int) or addresses_per_item < 1:
        raise ValueError(f'addresses_per_item must be a positive int, got {addresses_per_item!r}.')
    # An SLWDataset; a plain StreamingDataset passes through with a plain loader's transfer.
    configure = getattr(dataset, 'configure_transfer', None)
    if configure is not None:
        configure(
            transfer if num_workers > 0 else 'full', addresses_per_item, num_workers, kwargs.get('prefetch_factor')
        )
    cls = SLWStreamingDataLoader if streaming_loader else SLWDataLoader
    return cls(dataset, num_workers=num_workers, **kwargs)
