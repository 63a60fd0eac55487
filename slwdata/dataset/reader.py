"""Batch-at-a-time token reader over MDS shards.

StreamingDataset reads one sample at a time: it opens the shard file, seeks, reads and decodes
for every row, then its iterator threads hand the ids over one by one. For fixed-shape token
columns every raw sample is exactly ``seq_len * itemsize`` bytes at a computable offset, so a
whole batch can be gathered from a memory-mapped shard with one fancy index per shard.

MDS raw shard layout (``streaming.base.format.mds``)::

    u32 num_samples | u32 offsets[num_samples + 1] (absolute byte offsets) | sample bytes

A sample is the concatenation of its columns; variable-size columns are preceded by u32 sizes
(listed first). When every column has a fixed size the sample stride is constant and the
``tokens`` column sits at a constant offset inside each sample: that is the fast path.
Otherwise (``ndarray`` without a shape, ``bytes``) :class:`ShardTokenReader` falls back to
decoding each sample with streaming's own reader; it is still correct, just slower.

Example::

    reader = ShardTokenReader(dataset.shards, dataset.sample_offset_per_shard,
                              ensure=dataset._ensure_shard)
    rows = reader.read_rows(np.array([3, 17, 4]))          # [3, seq_len]
    flat = reader.read_segments(np.array([3, 17]), np.array([0, 8]), np.array([8, 16]))
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ['ColumnLayout', 'RowGather', 'SegmentGather', 'ShardTokenReader', 'parse_token_encoding', 'ShardFormatError']


class ShardFormatError(ValueError):
    """A shard does not hold what the reader expects (names the shard file)."""


# Value dtypes streaming's MDS ``ndarray`` encoding can declare.
_NDARRAY_DTYPES = {
    'uint8',
    'int8',
    'uint16',
    'int16',
    'uint32',
    'int32',
    'uint64',
    'int64',
    'float16',
    'float32',
    'float64',
}


_I32_MAX = int(np.iinfo(np.int32).max)


def parse_token_encoding(encoding: str) -> tuple[Optional[np.dtype], Optional[int]]:
    """Parse an MDS column encoding into ``(dtype, num_tokens)``; either may be ``None``.

    ``None`` dtype means the encoding does not declare one (``bytes``, ``ndarray``), ``None``
    length means variable length.

    Example::

        >>> parse_token_encoding('ndarray:uint16:1024')
        (dtype('uint16'), 1024)
        >>> parse_token_encoding('ndarray')
        (None, None)
    """
    parts = encoding.split(':')
    if parts[0] != 'ndarray':
        return None, None
    dtype = np.dtype(parts[1]) if len(parts) > 1 and parts[1] in _NDARRAY_DTYPES else None
    length = None
    if len(parts) > 2 and parts[2]:
        length = int(np.prod([int(x) for x in parts[2].split(',')]))
    return dtype, length


@dataclass(frozen=True)
class ColumnLayout:
    """Where the token column lives inside a raw MDS sample.

    ``fixed`` is True when every column of the shard has a fixed size, i.e. the fast path
    applies: a sample is ``stride`` bytes and the tokens start ``offset`` bytes into it.
    """

    column: str
    column_index: int
    dtype: Optional[np.dtype]
    seq_len: Optional[int]
    fixed: bool
    stride: int = 0
    offset: int = 0

    @classmethod
    def of_shard(cls, shard, column: str) -> 'ColumnLayout':
        """Describe ``column`` of a streaming ``MDSReader`` shard."""
        names = list(getattr(shard, 'column_names', []))
        where = _shard_name(shard)
        if column not in names:
            raise ShardFormatError(f'{where}: no column {column!r} (columns: {names}).')
        index = names.index(column)
        dtype, length = parse_token_encoding(shard.column_encodings[index])
        sizes = list(shard.column_sizes)
        fixed = all(s is not None for s in sizes) and dtype is not None and length is not None
        if not fixed:
            return cls(column, index, dtype, length, False)
        if sizes[index] != length * dtype.itemsize:
            raise ShardFormatError(
                f'{where}: column {column!r} is declared {shard.column_encodings[index]} but has size {sizes[index]}.'
            )
        return cls(column, index, dtype, length, True, int(sum(sizes)), int(sum(sizes[:index])))


@dataclass
class RowGather:
    """How to read a batch of whole rows, worked out by :meth:`ShardTokenReader.plan_rows`:
    the rows sorted by shard, each shard's share read with one indexed read and scattered to
    its places in the batch.

    ``groups`` is ``int32 [G, 2]``: ``(shard, count)``; ``local`` the row ids within their
    shard, shard after shard; ``order`` where each of them goes in the batch (int16 when the
    batch has under 32768 rows: it crosses the worker pipe, which must not fill)."""

    groups: NDArray[np.int32]
    local: NDArray[np.int32]
    order: NDArray[np.integer]

    @property
    def shards(self) -> NDArray[np.int32]:
        """The shards read, each once."""
        return self.groups[:, 0]

    def __reduce__(self) -> tuple:
        # One bytes object, as SegmentGather.
        blob = b''.join(a.tobytes() for a in (self.groups, self.local, self.order))
        return (_row_gather, (len(self.groups), len(self.local), self.order.itemsize, blob))


def _row_gather(n_groups: int, rows: int, order_size: int, blob: bytes) -> RowGather:
    a = np.frombuffer(blob, np.uint8)
    g, lo = 8 * n_groups, 8 * n_groups + 4 * rows
    return RowGather(
        a[:g].view(np.int32).reshape(n_groups, 2),
        a[g:lo].view(np.int32),
        a[lo:].view(np.int16 if order_size == 2 else np.int32),
    )


@dataclass
class SegmentGather:
    """How to read a list of row segments (a tail batch), worked out by
    :meth:`ShardTokenReader.plan_segments` so the reader has no index arithmetic left to do:
    each shard's rows are read with one indexed read, then every group of segments that share
    a shard, a start and a length is copied from them into place.

    ``runs`` is ``int32 [R, 4]``: ``(shard, lo, hi, n_groups)``: the shard's rows are
    ``local[lo:hi]`` (ids within the shard) and its groups the next ``n_groups`` rows of
    ``groups``, ``int32 [G, 5]``: ``(start, length, count, pos, at)``, i.e. ``count`` segments
    from rows ``at, at + 1, ...`` of the shard's read, written one after the other from
    ``out[pos]``. ``total`` is the tokens read. About 2 KB for a tail batch of 256 rows of
    1024: it crosses the DataLoader worker pipe with the plan."""

    runs: NDArray[np.int32]
    groups: NDArray[np.int32]
    local: NDArray[np.int32]
    total: int

    @property
    def shards(self) -> NDArray[np.int32]:
        """The shards read, each once."""
        return self.runs[:, 0]

    def __reduce__(self) -> tuple:
        # One bytes object: it unpickles an order of magnitude faster than numpy arrays (x 8
        # plans per DataLoader item, in the main process).
        blob = b''.join(a.astype(np.int32, copy=False).tobytes() for a in (self.runs, self.groups, self.local))
        return (_segment_gather, (len(self.runs), len(self.groups), self.total, blob))


def _segment_gather(n_runs: int, n_groups: int, total: int, blob: bytes) -> SegmentGather:
    a = np.frombuffer(blob, np.int32)
    r, g = 4 * n_runs, 4 * n_runs + 5 * n_groups
    return SegmentGather(a[:r].reshape(n_runs, 4), a[r:g].reshape(n_groups, 5), a[g:], total)


class _Scratch(threading.local):
    """Per process and thread: where a shard's share of a batch is gathered before it is
    scattered and cast into the batch. Shared anonymous memory, so it never turns
    copy-on-write when DataLoader workers fork: a new temporary per read landed on heap
    pages last written before the fork and took tens of page faults per tail batch."""

    pid: Optional[int] = None
    arr: Optional[np.ndarray] = None  # a view of the mapping, which it keeps alive


_SCRATCH = _Scratch()


def _scratch(nbytes: int) -> np.ndarray:
    """A reusable uint8 buffer of at least ``nbytes`` for this process and thread."""
    s = _SCRATCH
    if s.arr is None or len(s.arr) < nbytes or s.pid != os.getpid():
        # A forked child inherits the parent's mapping, which it must never write: the
        # parent may be gathering into it. It makes its own.
        s.arr = np.frombuffer(mmap.mmap(-1, 1 << max(20, (nbytes - 1).bit_length())), np.uint8)
        s.pid = os.getpid()
    return s.arr


def _shard_name(shard) -> str:
    raw = getattr(shard, 'raw_data', None)
    base = raw.basename if raw is not None else '?'
    return os.path.join(getattr(shard, 'dirname', ''), getattr(shard, 'split', '') or '', base)


class ShardTokenReader:
    """Gather token rows and row segments by global sample id, one fancy index per shard.

    Args:
        shards: streaming shard readers (``dataset.shards``), in global sample order.
        sample_offset_per_shard: first global sample id of each shard.
        column: the token column (``tokens``).
        ensure: called with a shard id before its raw file is opened; it must make the raw
            (decompressed) file exist locally (``StreamingDataset.prepare_shard`` does).
        touch: called with an array of shard ids each time they are read (cache LRU
            bookkeeping), once per gather.
        fallback_get: ``sample_id -> sample dict`` used for shards without a fixed layout.
        verify: ``(shard_id, filename, mapping, stat)`` called on each new mapping of a fixed-layout
            shard before it is read (the hash check, :mod:`slwdata.dataset.integrity`).
        bytes_dtype: dtype of tokens stored as raw ``bytes`` (llm-foundry used int64).
        max_open: memory maps kept open at once.
    """

    def __init__(
        self,
        shards: Sequence,
        sample_offset_per_shard: NDArray[np.int64],
        column: str = 'tokens',
        ensure: Optional[Callable[[int], None]] = None,
        touch: Optional[Callable[[NDArray[np.int64]], None]] = None,
        fallback_get: Optional[Callable[[int], dict]] = None,
        bytes_dtype: str = 'int64',
        max_open: int = 256,
        verify: Optional[Callable[[int, str, mmap.mmap, os.stat_result], None]] = None,
    ) -> None:
        self.shards = list(shards)
        self.offsets = np.asarray(sample_offset_per_shard, np.int64)
        self.samples = np.array([s.samples for s in self.shards], np.int64)
        self.column = column
        self.layouts = [ColumnLayout.of_shard(s, column) for s in self.shards]
        self.ensure = ensure
        self.touch = touch
        self.fallback_get = fallback_get
        self.bytes_dtype = np.dtype(bytes_dtype)
        self.max_open = max_open
        self.verify = verify
        self._maps: 'OrderedDict[int, np.ndarray]' = OrderedDict()
        self._row_bytes: dict[int, np.ndarray] = {}
        self.all_fixed = all(layout.fixed for layout in self.layouts)
        lengths = {layout.seq_len for layout in self.layouts if layout.seq_len is not None}
        dtypes = {layout.dtype for layout in self.layouts if layout.dtype is not None}
        self.seq_len: Optional[int] = lengths.pop() if len(lengths) == 1 else None
        self.dtype: Optional[np.dtype] = dtypes.pop() if len(dtypes) == 1 else None
        if len(lengths) > 1:
            raise ShardFormatError(
                f'Shards disagree on the token row length: {sorted(lengths)}; '
                f'first shard {_shard_name(self.shards[0])}.'
            )

    # ----------------------------------------------------------------------------------------
    def shard_of(self, ids: NDArray[np.int64], check: bool = True) -> NDArray[np.int64]:
        """Shard id of each global sample id (``check``: refuse ids out of range)."""
        ids = np.asarray(ids, np.int64)
        if check and ids.size and (ids.min() < 0 or ids.max() >= self.offsets[-1] + self.samples[-1]):
            raise IndexError(f'Sample id out of range [0, {self.offsets[-1] + self.samples[-1]}).')
        return np.searchsorted(self.offsets, ids, side='right') - 1

    def _open(self, shard_id: int, filename: str) -> tuple[mmap.mmap, os.stat_result]:
        """Map the whole raw file of a shard, making it local first (``ensure``) and again if
        it is evicted before it is opened: once mapped it stays readable even if unlinked."""
        for _ in range(8):
            if self.ensure is not None and not os.path.isfile(filename):
                self.ensure(shard_id)
            try:
                with open(filename, 'rb') as f:
                    st = os.fstat(f.fileno())
                    if st.st_size == 0:
                        raise ShardFormatError(f'{filename}: empty file.')
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), st
            except FileNotFoundError:
                # Evicted between ensure() and open() (another worker needed the space).
                if self.ensure is None:
                    raise
        raise RuntimeError(
            f'{filename} keeps being evicted before it can be opened: the '
            'cache_limit is too small for the shards in use.'
        )

    def _map(self, shard_id: int) -> np.ndarray:
        """Memory-map the token column of a fixed-layout shard as ``[samples, seq_len]``."""
        mm = self._maps.get(shard_id)
        if mm is not None:
            self._maps.move_to_end(shard_id)
            return mm
        shard = self.shards[shard_id]
        layout = self.layouts[shard_id]
        filename = os.path.join(shard.dirname, shard.split or '', shard.raw_data.basename)
        buf, st = self._open(shard_id, filename)
        try:
            header = np.frombuffer(buf, np.uint32, 2 + shard.samples)
        except ValueError as err:
            raise ShardFormatError(f'{filename}: shorter than its index says ({err}).') from err
        num, begin, end = int(header[0]), int(header[1]), int(header[-1])
        if num != shard.samples or end - begin != num * layout.stride or end > len(buf):
            raise ShardFormatError(
                f'{filename}: header says {num} samples spanning {end - begin} bytes; '
                f'index.json says {shard.samples} samples of {layout.stride} bytes.'
            )
        del header
        if self.verify is not None:
            self.verify(shard_id, filename, buf, st)
        # Header and tokens come from the one mapping opened above: an eviction (unlink) by
        # another worker after this point cannot take the file away from under the reader.
        if layout.stride == layout.seq_len * layout.dtype.itemsize:
            mm = np.frombuffer(buf, layout.dtype, num * layout.seq_len, begin).reshape(num, layout.seq_len)
        else:
            raw = np.frombuffer(buf, np.uint8, num * layout.stride, begin).reshape(num, layout.stride)
            nbytes = layout.seq_len * layout.dtype.itemsize
            # Tokens as tokens (a strided [samples, seq_len] view), so rows and segments
            # index it alike.
            mm = raw[:, layout.offset : layout.offset + nbytes].view(layout.dtype)
        # A plain ndarray (its base keeps the mapping open), not np.memmap: its Python-level
        # __getitem__ / __array_finalize__ cost more than a small gather from one shard.
        mm = mm.view(np.ndarray)
        self._maps[shard_id] = mm
        if mm.flags.c_contiguous:
            # The same rows, each one opaque item of seq_len * itemsize bytes (see _gather).
            self._row_bytes[shard_id] = (
                mm.view(np.uint8).view(np.dtype((np.void, mm.shape[1] * mm.itemsize))).reshape(len(mm))
            )
        if len(self._maps) > self.max_open:
            old, _ = self._maps.popitem(last=False)
            self._row_bytes.pop(old, None)
        return mm

    def _gather(self, shard_id: int, local: NDArray[np.integer]) -> np.ndarray:
        """Rows ``local`` of a fixed-layout shard, ``[k, seq_len]``, in the reusable scratch
        buffer (valid until the next gather in this thread)."""
        m = self._map(shard_id)
        rows = self._row_bytes.get(shard_id)
        if rows is None:  # extra columns: a strided view
            return m[local]
        k = len(local)
        block = _scratch(k * rows.itemsize)[: k * rows.itemsize].view(rows.dtype)
        # Rows as opaque bytes: the token data is usually not 2-byte aligned in the file
        # (np.take would then copy the whole shard first). 'clip' writes straight into `block`
        # ('raise' buffers); ids are within the shard by construction (plan_rows / plan_segments).
        np.take(rows, local, out=block, mode='clip')
        return block.view(m.dtype).reshape(k, m.shape[1])

    def _decode(self, sample_id: int, shard_id: int) -> np.ndarray:
        """Per-sample fallback for shards without a fixed layout."""
        if self.fallback_get is None:
            raise ShardFormatError(
                f'{_shard_name(self.shards[shard_id])}: variable-size layout and no per-sample fallback reader.'
            )
        value = self.fallback_get(int(sample_id))[self.column]
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = np.frombuffer(value, self.bytes_dtype)
        return np.asarray(value).reshape(-1)

    def _rows_of_shard(self, shard_id: int, local: NDArray[np.int64]) -> np.ndarray:
        layout = self.layouts[shard_id]
        if layout.fixed:
            return self._map(shard_id)[local]
        base = self.offsets[shard_id]
        rows = [self._decode(base + i, shard_id) for i in local]
        lengths = {len(r) for r in rows}
        if len(lengths) != 1 or (self.seq_len is not None and lengths != {self.seq_len}):
            raise ShardFormatError(
                f'{_shard_name(self.shards[shard_id])}: token rows of lengths {sorted(lengths)}; '
                f'rows must all have the same length ({self.seq_len or "any"}).'
            )
        if self.seq_len is None:
            self.seq_len = lengths.pop()
        return np.stack(rows)

    def read_rows(self, ids: NDArray[np.int64], out: Optional[np.ndarray] = None) -> np.ndarray:
        """Rows ``[len(ids), seq_len]`` in the order of ``ids`` (compact dtype unless ``out``).

        Fixed layouts: :meth:`plan_rows` then :meth:`read_row_gather`. Otherwise rows are
        decoded per shard and put in order with one scatter."""
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            rows = np.empty((0, self.seq_len or 0), self.dtype or np.int64)
        elif self.all_fixed:
            return self.read_row_gather(self.plan_rows(ids), out)
        else:
            gather = self.plan_rows(ids)
            if self.touch is not None:
                self.touch(gather.shards)
            # Row lengths agree across shards: checked at init (fixed layouts) or per shard.
            pieces, lo = [], 0
            for shard, k in gather.groups.tolist():
                pieces.append(self._rows_of_shard(shard, gather.local[lo : lo + k]))
                lo += k
            if len(pieces) == 1:
                rows = pieces[0]  # one shard: the stable order is the identity
            else:
                rows = np.empty((len(ids), pieces[0].shape[1]), np.result_type(*pieces))
                rows[gather.order] = np.concatenate(pieces)
        if out is None:
            return rows
        np.copyto(out, rows, casting='unsafe')
        return out

    def plan_rows(self, ids: NDArray[np.integer], check: bool = True) -> RowGather:
        """Work out how :meth:`read_row_gather` reads these rows (fixed layouts only): index
        arithmetic, no token read, so a DataLoader worker can do it for the main process.

        Example::

            g = reader.plan_rows(np.array([3, 17, 4]))
            reader.read_row_gather(g)                            # [3, seq_len]
        """
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return RowGather(np.zeros((0, 2), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int16))
        shard_ids = self.shard_of(ids, check)
        order = np.argsort(shard_ids, kind='stable')
        sorted_shards = shard_ids[order]
        heads = np.flatnonzero(np.concatenate([[True], sorted_shards[1:] != sorted_shards[:-1]]))
        groups = np.empty((len(heads), 2), np.int32)
        groups[:, 0] = sorted_shards[heads]
        groups[:, 1] = np.diff(np.append(heads, len(ids)))
        local = (ids - self.offsets[shard_ids])[order].astype(np.int32)
        return RowGather(groups, local, order.astype(np.int16 if len(ids) < 2**15 else np.int32))

    def read_row_gather(self, gather: RowGather, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Read what :meth:`plan_rows` planned: ``[rows, seq_len]``, in ``out`` (cast on the
        way) or a new array of the shards' dtype. Each shard's rows are gathered with one
        indexed read and scattered to their places: two passes over the tokens, where
        gathering per shard, concatenating, reordering and casting took four."""
        rows = len(gather.local)
        if out is None:
            out = np.empty((rows, self.seq_len), self.dtype)
        elif out.shape != (rows, self.seq_len):
            raise ValueError(f'out has shape {out.shape}, expected ({rows}, {self.seq_len}).')
        g = gather.groups
        if not len(g):
            return out
        if self.touch is not None:
            self.touch(g[:, 0])
        local, order = gather.local, gather.order
        if len(g) == 1:
            out[...] = self._gather(int(g[0, 0]), local)  # one shard: the order is the identity
            return out
        lo = 0
        for shard, k in g.tolist():
            out[order[lo : lo + k]] = self._gather(shard, local[lo : lo + k])
            lo += k
        return out

    def read_segments(
        self,
        ids: NDArray[np.int64],
        starts: NDArray[np.integer],
        lengths: NDArray[np.integer],
        check: bool = True,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Concatenate ``tokens[id][start:start+length]`` for each segment, in order (1-D).

        Tail rows are materialized this way: a tail row is the concatenation of its segments.
        ``check=False`` skips validating the segments (the planner's own, already valid).
        ``out``: a 1-D array of the total length to fill (cast to its dtype) and return.
        """
        ids = np.asarray(ids, np.int64)
        starts = np.asarray(starts, np.int64)
        lengths = np.asarray(lengths, np.int64)
        if check:
            if not (len(ids) == len(starts) == len(lengths)):
                raise ValueError('ids, starts and lengths must have the same length.')
            if len(ids) and (
                (starts < 0).any()
                or (lengths < 0).any()
                or (self.seq_len is not None and (starts + lengths > self.seq_len).any())
            ):
                raise ValueError(f'Segment outside a row of {self.seq_len} tokens.')
        total = int(lengths.sum())
        if out is not None and (out.ndim != 1 or len(out) != total):
            raise ValueError(f'out has shape {out.shape}, expected ({total},).')
        if len(ids) == 0:
            return np.empty(0, self.dtype or np.int64) if out is None else out
        if self.all_fixed:
            if out is None:
                out = np.empty(total, self.dtype)
            return self.read_gather(self.plan_segments(ids, starts, lengths), out)
        # Rows are gathered once per distinct id (read_rows checks the ids), then sliced with
        # one flat index.
        unique, inverse = np.unique(ids, return_inverse=True)
        rows = self.read_rows(unique)
        seq_len = rows.shape[1]
        seg_begin = inverse * seq_len + starts
        ends = np.cumsum(lengths)
        within = np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
        flat_index = np.repeat(seg_begin, lengths) + within
        if out is None:
            return rows.reshape(-1)[flat_index]
        np.copyto(out, rows.reshape(-1)[flat_index], casting='unsafe')
        return out

    def plan_segments(
        self, ids: NDArray[np.integer], starts: NDArray[np.integer], lengths: NDArray[np.integer]
    ) -> 'SegmentGather':
        """Work out how :meth:`read_gather` reads these segments (fixed layouts only): index
        arithmetic, no token read, so a DataLoader worker can do it and send the result with
        the batch's plan, leaving the main process only the reads. The ids are always checked
        (the read clips them); the segments' starts and lengths are the caller's to check
        (:meth:`read_segments` does).

        Example::

            g = reader.plan_segments(np.array([3, 17]), np.array([0, 8]), np.array([8, 16]))
            reader.read_gather(g, np.empty(g.total, np.int64))
        """
        ids = np.asarray(ids, np.int64)
        starts = np.asarray(starts, np.int64)
        lengths = np.asarray(lengths, np.int64)
        if not len(ids):
            return SegmentGather(np.zeros((0, 4), np.int32), np.zeros((0, 5), np.int32), np.zeros(0, np.int32), 0)
        # A tail that straddles two tail rows may arrive as two pieces that continue each
        # other in the source row: joined first.
        joins = (ids[1:] == ids[:-1]) & (starts[1:] == starts[:-1] + lengths[:-1])
        if joins.any():
            first = np.flatnonzero(np.concatenate([[True], ~joins]))
            ids, starts, lengths = ids[first], starts[first], np.add.reduceat(lengths, first)
        shard_ids = self.shard_of(ids)
        local = ids - self.offsets[shard_ids]
        # Groups of consecutive segments from one shard with one (start, length): the tails
        # one step recorded, in row order, split by shard. Sorted by shard, so the main
        # process reads all of a shard's rows with one indexed read and copies each group's
        # slice of them into place.
        edge = (shard_ids[1:] != shard_ids[:-1]) | (starts[1:] != starts[:-1]) | (lengths[1:] != lengths[:-1])
        bounds = np.flatnonzero(np.concatenate([[True], edge, [True]]))
        head = bounds[:-1]
        pos = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        if total > _I32_MAX:
            raise ValueError(f'{total} tokens of segments in one read (at most 2**31 - 1).')
        count = np.diff(bounds)
        by_shard = np.argsort(shard_ids[head], kind='stable')
        head, count = head[by_shard], count[by_shard]
        shard = shard_ids[head]
        rows = np.concatenate([local[h : h + c] for h, c in zip(head.tolist(), count.tolist())]) if len(head) else local
        ends = np.cumsum(count)
        first = (
            np.flatnonzero(np.concatenate([[True], shard[1:] != shard[:-1]])) if len(head) else np.zeros(0, np.int64)
        )
        run_end = np.append(first[1:], len(head)) if len(head) else first
        runs = np.empty((len(first), 4), np.int32)
        runs[:, 0] = shard[first]
        runs[:, 1] = ends[first] - count[first]
        runs[:, 2] = ends[run_end - 1] if len(head) else 0
        runs[:, 3] = run_end - first
        groups = np.empty((len(head), 5), np.int32)
        groups[:, 0], groups[:, 1], groups[:, 2] = starts[head], lengths[head], count
        groups[:, 3] = pos[head]
        groups[:, 4] = ends - count - np.repeat(runs[:, 1], runs[:, 3])
        return SegmentGather(runs, groups, rows.astype(np.int32), total)

    def read_gather(self, gather: 'SegmentGather', out: np.ndarray) -> np.ndarray:
        """Read what :meth:`plan_segments` planned into the 1-D ``out`` (cast on the way).

        One indexed read of whole rows per shard (as a fresh batch does), then each group's
        ``[start, start + length)`` of them copied into place: no per-token index (a flat
        index costs about three times as much) and no concatenation."""
        if out.ndim != 1 or len(out) != gather.total:
            raise ValueError(f'out has shape {out.shape}, expected ({gather.total},).')
        runs = gather.runs
        if self.touch is not None and len(runs):
            self.touch(runs[:, 0])
        local, groups, g = gather.local, gather.groups.tolist(), 0
        for shard, lo, hi, n_groups in runs.tolist():
            block = self._gather(shard, local[lo:hi])
            for begin, n, k, pos, at in groups[g : g + n_groups]:
                if k == 1:
                    out[pos : pos + n] = block[at, begin : begin + n]
                else:
                    out[pos : pos + k * n].reshape(k, n)[...] = block[at : at + k, begin : begin + n]
            g += n_groups
        return out

    def drop(self, shard_id: int) -> None:
        """Forget this shard's memory map: the next read maps the file anew (a new copy after
        an eviction)."""
        self._maps.pop(shard_id, None)
        self._row_bytes.pop(shard_id, None)

    def close(self) -> None:
        """Drop open memory maps."""
        self._maps.clear()
        self._row_bytes.clear()

    def __getstate__(self) -> dict:
        # A pickled mapped array is a full in-memory copy of the shard: spawned DataLoader workers
        # open their own maps instead.
        state = self.__dict__.copy()
        state['_maps'] = OrderedDict()
        state['_row_bytes'] = {}
        return state
