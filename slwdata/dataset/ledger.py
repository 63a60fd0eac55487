"""The tail ledger: a FIFO of truncated row tails waiting to be trained.

Sequence Length Warmup trains row ``r`` (``e`` tokens) at a paced length ``L < e`` and drops
``[L, e)``. The ledger records each dropped span as a 16-byte *segment*
``(row: int64, start: int32, length: int32)`` so that the planner (:mod:`slwdata.dataset.plan`)
can pack the spans into full-length tail rows later. ``row`` is whatever id the reader
understands (the global sample id of the dataset); the ledger never looks at token data.

Pure numpy: no torch, no streaming.

Example:
    >>> led = TailLedger()
    >>> led.push([7, 9], [4, 4], [12, 12])
    >>> led.tokens, len(led), SEGMENT_DTYPE.itemsize
    (24, 2, 16)
    >>> seg = led.take(16)  # the second segment is split; its rest stays at the head
    >>> [tuple(map(int, s)) for s in seg], led.tokens
    ([(7, 4, 12), (9, 4, 4)], 8)
    >>> [tuple(map(int, s)) for s in led.segments()]
    [(9, 8, 8)]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["SEGMENT_DTYPE", "TailLedger", "split_into_rows", "format_bytes"]

#: One ledger entry: 8 + 4 + 4 = 16 bytes, no padding. Rows are int64 because global sample
#: ids of a large corpus exceed 2**31; starts/lengths are positions inside one row.
SEGMENT_DTYPE = np.dtype([("row", "<i8"), ("start", "<i4"), ("length", "<i4")])
assert SEGMENT_DTYPE.itemsize == 16

_I32_MAX = np.iinfo(np.int32).max


def format_bytes(n: int) -> str:
    """Human-readable byte count, e.g. ``format_bytes(1536) == '1.5 KiB'``."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{int(x)} B" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    raise AssertionError("unreachable")


def make_segments(rows: Any, starts: Any, lengths: Any) -> np.ndarray:
    """Build a :data:`SEGMENT_DTYPE` array from three equal-length sequences (or scalars broadcast).

    Example:
        >>> make_segments([1, 2], 0, [5, 6])["length"].tolist()
        [5, 6]
    """
    r = np.asarray(rows)
    s = np.asarray(starts)
    n = np.asarray(lengths)
    r, s, n = np.broadcast_arrays(r, s, n)
    if r.ndim != 1:
        r, s, n = r.reshape(-1), s.reshape(-1), n.reshape(-1)
    for name, a in (("rows", r), ("starts", s), ("lengths", n)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"TailLedger: {name} must be integers, got dtype {a.dtype}")
    if n.size:
        if int(n.min()) < 0:
            raise ValueError(f"TailLedger: negative segment length {int(n.min())}")
        if int(s.min()) < 0:
            raise ValueError(f"TailLedger: negative segment start {int(s.min())}")
        if int(s.max()) + int(n.max()) > _I32_MAX:
            raise ValueError("TailLedger: segment start/length does not fit in int32")
    out = np.empty(r.shape[0], dtype=SEGMENT_DTYPE)
    out["row"] = r
    out["start"] = s
    out["length"] = n
    return out


def split_into_rows(segments: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a run of segments (total a multiple of ``row_len``) into rows of exactly ``row_len``.

    A segment that straddles a row boundary is split in two. Returns ``(pieces, row_offsets)``:
    row ``i`` is ``pieces[row_offsets[i]:row_offsets[i+1]]`` and its lengths sum to ``row_len``.

    Example:
        >>> segs = make_segments([0, 1], [8, 8], [12, 4])
        >>> pieces, off = split_into_rows(segs, 8)
        >>> [tuple(map(int, p)) for p in pieces], off.tolist()
        ([(0, 8, 8), (0, 16, 4), (1, 8, 4)], [0, 1, 3])
    """
    pieces, row_offsets, _, _, _ = _split_rows(segments, row_len)
    return pieces, row_offsets


def _split_rows(
    segments: np.ndarray, row_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Also returns, per piece, its row index and its [begin, end) in the concatenated token stream,
    # which the planner needs to find what a truncation drops.
    lens = segments["length"].astype(np.int64)
    if len(lens) and int(lens.min()) <= 0:
        if int(lens.min()) < 0:
            raise ValueError(f"split_into_rows: negative segment length {int(lens.min())}")
        segments = segments[lens > 0]
        lens = lens[lens > 0]
    ends = np.cumsum(lens)
    total = int(ends[-1]) if len(ends) else 0
    if row_len <= 0 or total % row_len:
        raise ValueError(f"split_into_rows: {total} tokens is not a whole number of rows of {row_len}")
    n_rows = total // row_len
    begins = ends - lens
    first_row = begins // row_len
    n_pieces = (ends - 1) // row_len - first_row + 1
    n_total = int(n_pieces.sum())
    if n_total == len(segments):
        # No segment straddles a row boundary.
        pieces, row, p_begin, p_end = segments.copy(), first_row, begins, ends
    else:
        seg_idx = np.repeat(np.arange(len(segments)), n_pieces)
        # j-th piece of a segment: j = 0 starts at the segment's begin, later ones at a row boundary.
        j = np.arange(n_total) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
        row = first_row[seg_idx] + j
        seg_begin = begins[seg_idx]
        p_begin = np.maximum(seg_begin, row * row_len)
        p_end = np.minimum(ends[seg_idx], p_begin - p_begin % row_len + row_len)
        pieces = np.empty(n_total, dtype=SEGMENT_DTYPE)
        pieces["row"] = segments["row"][seg_idx]
        pieces["start"] = segments["start"][seg_idx] + (p_begin - seg_begin)
        pieces["length"] = p_end - p_begin
    row_offsets = np.searchsorted(row, np.arange(n_rows + 1), side="left")
    return pieces, row_offsets, row, p_begin, p_end


class TailLedger:
    """FIFO of tail segments in one contiguous numpy buffer with a moving head.

    Push appends at the end, take consumes from the head; the buffer doubles when full and is
    compacted when the consumed prefix is at least as large as the live part, so both are
    amortized O(1) per segment and a take only touches the segments it returns.

    Example:
        >>> led = TailLedger()
        >>> led.push(rows=[3, 4], starts=8, lengths=8)
        >>> led.take(8)["row"].tolist(), led.tokens, led.nbytes
        ([3], 8, 16)
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._buf = np.empty(max(int(capacity), 16), dtype=SEGMENT_DTYPE)
        self._head = 0
        self._tail = 0
        self._tokens = 0
        self.peak_entries = 0
        self.peak_tokens = 0
        self.tokens_pushed = 0
        self.tokens_taken = 0

    # ---- size reporting -------------------------------------------------------------------
    def __len__(self) -> int:
        return self._tail - self._head

    @property
    def entries(self) -> int:
        """Number of live segments."""
        return self._tail - self._head

    @property
    def tokens(self) -> int:
        """Total tokens queued (sum of live segment lengths)."""
        return self._tokens

    @property
    def nbytes(self) -> int:
        """Bytes of the live segments (16 per segment)."""
        return (self._tail - self._head) * SEGMENT_DTYPE.itemsize

    @property
    def allocated_bytes(self) -> int:
        """Bytes currently allocated for the buffer (>= ``nbytes``)."""
        return self._buf.nbytes

    @property
    def peak_bytes(self) -> int:
        """Bytes of live segments at the largest point so far (``16 * peak_entries``)."""
        return self.peak_entries * SEGMENT_DTYPE.itemsize

    def describe(self) -> str:
        """One line for logs, e.g. ``'3 segments, 40 tokens, 48 B (peak 3 segments, 48 B)'``."""
        return (
            f"{self.entries:,} segments, {self.tokens:,} tokens, {format_bytes(self.nbytes)} "
            f"(peak {self.peak_entries:,} segments, {format_bytes(self.peak_bytes)})"
        )

    def __repr__(self) -> str:
        return f"TailLedger({self.describe()})"

    # ---- queue operations -----------------------------------------------------------------
    def _reserve(self, k: int) -> None:
        if self._tail + k <= len(self._buf):
            return
        live = self._tail - self._head
        if live + k <= len(self._buf) and self._head >= live:
            # Enough dead space at the front: compact in place (cost <= consumed entries).
            self._buf[:live] = self._buf[self._head : self._tail]
        else:
            new = np.empty(max(2 * len(self._buf), live + k), dtype=SEGMENT_DTYPE)
            new[:live] = self._buf[self._head : self._tail]
            self._buf = new
        self._head, self._tail = 0, live

    def push_segments(self, segments: np.ndarray) -> None:
        """Append an array of :data:`SEGMENT_DTYPE` (zero-length segments are skipped).

        Example:
            >>> led = TailLedger(); led.push_segments(make_segments([1], [0], [5])); led.tokens
            5
        """
        if segments.dtype != SEGMENT_DTYPE:
            raise TypeError(f"push_segments wants dtype {SEGMENT_DTYPE}, got {segments.dtype}")
        if len(segments) == 0:
            return
        lens = segments["length"]
        if int(lens.min()) <= 0:
            if int(lens.min()) < 0:
                raise ValueError(f"TailLedger: negative segment length {int(lens.min())}")
            segments = segments[lens > 0]
            lens = segments["length"]
        k = len(segments)
        if k == 0:
            return
        self._reserve(k)
        self._buf[self._tail : self._tail + k] = segments
        self._tail += k
        added = int(lens.sum(dtype=np.int64))
        self._tokens += added
        self.tokens_pushed += added
        self._note_peak()

    def _push_trusted(self, rows: Any, start: Any, length: Any, n_tokens: int) -> None:
        # Planner hot path: inputs already valid and positive, token total known; no temporaries.
        k = len(rows)
        if k == 0:
            return
        self._reserve(k)
        dst = self._buf[self._tail : self._tail + k]
        dst["row"] = rows
        dst["start"] = start
        dst["length"] = length
        self._tail += k
        self._tokens += n_tokens
        self.tokens_pushed += n_tokens
        self._note_peak()

    def push(self, rows: Any, starts: Any, lengths: Any) -> None:
        """Append segments given as parallel arrays (scalars broadcast). Vectorized.

        Example:
            >>> led = TailLedger(); led.push([10, 11, 12], 6, [10, 0, 10]); (len(led), led.tokens)
            (2, 20)
        """
        self.push_segments(make_segments(rows, starts, lengths))

    def _note_peak(self) -> None:
        live = self._tail - self._head
        if live > self.peak_entries:
            self.peak_entries = live
        if self._tokens > self.peak_tokens:
            self.peak_tokens = self._tokens

    def take(self, n_tokens: int) -> np.ndarray:
        """Remove and return the oldest segments totalling exactly ``n_tokens``.

        The last returned segment may be a prefix of a queued one; the remainder stays at the
        head with its ``start`` advanced. Raises ``ValueError`` if fewer tokens are queued.

        Example:
            >>> led = TailLedger(); led.push([5], [0], [10])
            >>> led.take(3).tolist(), led.segments().tolist()
            ([(5, 0, 3)], [(5, 3, 7)])
        """
        n = int(n_tokens)
        if n < 0:
            raise ValueError(f"TailLedger.take: negative token count {n}")
        if n > self._tokens:
            raise ValueError(f"TailLedger.take: asked for {n} tokens, only {self._tokens} queued")
        if n == 0:
            return np.empty(0, dtype=SEGMENT_DTYPE)
        live = self._tail - self._head
        # Look at a window sized from the average segment length, doubling on a miss, so a take
        # costs O(segments returned) and not O(ledger size).
        w = min(live, max(64, 2 * (n * live // max(self._tokens, 1)) + 16))
        while True:
            lens = self._buf["length"][self._head : self._head + w].astype(np.int64)
            cs = np.cumsum(lens)
            if cs[-1] >= n or w == live:
                break
            w = min(live, 2 * w)
        k = int(np.searchsorted(cs, n, side="left"))
        out = self._buf[self._head : self._head + k + 1].copy()
        over = int(cs[k]) - n
        if over:
            out["length"][-1] -= over
            rec = self._buf[self._head + k : self._head + k + 1]
            rec["start"] += int(lens[k]) - over
            rec["length"] = over
            self._head += k
        else:
            self._head += k + 1
        self._tokens -= n
        self.tokens_taken += n
        cap = len(self._buf)
        live = self._tail - self._head
        if cap > 4096 and 8 * live < cap and 2 * self._head > cap:
            # Give memory back after a drain (deferred: the warmup's ledger is served after it);
            # the copy is < cap/8 entries after >= cap/2 were consumed, so still amortized O(1).
            new = np.empty(max(4 * live, 1024), dtype=SEGMENT_DTYPE)
            new[:live] = self._buf[self._head : self._tail]
            self._buf, self._head, self._tail = new, 0, live
        return out

    def take_rows(self, n_rows: int, row_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Take ``n_rows * row_len`` tokens and cut them into rows (see :func:`split_into_rows`).

        Example:
            >>> led = TailLedger(); led.push([1, 2, 3], 4, 4)
            >>> pieces, off = led.take_rows(1, 8); pieces["row"].tolist(), off.tolist(), led.tokens
            ([1, 2], [0, 2], 4)
        """
        return split_into_rows(self.take(n_rows * row_len), row_len)

    def segments(self) -> np.ndarray:
        """A copy of the live segments, oldest first."""
        return self._buf[self._head : self._tail].copy()

    def copy(self) -> "TailLedger":
        """An independent ledger with the same segments and counters."""
        other = TailLedger.__new__(TailLedger)
        other.__dict__.update(self.__dict__)
        # Room to push without regrowing (the planner pushes into its copy straight away).
        other._buf = np.empty(max(2 * len(self), 16), dtype=SEGMENT_DTYPE)
        other._buf[: len(self)] = self._buf[self._head : self._tail]
        other._head, other._tail = 0, len(self)
        return other

    # ---- checkpointing --------------------------------------------------------------------
    def state_dict(self, portable: bool = False) -> dict[str, Any]:
        """The live segments and counters as a small dict.

        Default: three numpy arrays ``row/start/length`` (for ``np.savez``, pickle).
        ``portable=True``: only ints and one ``bytes`` blob (``segments``: the 16-byte
        little-endian entries), which ``torch.load(weights_only=True)`` and Composer checkpoints
        accept. :meth:`load_state_dict` reads both.

        Example:
            >>> led = TailLedger(); led.push([1], [2], [3])
            >>> sd = led.state_dict(); sd["row"].tolist(), sd["tokens"]
            ([1], 3)
            >>> len(led.state_dict(portable=True)["segments"])
            16
        """
        live = self._buf[self._head : self._tail]
        state: dict[str, Any] = {
            "version": 1,
            "tokens": self._tokens,
            "peak_entries": self.peak_entries,
            "peak_tokens": self.peak_tokens,
            "tokens_pushed": self.tokens_pushed,
            "tokens_taken": self.tokens_taken,
        }
        if portable:
            state["segments"] = live.tobytes()
        else:
            state["row"] = live["row"].copy()
            state["start"] = live["start"].copy()
            state["length"] = live["length"].copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; checks the token total so a corrupt state fails loudly."""
        if state.get("version") != 1:
            raise ValueError(f"TailLedger.load_state_dict: unknown version {state.get('version')!r}")
        if "segments" in state:
            blob = state["segments"]
            if len(blob) % SEGMENT_DTYPE.itemsize:
                raise ValueError(
                    f"TailLedger.load_state_dict: segments blob of {len(blob)} bytes is not a whole "
                    f"number of {SEGMENT_DTYPE.itemsize}-byte entries"
                )
            raw = np.frombuffer(blob, dtype=SEGMENT_DTYPE)
            rows, starts, lens = raw["row"], raw["start"].astype(np.int64), raw["length"].astype(np.int64)
        else:
            rows = np.asarray(state["row"], dtype=np.int64)
            starts = np.asarray(state["start"], dtype=np.int64)
            lens = np.asarray(state["length"], dtype=np.int64)
        segs = make_segments(rows, starts, lens)
        total = int(segs["length"].sum(dtype=np.int64))
        if total != int(state["tokens"]):
            raise ValueError(
                f"TailLedger.load_state_dict: segments hold {total} tokens but state says {state['tokens']}"
            )
        self._buf = np.empty(max(2 * len(segs), 16), dtype=SEGMENT_DTYPE)
        self._head, self._tail, self._tokens = 0, 0, 0
        self.peak_entries = self.peak_tokens = self.tokens_pushed = self.tokens_taken = 0
        self.push_segments(segs)
        self.peak_entries = max(self.peak_entries, int(state.get("peak_entries", 0)))
        self.peak_tokens = max(self.peak_tokens, int(state.get("peak_tokens", 0)))
        self.tokens_pushed = int(state.get("tokens_pushed", total))
        self.tokens_taken = int(state.get("tokens_taken", 0))


def ledger_from_segments(segments: Sequence[tuple[int, int, int]]) -> TailLedger:
    """Convenience for tests and docs: ``ledger_from_segments([(row, start, length), ...])``."""
    led = TailLedger()
    if len(segments):
        arr = np.asarray(segments, dtype=np.int64).reshape(-1, 3)
        led.push(arr[:, 0], arr[:, 1], arr[:, 2])
    return led
