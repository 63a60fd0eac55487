"""One rank's epochs as plans: the bound pacing, each epoch's planner and closing account, and
the replay that finds where an epoch starts (its global step and the tails carried into it).

Everything here is a deterministic function of token counts (the rank's fresh batches, the
pacing, the reuse policy), so every rank, DataLoader worker and resumed run replays the same
plans without reading a token. The dataset supplies the rank's batches and its rank.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np
from numpy.typing import NDArray

from slwdata.dataset.accounting import EpochAccount
from slwdata.dataset.ledger import TailLedger
from slwdata.dataset.plan import EpochPlanner, count_epoch_batches, plan_epoch

__all__ = ['RankEpochs']

RankBatches = Callable[[int], tuple[NDArray[np.int64], NDArray[np.int64]]]


class RankEpochs:
    """Plans, accounts and replays of one rank's epochs.

    Args:
        rank_batches: ``epoch -> (fresh batches [n, batch_size], ids of the final partial
            batch)`` in delivery order (``SLWDataset.rank_batches``).
        batch_size: rows per batch on this rank.
        row_len: the shards' row length.
        reuse: the tail policy while pacing is bound.
        rank: ``() -> this rank`` (asked when an account is closed).
    """

    def __init__(
        self, rank_batches: RankBatches, batch_size: int, row_len: int, reuse: str, rank: Callable[[], int]
    ) -> None:
        self.rank_batches = rank_batches
        self.batch_size = batch_size
        self.row_len = row_len
        self.reuse = reuse
        self.rank = rank
        self.pacing: Any = None
        self.rows_per_step: Optional[int] = None
        self.run_total: Any = None
        # Planned length per global step through the warmup (filled on first use).
        self.lengths: Optional[list[int]] = None
        # epoch -> (global step at its start, ledger carried into it).
        self.starts: dict[int, tuple[int, Optional[TailLedger]]] = {}

    def bind(self, schedule: Any, rows_per_step: Optional[int], run_total: Any = None) -> None:
        """Plan with ``schedule`` from now on (``None``: no pacing); forgets the replay."""
        self.pacing = schedule
        self.rows_per_step = rows_per_step if schedule is not None else None
        self.run_total = run_total
        self.lengths = None
        self.starts = {}

    @property
    def policy(self) -> str:
        """The effective tail policy: ``off`` while no pacing is bound (nothing is truncated)."""
        return self.reuse if self.pacing is not None else 'off'

    def seq_len_at(self, global_step: int) -> int:
        """The planned length of a global step (the row length without pacing)."""
        if self.pacing is None:
            return self.row_len
        if self.lengths is None:
            warm = self.pacing.warmup_steps(self.rows_per_step, total=self.run_total)
            self.lengths = self.pacing.plan(warm, self.rows_per_step, total=self.run_total)
        if global_step < len(self.lengths):
            return self.lengths[global_step]
        return self.row_len

    def warmup_end(self) -> int:
        """The first global step at full length (0 without pacing)."""
        if self.pacing is None:
            return 0
        self.seq_len_at(0)  # fills self.lengths, which stops at the warmup's end
        return len(self.lengths)

    def planner(self, epoch: int, step0: int, carried: Optional[TailLedger]) -> tuple[EpochPlanner, NDArray[np.int64]]:
        """``epoch``'s planner from global step ``step0`` with ``carried`` tails, and the ids
        of the rank's final partial batch."""
        fresh, leftover = self.rank_batches(epoch)
        planner = plan_epoch(
            len(fresh),
            self.batch_size,
            self.row_len,
            self.seq_len_at,
            first_step=step0,
            policy=self.policy,
            warmup_end_step=self.warmup_end(),
            ledger=carried,
            fresh_rows=fresh,
        )
        return planner, leftover

    def close(self, epoch: int, planner: EpochPlanner, leftover: NDArray[np.int64]) -> tuple[TailLedger, EpochAccount]:
        """The ledger to carry into the next epoch and this epoch's account.

        The rows of the final partial batch join the carried ledger as whole rows (or are
        dropped and counted when nothing is re-served)."""
        acct = planner.account
        acct.check()
        carried = planner.ledger.copy()
        leftover_tokens = len(leftover) * self.row_len
        dropped = acct.tokens_dropped
        if len(leftover) and self.policy != 'off':
            carried._push_trusted(leftover, 0, self.row_len, leftover_tokens)
        else:
            dropped += leftover_tokens
        account = replace(
            acct,
            epoch=epoch,
            rank=self.rank(),
            leftover_rows=int(len(leftover)),
            tokens_dropped=dropped,
            tokens_carried_out=carried.tokens,
            carried_segments=carried.entries,
            ledger_carried_bytes=carried.nbytes,
            ledger_peak_segments=max(acct.ledger_peak_segments, carried.entries),
            ledger_peak_bytes=max(acct.ledger_peak_bytes, carried.nbytes),
        )
        account.check()
        return carried, account

    def start(self, epoch: int) -> tuple[int, Optional[TailLedger]]:
        """(global step at the start of ``epoch``, ledger carried into it), by replaying the
        plans of the previous epochs from token counts (no token is read)."""
        if epoch in self.starts:
            return self.starts[epoch]
        known = [e for e in self.starts if e < epoch]
        e = max(known) if known else 0
        step0, carried = self.starts.get(e, (0, None))
        while e < epoch:
            planner, leftover = self.planner(e, step0, carried)
            planner.run()
            carried, account = self.close(e, planner, leftover)
            step0 += account.steps
            e += 1
            self.starts[e] = (step0, carried)
        self.starts[epoch] = (step0, carried)
        return step0, carried

    def account(self, epoch: int) -> EpochAccount:
        """Plan ``epoch`` without reading any token and return its account."""
        step0, carried = self.start(epoch)
        planner, leftover = self.planner(epoch, step0, carried)
        planner.run()
        return self.close(epoch, planner, leftover)[1]

    def num_batches(self, epoch: int) -> int:
        """Batches this rank yields in ``epoch`` (fresh plus tail batches)."""
        fresh, _ = self.rank_batches(epoch)
        if self.pacing is None:
            return len(fresh)
        step0, carried = self.start(epoch)
        return count_epoch_batches(
            len(fresh),
            self.batch_size,
            self.row_len,
            self.seq_len_at,
            first_step=step0,
            policy=self.policy,
            warmup_end_step=self.warmup_end(),
            carried_tokens=0 if carried is None else carried.tokens,
        )

    def finish(
        self, epoch: int, planner: EpochPlanner, leftover: NDArray[np.int64], resumed_at_step: int
    ) -> EpochAccount:
        """Close an iterated epoch and remember where the next one starts."""
        carried, account = self.close(epoch, planner, leftover)
        account.resumed_at_step = resumed_at_step
        self.starts[epoch + 1] = (account.first_step + account.steps, carried)
        return account
