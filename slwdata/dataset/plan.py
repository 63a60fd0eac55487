"""The epoch planner: which batch each step of one rank's epoch serves, fresh rows or tail rows.

DataLoader workers run ahead of the trainer, so the truncation a batch will undergo cannot be
fed back to them. The planner instead *predicts* it: given the rank's fresh batches, the rows
per batch ``B``, the row length ``e`` and the paced length at every global step, it simulates
the epoch, records the dropped tails ``[seq_len, e)`` of every batch in a :class:`TailLedger`,
and decides per step whether to serve the next fresh batch or ``B`` full-length rows packed from
the ledger. Decisions depend only on token counts, which every rank shares, so every rank plans
the same number of batches. Everything is deterministic: resuming is replaying
(:meth:`EpochPlanner.skip`).

Policies (see ``docs/tail_reuse.md``):

* ``"off"``: never serve tails; the dropped tokens are only counted.
* ``"deferred"`` (default): from ``warmup_end_step`` on, spread the full tail batches the ledger
  holds evenly among the remaining fresh batches; serve any left at the end of the epoch.
* ``"interleave"``: serve a tail batch whenever the ledger holds ``B * e`` tokens (bounded ledger).

Whatever is less than one whole tail batch at the end of the epoch stays in the ledger and is
carried into the next epoch (``EpochAccount.tokens_carried_out``).

Pure numpy: no torch, no streaming.

Example:
    >>> planner = plan_epoch(num_fresh_batches=4, rows_per_batch=2, row_len=16,
    ...                      length_at=[8, 8, 16, 16, 16], policy="deferred")
    >>> [(p.step, p.kind, p.seq_len) for p in planner]
    [(0, 'fresh', 8), (1, 'fresh', 8), (2, 'fresh', 16), (3, 'tail', 16), (4, 'fresh', 16)]
    >>> planner.account.tokens_trained == 4 * 2 * 16 and planner.account.tokens_carried_out == 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from slwdata.dataset.accounting import EpochAccount
from slwdata.dataset.ledger import TailLedger, _split_rows, split_into_rows

__all__ = [
    "REUSE_POLICIES",
    "BatchPlan",
    "EpochPlanner",
    "plan_epoch",
    "count_epoch_batches",
    "warmup_end_from_lengths",
]

REUSE_POLICIES = ("off", "deferred", "interleave")

_DONE = object()

LengthAt = Union[Callable[[int], int], Sequence[int], np.ndarray]


def warmup_end_from_lengths(lengths: Sequence[int], row_len: int) -> int:
    """First index from which every entry of ``lengths`` equals ``row_len``.

    Example:
        >>> warmup_end_from_lengths([8, 8, 16, 16], 16), warmup_end_from_lengths([], 16)
        (2, 0)
    """
    arr = np.asarray(lengths, dtype=np.int64)
    short = np.flatnonzero(arr != row_len)
    return int(short[-1]) + 1 if len(short) else 0


def _as_length_fn(length_at: LengthAt) -> Callable[[int], int]:
    if callable(length_at):
        return length_at
    arr = np.asarray(length_at, dtype=np.int64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError("plan_epoch: length_at must be a callable or a non-empty 1-D list of lengths")
    values = arr.tolist()
    last = values[-1]
    n = len(values)

    # Past the simulated run (workers prefetch beyond the last step) the schedule stays at its final length.
    def fn(step: int) -> int:
        return values[step] if step < n else last

    return fn


@dataclass(eq=False, slots=True)
class BatchPlan:
    """What one step of one rank serves.

    ``kind == "fresh"``: ``rows`` holds the ``B`` row ids of fresh batch ``fresh_index``.
    ``kind == "tail"``: ``taken`` holds the ledger segments the batch consumed, in order
    (fields ``row, start, length``); the batch is their concatenation cut into rows of
    ``row_len``. Row ``i`` is ``segments[row_offsets[i]:row_offsets[i+1]]``, the same segments
    cut at the row boundaries (computed on first use: reading a batch needs only ``taken``).
    Either way the trainer keeps ``[:seq_len]`` of every row.

    Example:
        >>> p = next(iter(plan_epoch(1, 2, 16, [8])))
        >>> p.kind, p.rows.tolist(), p.seq_len, p.tail_rows
        ('fresh', [0, 1], 8, 0)
    """

    step: int
    index: int
    kind: str
    seq_len: int
    row_len: int
    rows_per_batch: int
    fresh_index: Optional[int] = None
    rows: Optional[np.ndarray] = field(default=None, repr=False)
    taken: Optional[np.ndarray] = field(default=None, repr=False)
    _pieces: Optional[np.ndarray] = field(default=None, repr=False)
    _offsets: Optional[np.ndarray] = field(default=None, repr=False)
    # How the reader reads this batch (``ShardTokenReader.plan_rows`` / ``plan_segments``),
    # when a DataLoader worker worked it out for the main process; opaque here. The wire form
    # of a plan lives in ``slwdata.dataset.transport``.
    gather: Any = field(default=None, repr=False)

    def _cut(self) -> None:
        if self._pieces is None and self.taken is not None:
            self._pieces, self._offsets = split_into_rows(self.taken, self.row_len)

    @property
    def segments(self) -> Optional[np.ndarray]:
        """Tail batch: ``taken`` cut at the row boundaries (see :attr:`row_offsets`)."""
        self._cut()
        return self._pieces

    @property
    def row_offsets(self) -> Optional[np.ndarray]:
        """Tail batch: row ``i`` is ``segments[row_offsets[i]:row_offsets[i + 1]]``."""
        self._cut()
        return self._offsets

    @property
    def tail_rows(self) -> int:
        """Rows of this batch that are re-served tails (``B`` or 0)."""
        return self.rows_per_batch if self.kind == "tail" else 0

    @property
    def dropped_tokens(self) -> int:
        """Tokens of this batch the trainer truncates away: ``B * (row_len - seq_len)``."""
        return self.rows_per_batch * (self.row_len - self.seq_len)

    def row_segments(self, i: int) -> list[tuple[int, int, int]]:
        """Row ``i`` as ``[(row, start, length), ...]`` (a fresh row is one whole segment).

        Example:
            >>> next(iter(plan_epoch(1, 2, 16, [8]))).row_segments(1)
            [(1, 0, 16)]
        """
        if self.kind == "fresh":
            assert self.rows is not None
            return [(int(self.rows[i]), 0, self.row_len)]
        assert self.segments is not None and self.row_offsets is not None
        seg = self.segments[self.row_offsets[i] : self.row_offsets[i + 1]]
        return [(int(r), int(s), int(n)) for r, s, n in seg.tolist()]

    def materialize(self, fetch_rows: Callable[[np.ndarray], Any]) -> np.ndarray:
        """Build the ``[B, row_len]`` token array of this batch (full length, not truncated).

        ``fetch_rows(ids)`` must return the full rows ``[len(ids), row_len]`` for an int64 array
        of row ids; a tail batch asks once for the distinct rows its segments come from.

        Example:
            >>> fetch = lambda ids: ids[:, None] * 100 + np.arange(16)
            >>> p = next(iter(plan_epoch(1, 2, 16, [8])))
            >>> p.materialize(fetch)[1, :3].tolist()
            [100, 101, 102]
        """
        e, b = self.row_len, self.rows_per_batch
        if self.kind == "fresh":
            assert self.rows is not None
            out = np.asarray(fetch_rows(np.asarray(self.rows, dtype=np.int64)))
            if out.shape != (b, e):
                raise ValueError(f"fetch_rows returned shape {out.shape}, expected {(b, e)}")
            return out
        assert self.taken is not None
        seg = self.taken  # cut into rows or not, the same concatenation
        uniq, inv = np.unique(seg["row"], return_inverse=True)
        data = np.asarray(fetch_rows(uniq))
        if data.shape != (len(uniq), e):
            raise ValueError(f"fetch_rows returned shape {data.shape}, expected {(len(uniq), e)}")
        lens = seg["length"].astype(np.int64)
        out_begin = np.cumsum(lens) - lens
        src_r = np.repeat(inv.reshape(-1), lens)
        src_c = np.repeat(seg["start"].astype(np.int64) - out_begin, lens) + np.arange(b * e)
        return data[src_r, src_c].reshape(b, e)


class _Decider:
    """The fresh-or-tail rule. Sees only token counts, so it is identical on every rank."""

    def __init__(self, policy: str, num_fresh: int, full: int, warmup_end_step: Optional[int], row_len: int):
        self.policy = policy
        self.num_fresh = num_fresh
        self.full = full  # tokens in one tail batch: B * e
        self.warmup_end_step = warmup_end_step
        self.row_len = row_len
        self.fresh_done = 0
        # deferred phase: starts at the first step >= warmup end; K0 tail batches spread over N slots.
        self.phase_k = -1
        self.phase_n = 0
        self.phase_j = 0

    def decide(self, step: int, seq_len: int, ledger_tokens: int) -> Optional[str]:
        fresh_left = self.num_fresh - self.fresh_done
        have_tail = ledger_tokens >= self.full
        if self.policy == "off":
            return "fresh" if fresh_left else None
        if self.policy == "interleave":
            if have_tail:
                return "tail"
            return "fresh" if fresh_left else None
        # deferred
        if self.phase_k < 0:
            in_warmup = step < self.warmup_end_step if self.warmup_end_step is not None else seq_len < self.row_len
            if in_warmup:
                return "fresh" if fresh_left else None
            self.phase_k = ledger_tokens // self.full
            self.phase_n = self.phase_k + fresh_left
            self.phase_j = 0
        if self.phase_j < self.phase_n:
            # Tails among the first j slots: round(j * K / N), so they sit centred in their gaps.
            j, k, n = self.phase_j, self.phase_k, self.phase_n
            want_tail = ((j + 1) * k + n // 2) // n > (j * k + n // 2) // n
            self.phase_j += 1
            if want_tail and have_tail:
                return "tail"
            if fresh_left:
                return "fresh"
            return "tail" if have_tail else None
        # Slots used up: only tails recorded after the phase began (a length < e after warmup) remain.
        if have_tail:
            return "tail"
        return "fresh" if fresh_left else None


def _check_len(seq_len: Any, step: int, row_len: int) -> int:
    L = int(seq_len)
    if L != seq_len or not 1 <= L <= row_len:
        raise ValueError(f"plan_epoch: length_at({step}) = {seq_len!r}, expected an int in [1, {row_len}]")
    return L


class EpochPlanner:
    """Plan one rank's epoch: an iterator of :class:`BatchPlan`, one per step (alias :data:`plan_epoch`).

    Args:
        num_fresh_batches: fresh batches this rank serves this epoch (may be ``None`` if
            ``fresh_rows`` is given).
        rows_per_batch: device batch size ``B`` (rows per step on this rank; same on every rank).
        row_len: full row length ``e``.
        length_at: paced length at a *global* step: a callable, or the list from
            ``PacingSchedule.plan`` (steps past its end use its last value).
        first_step: global step at which this epoch starts.
        policy: ``"off"``, ``"deferred"`` or ``"interleave"``.
        warmup_end_step: first global step with length ``e`` (deferred serves no tail before it).
            Default: derived from a list ``length_at``; for a callable, the first step of the
            epoch whose length is ``e``.
        ledger: the ledger carried from the previous epoch (copied, not modified).
        fresh_rows: the rank's fresh row ids in order, ``[num_fresh_batches * B]`` or
            ``[num_fresh_batches, B]``; default ``fresh_index * B + arange(B)``.

    Attributes: ``ledger`` (the live ledger; after exhaustion, the one to carry into the next
    epoch), ``account`` (:class:`~slwdata.dataset.accounting.EpochAccount`), ``position``
    (batches planned so far),
    ``step`` (global step of the next batch), ``done``.

    Example:
        >>> pl = plan_epoch(6, 2, 16, [8, 8, 8, 16], policy="interleave")
        >>> [p.kind[0] for p in pl], pl.account.tokens_carried_out
        (['f', 'f', 't', 'f', 'f', 'f', 'f'], 16)
        >>> pl = plan_epoch(3, 2, 16, [8, 16, 16, 16], policy="interleave")
        >>> pl.skip(1); next(pl).kind, pl.position, pl.step
        ('fresh', 2, 2)
    """

    def __init__(
        self,
        num_fresh_batches: Optional[int],
        rows_per_batch: int,
        row_len: int,
        length_at: LengthAt,
        *,
        first_step: int = 0,
        policy: str = "deferred",
        warmup_end_step: Optional[int] = None,
        ledger: Optional[TailLedger] = None,
        fresh_rows: Any = None,
    ) -> None:
        if policy not in REUSE_POLICIES:
            raise ValueError(f"plan_epoch: policy must be one of {REUSE_POLICIES}, got {policy!r}")
        if int(rows_per_batch) < 1 or int(row_len) < 1:
            raise ValueError(f"plan_epoch: rows_per_batch={rows_per_batch} and row_len={row_len} must be >= 1")
        if int(first_step) < 0:
            raise ValueError(f"plan_epoch: first_step={first_step} must be >= 0")
        self.rows_per_batch = B = int(rows_per_batch)
        self.row_len = e = int(row_len)
        self.first_step = int(first_step)
        self.policy = policy
        if fresh_rows is not None:
            fr = np.asarray(fresh_rows)
            if not np.issubdtype(fr.dtype, np.integer):
                raise TypeError(f"plan_epoch: fresh_rows must be integer row ids, got dtype {fr.dtype}")
            fr = fr.astype(np.int64, copy=False).reshape(-1)
            if len(fr) % B:
                raise ValueError(
                    f"plan_epoch: {len(fr)} fresh rows is not a whole number of batches of {B} "
                    "(drop or pad the last partial batch before planning)"
                )
            if num_fresh_batches is None:
                num_fresh_batches = len(fr) // B
            elif len(fr) != int(num_fresh_batches) * B:
                raise ValueError(
                    f"plan_epoch: num_fresh_batches={num_fresh_batches} but fresh_rows has {len(fr)} rows "
                    f"({len(fr) // B} batches of {B})"
                )
            self._fresh_rows: Optional[np.ndarray] = fr
        else:
            if num_fresh_batches is None:
                raise ValueError("plan_epoch: give num_fresh_batches or fresh_rows")
            self._fresh_rows = None
        self.num_fresh_batches = int(num_fresh_batches)
        if self.num_fresh_batches < 0:
            raise ValueError(f"plan_epoch: num_fresh_batches={num_fresh_batches} must be >= 0")
        self._length = _as_length_fn(length_at)
        if warmup_end_step is None and not callable(length_at):
            warmup_end_step = warmup_end_from_lengths(length_at, e)
        self.warmup_end_step = None if warmup_end_step is None else int(warmup_end_step)
        # Own a copy: the caller's ledger is the epoch's starting state, which a resume replays from.
        self.ledger = ledger.copy() if ledger is not None else TailLedger()
        self.ledger.peak_entries = self.ledger.entries
        self.ledger.peak_tokens = self.ledger.tokens
        self._decider = _Decider(policy, self.num_fresh_batches, B * e, self.warmup_end_step, e)
        self.position = 0
        self.step = self.first_step
        self.done = False
        self._account = EpochAccount(
            policy=policy,
            row_len=e,
            rows_per_batch=B,
            first_step=self.first_step,
            tokens_carried_in=self.ledger.tokens,
        )
        self._finish_account()

    # ---- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[BatchPlan]:
        return self

    def __next__(self) -> BatchPlan:
        plan = self._advance(build=True)
        if plan is _DONE:
            raise StopIteration
        return plan  # type: ignore[return-value]

    def skip(self, n_batches: int) -> None:
        """Replay the next ``n_batches`` decisions without building plans (resume = replay).

        Raises ``ValueError`` if the epoch has fewer batches left.

        Example:
            >>> a = list(plan_epoch(5, 2, 16, [8] * 3 + [16]))
            >>> b = plan_epoch(5, 2, 16, [8] * 3 + [16]); b.skip(2)
            >>> [p.kind for p in b] == [p.kind for p in a[2:]]
            True
        """
        for i in range(int(n_batches)):
            if self._advance(build=False) is _DONE:
                raise ValueError(
                    f"EpochPlanner.skip: asked to skip {n_batches} batches but the epoch ended after {i} "
                    f"(it has {self.position} batches in all)"
                )

    def skip_next(self) -> bool:
        """Replay the next decision without building its plan; ``False`` once the epoch is over.

        Example:
            >>> pl = plan_epoch(1, 2, 16, [16]); pl.skip_next(), pl.skip_next(), pl.done
            (True, False, True)
        """
        return self._advance(build=False) is not _DONE

    def skip_to(self, step: int) -> None:
        """Fast-forward so the next plan is for global step ``step`` (``first_step <= step``).

        Example:
            >>> pl = plan_epoch(4, 2, 16, [8, 8, 16], first_step=0); pl.skip_to(3); next(pl).step
            3
        """
        if step < self.step:
            raise ValueError(
                f"EpochPlanner.skip_to({step}): already at step {self.step}; build a new planner to go back"
            )
        self.skip(step - self.step)

    def remaining_batches(self) -> int:
        """Batches left in this epoch, from a token-count dry run (no ledger copies)."""
        return _dry_run(
            self._decider_copy(),
            self._length,
            self.step,
            self.rows_per_batch,
            self.row_len,
            self.ledger.tokens,
            self.policy,
        )

    def _decider_copy(self) -> _Decider:
        d = _Decider.__new__(_Decider)
        d.__dict__.update(self._decider.__dict__)
        return d

    # ---- the simulation -------------------------------------------------------------------
    def _advance(self, build: bool) -> Any:
        # Returns the BatchPlan (None when build=False), or _DONE once the epoch is over.
        if self.done:
            return _DONE
        B, e, step = self.rows_per_batch, self.row_len, self.step
        L = _check_len(self._length(step), step, e)
        kind = self._decider.decide(step, L, self.ledger.tokens)
        if kind is None:
            self.done = True
            self._finish_account()
            return _DONE
        acct = self._account
        drop = e - L
        plan: Optional[BatchPlan] = None
        if kind == "fresh":
            fi = self._decider.fresh_done
            self._decider.fresh_done += 1
            if self._fresh_rows is not None:
                rows = self._fresh_rows[fi * B : (fi + 1) * B]
            else:
                rows = np.arange(fi * B, (fi + 1) * B, dtype=np.int64)
            if drop:
                if self.policy == "off":
                    acct.tokens_dropped += B * drop
                else:
                    # In row order, not batch order: the tails then lie shard by shard, and
                    # a tail batch reads each shard's share with one indexed read.
                    self.ledger._push_trusted(np.sort(rows), L, drop, B * drop)
                    acct.tokens_recorded += B * drop
            acct.fresh_batches += 1
            if build:
                plan = BatchPlan(step, self.position, "fresh", L, e, B, fresh_index=fi, rows=rows)
        else:
            taken = self.ledger.take(B * e)
            pieces = offsets = None
            if drop:
                pieces, offsets, prow, pbeg, pend = _split_rows(taken, e)
                # A tail row cut at L drops the suffix of its segment list: a partial piece, then whole ones.
                row0 = prow * e
                m = np.flatnonzero(pend - row0 > L)
                b = pbeg[m] - row0[m]
                cut = np.maximum(b, L)
                self.ledger._push_trusted(
                    pieces["row"][m], pieces["start"][m] + (cut - b), pend[m] - row0[m] - cut, B * drop
                )
                acct.tokens_recorded += B * drop
                acct.tokens_rerecorded += B * drop
            acct.tail_batches += 1
            if build:
                plan = BatchPlan(step, self.position, "tail", L, e, B, taken=taken, _pieces=pieces, _offsets=offsets)
        acct.tokens_trained += B * L
        acct.steps += 1
        self.position += 1
        self.step += 1
        return plan

    @property
    def account(self) -> EpochAccount:
        """Accounting so far (final once the planner is exhausted)."""
        self._finish_account()
        return self._account

    def _finish_account(self) -> None:
        acct, led = self._account, self.ledger
        acct.tokens_carried_out = led.tokens
        acct.carried_segments = led.entries
        acct.ledger_carried_bytes = led.nbytes
        acct.ledger_peak_segments = led.peak_entries
        acct.ledger_peak_bytes = led.peak_bytes
        acct.ledger_peak_tokens = led.peak_tokens

    def run(self) -> EpochAccount:
        """Plan the rest of the epoch without building plans; return the final account.

        Example:
            >>> plan_epoch(10, 4, 32, [8] * 5 + [32], policy="off").run().tokens_dropped
            480
        """
        while self._advance(build=False) is not _DONE:
            pass
        return self.account


# The functional name the docs and the dataset use; the class is the whole implementation.
plan_epoch = EpochPlanner


def _dry_run(
    decider: _Decider, length: Callable[[int], int], step: int, B: int, e: int, tokens: int, policy: str
) -> int:
    n = 0
    while True:
        L = _check_len(length(step), step, e)
        kind = decider.decide(step, L, tokens)
        if kind is None:
            return n
        if kind == "fresh":
            decider.fresh_done += 1
            if policy != "off":
                tokens += B * (e - L)
        else:
            tokens -= B * L
        n += 1
        step += 1


def count_epoch_batches(
    num_fresh_batches: int,
    rows_per_batch: int,
    row_len: int,
    length_at: LengthAt,
    *,
    first_step: int = 0,
    policy: str = "deferred",
    warmup_end_step: Optional[int] = None,
    carried_tokens: int = 0,
) -> int:
    """Number of batches :func:`plan_epoch` will yield, from token counts alone (cheap; for ``__len__``).

    Example:
        >>> count_epoch_batches(4, 2, 16, [8, 8, 16], policy="deferred")
        5
    """
    if policy not in REUSE_POLICIES:
        raise ValueError(f"count_epoch_batches: policy must be one of {REUSE_POLICIES}, got {policy!r}")
    fn = _as_length_fn(length_at)
    if warmup_end_step is None and not callable(length_at):
        warmup_end_step = warmup_end_from_lengths(length_at, int(row_len))
    d = _Decider(policy, int(num_fresh_batches), int(rows_per_batch) * int(row_len), warmup_end_step, int(row_len))
    return _dry_run(d, fn, int(first_step), int(rows_per_batch), int(row_len), int(carried_tokens), policy)
