"""``SLWDataset``: what a rank sees, a StreamingDataset that yields whole batches and re-serves
truncated tails.

The class wires the parts together: the epochs it plans (:mod:`~slwdata.dataset.epochs`), the
rows it reads (:mod:`~slwdata.dataset.reader`) through streaming's cache
(:mod:`~slwdata.dataset.streaming_compat`), its checkpoint state, and what its DataLoader
workers send (:mod:`~slwdata.dataset.transport`). See ``docs/DESIGN.md`` for the contract with
the pacing module and the Composer algorithm.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from numpy.typing import NDArray
from streaming import StreamingDataset

from slwdata.dataset import streaming_compat as compat
from slwdata.dataset.accounting import EpochAccount
from slwdata.dataset.cache import check_cache_limit
from slwdata.dataset.epochs import RankEpochs
from slwdata.dataset.integrity import ShardVerifier
from slwdata.dataset.plan import REUSE_POLICIES, BatchPlan, EpochPlanner
from slwdata.dataset.reader import ShardFormatError, ShardTokenReader
from slwdata.dataset.remote import DEFAULT_REMOTE_TIMEOUT, bound_streams, bounded_s3_downloads
from slwdata.dataset.shm import clean_dead_owners, register_owner, release_owner
from slwdata.dataset.transport import BatchAddress
from slwdata.shards import META_NAME, read_meta_file

__all__ = ['SLWDataset', 'REUSE_POLICIES', 'ResumeMismatchError']

logger = logging.getLogger(__name__)

STATE_VERSION = 1
META_BASENAME = META_NAME


def _is_not_found(err: BaseException) -> bool:
    """Whether a download failed because the object does not exist (not because it is unreadable)."""
    if isinstance(err, FileNotFoundError):
        return True
    response = getattr(err, 'response', None)  # botocore's ClientError
    code = str((response or {}).get('Error', {}).get('Code', '')) if isinstance(response, dict) else ''
    return code in ('404', 'NoSuchKey', 'NotFound')


class ResumeMismatchError(RuntimeError):
    """A checkpoint was written under a different world size / batch size / pacing."""


_TORCH_DTYPES = {
    'int64': torch.int64,
    'int32': torch.int32,
    'int16': torch.int16,
    'uint8': torch.uint8,
    'uint16': torch.uint16,
    'uint32': torch.uint32,
    'float32': torch.float32,
}


class SLWDataset(StreamingDataset):
    """Streaming token dataset for Sequence Length Warmup that yields whole batches.

    Keeps StreamingDataset's shuffling, partitioning over nodes/ranks/workers, remote download,
    cache eviction and resumption, but reads a batch at a time: the sample ids of a batch come
    from streaming's partition for this rank, the shards are prepared through streaming's own
    cache bookkeeping, and rows are gathered with one fancy index per memory-mapped shard.

    Shards: a ``tokens`` column encoded ``ndarray:<dtype>:<L>`` (written by ``slwdata convert``
    or llm-foundry) uses the fast path. Variable-size token columns (``ndarray`` without a
    shape, or ``bytes`` holding ``bytes_dtype`` values) fall back to streaming's per-sample
    ``get_item``: correct, but about as slow as plain StreamingDataset, and every row must have
    the same length.

    Each iteration step yields one batch dict:

    - ``input_ids``: ``[rows, L]`` full-length rows (``int64``, or ``output_dtype``);
    - ``labels``: a copy of ``input_ids`` if ``labels=True``;
    - only while a pacing schedule is bound (:meth:`bind_pacing`, which the Composer algorithm
      and ``PlainSLW(dataset=...)`` call; both remove these keys before the model sees the
      batch): ``slw_seq_len``, ``[rows]`` int tensor (dtype of ``input_ids``), the length the
      dataset planned for this step, and ``slw_tail_rows``, ``[rows]`` int tensor, how many
      rows of the batch are re-served tail rows (the same count repeated per row, so
      Composer's batch-size inference works). Without pacing a batch is plain ``input_ids``
      (and ``labels``), so ``model(**batch)`` works for a baseline.

    All of them are views of one buffer, so a DataLoader worker ships one shared-memory
    segment per batch.

    Use it with ``DataLoader(ds, batch_size=None)`` (or :func:`make_dataloader`);
    ``DataLoader(ds, batch_size=N)`` (streaming's idiom for a sample-wise dataset) would stack
    N batches, and is refused. ``len(ds)`` is the number of *batches* this rank yields in the
    current epoch, which is the DataLoader's length with ``batch_size=None`` and the epoch
    length Composer needs; with pacing bound it includes the tail batches. Without a bound
    pacing schedule every row is fresh. With
    :meth:`bind_pacing` the dataset predicts, per rank, which tail each step's truncation drops
    and re-serves it according to ``reuse`` (``"off"``: drop and count, ``"deferred"``: after
    warmup, ``"interleave"``: mixed into batches as soon as a full row is available).

    Notes:
        - streaming pads partitions so every rank gets the same number of samples (it repeats
          a few samples) and pads the last batch of a rank with ``-1``: a rank's final partial
          batch (fewer than ``batch_size`` real rows) is not yielded as a short batch; its rows
          join the carried tail ledger as whole rows and are served as tail rows in a later
          epoch (without pacing or with ``reuse="off"``: dropped and counted in the account). Choose ``epoch_size`` divisible by ``batch_size * world_size``
          to avoid both effects.
        - Resuming with a different world size or batch size stops with
          :class:`ResumeMismatchError`: the ledger of tails is per rank.
        - Call :meth:`bind_pacing` before the DataLoader's iterator is created (Composer does,
          at ``Event.FIT_START``); persistent workers keep the pacing they were started with.

    Args:
        batch_size: rows per batch per rank (required).
        reuse: tail policy, one of ``"off"``, ``"deferred"``, ``"interleave"``.
        column: the token column name.
        output_dtype: dtype of ``input_ids`` (``"int64"``; ``None`` keeps the shard dtype).
        labels: also emit ``labels`` (same tensor values as ``input_ids``).
        bytes_dtype: dtype of tokens stored as ``bytes`` (fallback path).
        prefetch_batches: batches ahead whose shards a background thread prepares.
        clean_stale_shm: first remove the shared memory of SLWDataset runs on this machine
            whose process died (SIGKILL), see :mod:`slwdata.dataset.shm`; live runs and other
            StreamingDataset users are left alone.
        verify_hashes: check every shard against the hash ``index.json`` records, once per job
            when a process first maps it (:mod:`slwdata.dataset.integrity`); a mismatch stops
            iteration with :class:`~slwdata.dataset.integrity.ShardHashError`. ``False`` only
            for shards verified elsewhere. Independent of streaming's ``validate_hash``, which
            checks a file only as it is downloaded or decompressed.
        remote_timeout: seconds an S3 object (a shard, ``index.json``) may take to download,
            all retries together; a stalled endpoint then stops iteration with an error naming
            the object, and each retry logs a warning (:mod:`slwdata.dataset.remote`). It
            replaces streaming's ``download_timeout`` / ``download_retry`` for S3 remotes.
        **kwargs: passed to :class:`streaming.StreamingDataset` (``remote``, ``local``,
            ``shuffle``, ``cache_limit``, ...).

    Example::

        ds = SLWDataset(local='shards/', batch_size=8, shuffle=True)
        loader = make_dataloader(ds, num_workers=2)
        batch = next(iter(loader))
        batch['input_ids'].shape       # torch.Size([8, 1024])
    """

    def __init__(
        self,
        *,
        batch_size: int,
        reuse: str = 'deferred',
        column: str = 'tokens',
        output_dtype: Optional[str] = 'int64',
        labels: bool = False,
        bytes_dtype: str = 'int64',
        prefetch_batches: int = 2,
        clean_stale_shm: bool = True,
        verify_hashes: bool = True,
        remote_timeout: float = DEFAULT_REMOTE_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'SLWDataset needs batch_size= (rows per rank per step), got {batch_size!r}.')
        if reuse not in REUSE_POLICIES:
            raise ValueError(f'reuse={reuse!r}; choose one of {", ".join(REUSE_POLICIES)}.')
        if clean_stale_shm:
            clean_dead_owners()
        with bounded_s3_downloads(remote_timeout):
            super().__init__(batch_size=batch_size, **kwargs)
        bound_streams(self.streams, remote_timeout)
        self.verifier = ShardVerifier(self.shards, compat.shm_prefix(self)) if verify_hashes else None
        if compat.is_local_leader(self):
            register_owner(compat.shm_prefix(self))
        self.reuse = reuse
        self.column = column
        self.output_dtype = None if output_dtype is None else np.dtype(output_dtype)
        self.emit_labels = labels
        self.prefetch_batches = max(0, int(prefetch_batches))
        # How batches leave DataLoader workers; set by configure_transfer (see TRANSFER_MODES).
        self.transfer = 'full'
        self.addresses_per_item = 8
        self.meta = self._load_meta()
        self.reader = ShardTokenReader(
            self.shards,
            self.sample_offset_per_shard,
            column=column,
            ensure=self._ensure_shard,
            touch=functools.partial(compat.touch_shards, self),
            fallback_get=self.get_item,
            bytes_dtype=bytes_dtype,
            verify=self.verifier.verify if self.verifier else None,
        )
        self.seq_len = self._resolve_seq_len()
        self.eos_id = self.meta.get('eos_id') if self.meta else None
        # Pacing (bound later by the algorithm or the user) and the epochs planned with it.
        self.epochs = RankEpochs(self.rank_batches, batch_size, self.seq_len, reuse, self._rank)
        self._resume_slw: Optional[dict[str, Any]] = None
        self.last_account: Optional[EpochAccount] = None
        self.accounts: dict[int, dict[str, Any]] = {}
        # Every shard local and no cache_limit to evict one: a batch needs no readiness check.
        self._all_local = False

    # ------------------------------------------------------------------ metadata
    def _load_meta(self) -> dict[str, Any]:
        """``slwdata.json`` of the first stream that has one (fetched from remote if needed)."""
        metas = []
        for stream in self.streams:
            path = os.path.join(stream.local, stream.split or '', META_BASENAME)
            if not os.path.isfile(path) and stream.remote and compat.is_local_leader(self):
                try:
                    compat.download_stream_file(stream, META_BASENAME)
                except Exception as err:  # noqa: BLE001 - sorted below: absent, or a real failure
                    # Plain MDS shards have no metadata file; only "not found" may mean that. Any other
                    # failure (403, 500, a timeout) must not silently drop the shards' own settings.
                    if not _is_not_found(err):
                        where = os.path.join(stream.remote, stream.split or '', META_BASENAME)
                        raise ShardFormatError(
                            f'{where}: cannot be read ({type(err).__name__}: {err}); '
                            'it was not taken as absent. Fix the access or the store '
                            'and retry.'
                        ) from err
            if os.path.isfile(path):
                try:
                    metas.append((path, read_meta_file(path)))
                except (OSError, json.JSONDecodeError) as err:
                    raise ShardFormatError(f'{path}: unreadable slwdata metadata ({err}).') from err
        if not metas:
            return {}
        path, meta = metas[0]
        for other_path, other in metas[1:]:
            for key in ('seq_len', 'dtype', 'column'):
                if other.get(key) != meta.get(key):
                    raise ShardFormatError(
                        f'{other_path}: {key}={other.get(key)!r} differs from '
                        f'{path}: {key}={meta.get(key)!r}; streams must agree.'
                    )
        return meta

    def _resolve_seq_len(self) -> int:
        meta_len = self.meta.get('seq_len') if self.meta else None
        if self.reader.seq_len is not None:
            if meta_len is not None and int(meta_len) != self.reader.seq_len:
                raise ShardFormatError(
                    f'{META_BASENAME} says seq_len={meta_len} but the shards hold rows of {self.reader.seq_len} tokens.'
                )
            return self.reader.seq_len
        if meta_len is not None:
            self.reader.seq_len = int(meta_len)
            return int(meta_len)
        # Variable-size column without metadata: learn the length from the first row.
        first = self.reader.read_rows(np.array([0]))
        return int(first.shape[1])

    # ------------------------------------------------------------------ shard cache glue
    def _ensure_shard(self, shard_id: int) -> None:
        """Make the raw shard file local through streaming's locked cache bookkeeping."""
        shard = self.shards[shard_id]
        name = os.path.join(shard.dirname, shard.split or '', shard.raw_data.basename)
        for _ in range(8):
            try:
                self.prepare_shard(shard_id, blocking=True)
            except Exception as err:
                compat.release_failed_shard(self, shard_id)
                remote = self.streams[self.stream_per_shard[shard_id]].remote
                raise RuntimeError(
                    f'Could not prepare shard {name}{f" from {remote}" if remote else ""}: {err}'
                ) from err
            if os.path.isfile(name):
                return
        raise RuntimeError(
            f'Shard {name} keeps disappearing after download; the cache_limit '
            f'is probably too small for the shards in use.'
        )

    def _evict_shard(self, shard_id: int) -> None:
        """streaming's eviction, and the shard's hash record: its next copy is checked again
        where it is made local (a worker), not later in the main process."""
        super()._evict_shard(shard_id)
        verifier = getattr(self, 'verifier', None)  # None while streaming's __init__ runs
        if verifier is not None:
            verifier.forget(shard_id)

    # ------------------------------------------------------------------ pacing
    def bind_pacing(self, schedule: Any, rows_per_step: int, run_total: Any = None) -> None:
        """Predict truncation with ``schedule`` (a :class:`slwdata.pacing.PacingSchedule`).

        ``rows_per_step`` is the *global* row count per optimizer step (``batch_size *
        world size`` unless gradient accumulation changes it); ``run_total`` resolves a
        duration given as a fraction of the run (``"1000ba"``, ``"5000000tok"``).

        Example::

            ds.bind_pacing(PacingSchedule(start=8, duration='200ba'), rows_per_step=16)
        """
        if schedule is not None and getattr(schedule, 'end', None) is None:
            schedule = schedule.with_end(self.seq_len)
        if schedule is not None and schedule.end != self.seq_len:
            raise ValueError(f'Pacing ends at {schedule.end} tokens but the shards hold rows of {self.seq_len} tokens.')
        if schedule is not None and (not isinstance(rows_per_step, int) or rows_per_step < 1):
            raise ValueError(f'rows_per_step must be a positive int, got {rows_per_step!r}.')
        self.epochs.bind(schedule, rows_per_step, run_total)

    @property
    def pacing(self) -> Any:
        """The bound :class:`slwdata.pacing.PacingSchedule` (``None``: no pacing)."""
        return self.epochs.pacing

    @property
    def rows_per_step(self) -> Optional[int]:
        """Global rows per optimizer step the pacing was bound with."""
        return self.epochs.rows_per_step

    @property
    def run_total(self) -> Any:
        """The run length the pacing resolves fractions of the run against."""
        return self.epochs.run_total

    def pacing_config(self) -> Optional[dict[str, Any]]:
        """The bound pacing as plain data (part of the checkpoint)."""
        if self.pacing is None:
            return None
        return {
            'schedule': self.pacing.to_config(allow_callable=True)
            if self.pacing.kind != 'callable' or isinstance(self.pacing.fn_spec, str)
            else repr(self.pacing),
            'rows_per_step': self.rows_per_step,
            'run_total': None if self.run_total is None else str(self.run_total),
        }

    def seq_len_at(self, global_step: int) -> int:
        """The planned length of a global step (``L`` without pacing)."""
        return self.epochs.seq_len_at(global_step)

    # ------------------------------------------------------------------ partition
    def rank_batches(self, epoch: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """This rank's full fresh batches of ``epoch`` in delivery order, ``[n, batch_size]``,
        and the real ids of its final partial batch (usually empty)."""
        compat.ensure_resume_params(self)
        # One worker per rank: a rank's batch order does not depend on the number of
        # DataLoader workers (streaming only pads the tail of a rank).
        ids = compat.rank_sample_ids(self, compat.one_worker_per_rank(self), epoch)
        ids = ids[ids != -1]
        full = len(ids) // self.batch_size * self.batch_size
        return ids[:full].reshape(-1, self.batch_size), ids[full:]

    def _rank(self) -> int:
        return compat.rank_world(self).rank

    # ------------------------------------------------------------------ planning
    @property
    def policy(self) -> str:
        """The effective tail policy: ``off`` while no pacing is bound (nothing is truncated)."""
        return self.epochs.policy

    def epoch_account(self, epoch: int = 0) -> EpochAccount:
        """Plan ``epoch`` for this rank without reading any token and return its account.

        Works in the main process too (DataLoader workers keep their own copies).

        Example::

            ds.bind_pacing(schedule, rows_per_step=8)
            ds.epoch_account(0).tokens_carried_out
        """
        return self.epochs.account(epoch)

    def num_batches(self, epoch: int = 0) -> int:
        """Batches this rank yields in ``epoch`` (fresh plus tail batches)."""
        return self.epochs.num_batches(epoch)

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (the DataLoader length with
        ``batch_size=None``). With pacing bound it includes the tail batches, so it changes
        after :meth:`bind_pacing`."""
        try:
            return self.num_batches(max(0, self.next_epoch - 1))
        except Exception:  # noqa: BLE001 - len() must not fail before iteration is possible.
            return math.ceil(self.length / self.batch_size)

    # ------------------------------------------------------------------ checkpointing
    def _resume(self, world: compat.World, epoch: int) -> tuple[int, int]:
        obj = compat.read_resume_state(compat.shm_prefix(self))
        out = super()._resume(world, epoch)
        self._resume_slw = obj.get('slw') if obj and obj.get('epoch', -1) >= epoch else None
        return out

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """Streaming's resume state plus the SLW keys (``slw``): steps done in the epoch, the
        world and batch shape, the reuse policy and the bound pacing.

        The per-rank tail ledger is not stored: it is a deterministic function of (epoch, steps,
        pacing, world) and every rank rebuilds its own by replaying the plan, so a checkpoint
        written by rank 0 alone (Composer, StreamingDataLoader) resumes every rank exactly, and
        stays a few hundred bytes (streaming keeps it in one 4 KiB shared-memory page). The
        global step and ledger size at the epoch's start are stored to check the replay.
        """
        obj = super().state_dict(num_samples, from_beginning)
        world = compat.rank_world(self)
        rows_per_global_step = self.batch_size * world.num_ranks
        step0, carried = self.epochs.start(max(0, obj['epoch']))
        obj['slw'] = {
            'epoch_first_step': step0,
            'epoch_carried_tokens': 0 if carried is None else carried.tokens,
            'version': STATE_VERSION,
            'steps_in_epoch': math.ceil(obj['sample_in_epoch'] / rows_per_global_step),
            'num_ranks': world.num_ranks,
            'batch_size': self.batch_size,
            'reuse': self.reuse,
            'seq_len': self.seq_len,
            'pacing': self.pacing_config(),
        }
        return obj

    def _check_resume(self, slw: dict[str, Any]) -> None:
        world = compat.rank_world(self)
        problems = []
        if slw.get('version') != STATE_VERSION:
            problems.append(f'state version {slw.get("version")} (expected {STATE_VERSION})')
        for key, mine in (
            ('num_ranks', world.num_ranks),
            ('batch_size', self.batch_size),
            ('reuse', self.reuse),
            ('seq_len', self.seq_len),
            ('pacing', self.pacing_config()),
        ):
            if slw.get(key) != mine:
                problems.append(f'{key}: checkpoint {slw.get(key)!r}, now {mine!r}')
        if problems:
            raise ResumeMismatchError(
                'Cannot resume SLWDataset: ' + '; '.join(problems) + '. The tail ledger and the '
                'pacing plan are per rank and per step, so a resumed run must keep the world '
                'size, batch size, reuse policy and pacing of the checkpoint.'
            )

    # ------------------------------------------------------------------ iteration
    def close(self) -> None:
        """Release this dataset's shared memory now, not at process exit.

        streaming keeps every dataset's shared-memory segments (barrier, shard states, cache
        usage, ...) open until the process exits, through its ``atexit`` handlers: about 12
        file descriptors and a few ``/dev/shm`` segments per dataset, even after the dataset is
        garbage-collected. A process that builds many datasets (a sweep, a notebook, a
        benchmark) runs out of file descriptors. Call ``close()`` once every rank and worker is
        done with the dataset; it cannot be iterated afterwards. Close each dataset before
        building the next where you can: streaming's prefix search in a new dataset opens the
        segments of every dataset still open and keeps them until exit (6 fds each), which
        ``close()`` cannot reach.

        Example::

            ds = SLWDataset(local='shards/train', batch_size=8)
            for batch in make_dataloader(ds):
                ...
            ds.close()
        """
        self.reader.close()
        compat.release_shared_memory(self)
        if compat.is_local_leader(self):
            release_owner(compat.shm_prefix(self))
        self._closed = True

    def _materialize(self, plan: BatchPlan) -> dict[str, Any]:
        """Gather the batch into one buffer holding ``input_ids`` (``labels``) and the ``slw_*``
        rows: a DataLoader worker then ships one shared-memory segment per batch, not four
        (each extra tensor costs a segment and a file descriptor, which halves throughput).

        A worker that ships tokens (``transfer`` other than ``'full'``; ``'addresses'`` only
        ships them for shards without a fixed layout) ships the shards' dtype, widened by the
        loader in the main process."""
        B, L = plan.rows_per_batch, self.seq_len
        dtype = self.output_dtype if self.output_dtype is not None else self.reader.dtype
        if self.transfer != 'full' and self.reader.dtype is not None and torch.utils.data.get_worker_info() is not None:
            dtype = self.reader.dtype
        if dtype is None:
            dtype = np.dtype(np.int64)
        n_tok = B * L * (2 if self.emit_labels else 1)
        # The slw_* keys only when pacing is bound: then a consumer that removes them (the
        # Composer algorithm, PlainSLW) is cutting; a plain batch works with model(**batch).
        with_meta = self.pacing is not None
        meta_fits = with_meta and np.issubdtype(dtype, np.integer) and max(L, B) <= np.iinfo(dtype).max
        if dtype.name not in _TORCH_DTYPES:
            dtype = np.dtype(np.int64)
        # numpy's allocator, not torch.empty: a fresh multi-MB torch CPU buffer is page-faulted
        # in on every batch, while numpy's reuses hot (huge) pages.
        arr = np.empty(n_tok + (2 * B if meta_fits else 0), dtype)
        buf = torch.from_numpy(arr)
        ids = arr[: B * L].reshape(B, L)
        if plan.kind == 'fresh':
            if plan.gather is not None:
                self.reader.read_row_gather(plan.gather, out=ids)
            else:
                self.reader.read_rows(plan.rows, out=ids)
        elif plan.gather is not None:
            self.reader.read_gather(plan.gather, out=arr[: B * L])
        else:
            seg = plan.taken
            self.reader.read_segments(seg['row'], seg['start'], seg['length'], check=False, out=arr[: B * L])
        batch: dict[str, Any] = {'input_ids': buf[: B * L].view(B, L)}
        if self.emit_labels:
            arr[B * L : 2 * B * L] = arr[: B * L]
            batch['labels'] = buf[B * L : 2 * B * L].view(B, L)
        if meta_fits:
            arr[n_tok : n_tok + B] = plan.seq_len
            arr[n_tok + B :] = plan.tail_rows
            batch['slw_seq_len'] = buf[n_tok : n_tok + B]
            batch['slw_tail_rows'] = buf[n_tok + B :]
        elif with_meta:
            batch['slw_seq_len'] = torch.full((B,), plan.seq_len, dtype=torch.int64)
            batch['slw_tail_rows'] = torch.full((B,), plan.tail_rows, dtype=torch.int64)
        return batch

    def _prepare_plan(self, plan: BatchPlan) -> None:
        """Make every shard of ``plan`` local (download / decompress through streaming)."""
        for shard_id in self._missing_shards(plan):
            self._ensure_shard(shard_id)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """This worker's batches (see :meth:`_iter_batches`); refuses a batching DataLoader."""
        # torch's fetcher for an iterable dataset calls iter() from its __init__, after it set
        # auto_collation (True when the DataLoader has a batch_size): the only place a dataset
        # can learn that each of its items would be stacked with others.
        fetcher = sys._getframe(1).f_locals.get('self')
        if getattr(fetcher, 'auto_collation', False) and getattr(fetcher, 'dataset', None) is self:
            raise TypeError(
                f'SLWDataset yields whole batches ({self.batch_size} rows per rank, set by '
                f'SLWDataset(batch_size=...)): DataLoader(ds, batch_size=N) would stack N of them '
                f'into [N, {self.batch_size}, {self.seq_len}] items. Use DataLoader(ds, batch_size=None) '
                f'or slwdata.dataset.make_dataloader(ds).'
            )
        return self._iter_batches()

    def _iter_batches(self) -> Iterator[dict[str, Any]]:
        """Yield this worker's batches of this rank's epoch plan.

        Step ``j`` of the rank goes to worker ``(j - first) // k % num_workers`` where ``first``
        is the first step of this iteration (0, or the resume point) and ``k`` the steps per
        DataLoader item (``addresses_per_item`` when sending addresses, else 1): PyTorch's
        DataLoader collects items from its workers round-robin starting with worker 0. Fewer
        than ``k / 2`` steps after the last whole block of ``k`` join that block."""
        if getattr(self, '_closed', False):
            raise RuntimeError(
                'This SLWDataset was closed (close() released its shared memory): build a new one to iterate again.'
            )
        epoch, sample_in_epoch, world = compat.start_worker_epoch(self)
        steps_done = 0
        if sample_in_epoch:
            slw = self._resume_slw
            if slw is None:
                raise ResumeMismatchError(
                    'Checkpoint has no SLWDataset state (key "slw"); it was written by another dataset class.'
                )
            self._check_resume(slw)
            steps_done = int(slw['steps_in_epoch'])
        self.reader.close()  # a forked worker must not reuse the parent's memory maps
        self._all_local = False
        step0, carried = self.epochs.start(epoch)
        if sample_in_epoch:
            # Ranks run in lockstep, so rank 0's numbers hold on every rank.
            replayed = (step0, 0 if carried is None else carried.tokens)
            stored = (slw.get('epoch_first_step'), slw.get('epoch_carried_tokens'))
            if replayed != stored:
                raise ResumeMismatchError(
                    f'Replaying the plans before epoch {epoch} gives first step {replayed[0]} and '
                    f'{replayed[1]} carried tail tokens, the checkpoint says {stored[0]} and '
                    f'{stored[1]}: the shards or the shuffle differ from the checkpointed run.'
                )
        planner, leftover = self.epochs.planner(epoch, step0, carried)
        if steps_done:
            planner.skip(steps_done)
        num_workers = world.workers_per_rank
        worker = world.worker_of_rank
        # Steps go to workers in blocks of `per_item` (one DataLoader item each), round-robin.
        addresses = self._sends_addresses()
        per_item = self.addresses_per_item if addresses else 1
        # A short last block (under half of k) joins the one before it: a DataLoader item costs
        # about as much as a batch to receive, so an epoch should not end with an item of one
        # or two batches.
        last_block = None
        if per_item > 1:
            full_blocks, rest = divmod(planner.remaining_batches(), per_item)
            if full_blocks and 0 < rest < per_item / 2:
                last_block = full_blocks - 1

        def block_at(index: int) -> int:
            k = (index - steps_done) // per_item
            return k if last_block is None else min(k, last_block)

        def block(plan: BatchPlan) -> int:
            return block_at(plan.index)

        batches = self._iter_prefetched(self._own_plans(planner, block_at, num_workers, worker))
        if addresses:
            batches = (BatchAddress(list(plans)) for _, plans in groupby(batches, key=block))
        yield from batches
        account = self.epochs.finish(epoch, planner, leftover, resumed_at_step=steps_done)
        self.last_account = account
        self.accounts[epoch] = account.as_dict()
        if worker == 0:
            logger.info(
                'SLWDataset epoch %d rank %d: %s', epoch, account.rank, json.dumps(account.as_dict(), sort_keys=True)
            )

    @staticmethod
    def _own_plans(
        planner: EpochPlanner, block_at: Callable[[int], int], num_workers: int, worker: int
    ) -> Iterator[BatchPlan]:
        """The plans of this worker's blocks. Every step is still simulated (the ledger needs
        each push and take), but another worker's steps are replayed without building their
        plans: a worker's only work in the main loop's way is planning."""
        while not planner.done:
            if block_at(planner.position) % num_workers == worker:
                plan = next(planner, None)
                if plan is not None:
                    yield plan
            else:
                planner.skip_next()

    def configure_transfer(
        self, transfer: str, addresses_per_item: int, num_workers: int, prefetch_factor: Optional[int]
    ) -> None:
        """How batches leave DataLoader workers (:func:`~slwdata.dataset.transport.make_dataloader`
        calls it); a ``cache_limit`` too small for the batches in flight is refused here."""
        self.transfer = transfer
        self.addresses_per_item = addresses_per_item
        check_cache_limit(self, num_workers, prefetch_factor, addresses_per_item)

    def _sends_addresses(self) -> bool:
        """In a DataLoader worker with ``transfer == 'addresses'`` over fixed-layout shards."""
        return self.transfer == 'addresses' and self.reader.all_fixed and torch.utils.data.get_worker_info() is not None

    def _emit_for_worker(self) -> Any:
        """``plan -> what this process yields``: the batch itself, or, when sending addresses,
        the plan (its shards made local first), which the loader in the main process gathers
        (:meth:`materialize_in_main`)."""
        return self._address if self._sends_addresses() else self._materialize

    def _address(self, plan: BatchPlan) -> BatchPlan:
        """A plan as a worker sends it: with its reads worked out
        (:meth:`ShardTokenReader.plan_rows` / :meth:`~ShardTokenReader.plan_segments`), so
        the main process, which has the model to run, only reads: sorting row ids by shard
        and a tail batch's index arithmetic (with its allocations, copy-on-write faults after
        a fork) then cost it nothing (see ``docs/DESIGN.md``, reading rows)."""
        if plan.gather is None:
            if plan.kind == 'fresh':
                plan.gather = self.reader.plan_rows(plan.rows)
            else:
                seg = plan.taken
                plan.gather = self.reader.plan_segments(seg['row'], seg['start'], seg['length'])
        self._verify_ahead(plan.gather.shards)
        return plan

    def _verify_ahead(self, shard_ids: NDArray[np.integer]) -> None:
        """Map (and so hash-check) the shards a worker addresses that no process has checked
        yet: the check belongs in the worker, not in the main process that runs the model."""
        if self.verifier is not None:
            for shard_id in self.verifier.pending(shard_ids).tolist():
                self.reader.drop(shard_id)  # a map of an evicted copy would skip the check
                self.reader._map(shard_id)

    def materialize_in_main(self, address: 'BatchAddress') -> Iterator[dict[str, Any]]:
        """Gather the batches a worker addressed, in this (main) process: rows are copied
        once, from the page cache through this process's own memory maps, straight into
        ``output_dtype``; no shared-memory segment is created or mapped per batch."""
        for plan in address.plans:
            yield self.materialize_plan_in_main(plan)

    def materialize_plan_in_main(self, plan: BatchPlan) -> dict[str, Any]:
        """One batch of a :class:`BatchAddress` (see :meth:`materialize_in_main`)."""
        try:
            return self._materialize(plan)
        finally:
            compat.drop_cache_filelock(self)  # prepare_shard made one for an evicted shard

    def _missing_shards(self, plan: BatchPlan) -> list[int]:
        """Shards of ``plan`` that are not local yet (one vectorized look at the states)."""
        if self._all_local:
            return []
        if plan.gather is not None:
            shards = plan.gather.shards.astype(np.int64)
        elif plan.kind == 'fresh':
            shards = np.unique(self.reader.shard_of(plan.rows))
        else:
            shards = np.unique(self.reader.shard_of(plan.taken['row']))
        missing = compat.missing_shards(self, shards)
        if not missing and not self.cache_limit:
            # Only cache_limit evicts (or a user calling evict_shard: checked again each epoch).
            self._all_local = compat.all_shards_local(self)
        return missing

    def _iter_prefetched(self, plans: Iterator[BatchPlan]) -> Iterator[dict[str, Any]]:
        """Materialize plans in order while a thread downloads the shards of the next ones.

        The thread is only handed plans whose shards are not local yet: a hand-off costs a
        thread switch, which on a busy machine costs more than gathering a batch."""
        emit = self._emit_for_worker()
        if self.prefetch_batches == 0:
            for plan in plans:
                self._prepare_plan(plan)
                yield emit(plan)
            return
        pool: Optional[ThreadPoolExecutor] = None
        pending: list[tuple[BatchPlan, Optional[Future]]] = []
        try:
            for plan in plans:
                fut = None
                if self._missing_shards(plan):
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix='slw-prefetch')
                    fut = pool.submit(self._prepare_plan, plan)
                pending.append((plan, fut))
                if len(pending) <= self.prefetch_batches:
                    continue
                head, fut = pending.pop(0)
                if fut is not None:
                    fut.result()
                yield emit(head)
            for head, fut in pending:
                if fut is not None:
                    fut.result()
                yield emit(head)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
