"""The token account of one rank's epoch: every token of its rows is trained, dropped or carried.

One type for the planner (:class:`~slwdata.dataset.plan.EpochPlanner` keeps it as it plans)
and for the dataset (:meth:`SLWDataset.epoch_account`, which adds the epoch, the rank and the
rows of the rank's final partial batch, and logs :meth:`EpochAccount.as_dict`).

Pure numpy: no torch, no streaming.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from slwdata.dataset.ledger import format_bytes

__all__ = ['EpochAccount']


@dataclass
class EpochAccount:
    """Token accounting of one rank's epoch (so far, or final once its planner is exhausted).

    Conservation, checked by :meth:`check`:
    ``fresh_rows * row_len + tokens_carried_in == tokens_trained + tokens_dropped +
    tokens_carried_out``, where ``fresh_rows`` counts the fresh batches' rows and the
    ``leftover_rows`` of the rank's final partial batch (carried as whole rows, or, with reuse
    ``"off"`` / no pacing, dropped). ``tokens_dropped`` is otherwise non-zero only with policy
    ``"off"``; with reuse on, a dropped tail is recorded in the ledger (``tokens_recorded``, of
    which ``tokens_rerecorded`` came from tail rows truncated again) and trained later or
    carried. ``epoch``, ``rank`` and ``resumed_at_step`` are set by the dataset.
    """

    policy: str
    row_len: int
    rows_per_batch: int
    first_step: int = 0
    epoch: Optional[int] = None
    rank: Optional[int] = None
    steps: int = 0
    fresh_batches: int = 0
    tail_batches: int = 0
    leftover_rows: int = 0
    tokens_trained: int = 0
    tokens_dropped: int = 0
    tokens_recorded: int = 0
    tokens_rerecorded: int = 0
    tokens_carried_in: int = 0
    tokens_carried_out: int = 0
    carried_segments: int = 0
    ledger_carried_bytes: int = 0
    ledger_peak_segments: int = 0
    ledger_peak_bytes: int = 0
    ledger_peak_tokens: int = 0
    resumed_at_step: Optional[int] = None

    @property
    def fresh_rows(self) -> int:
        return self.fresh_batches * self.rows_per_batch + self.leftover_rows

    @property
    def tail_rows(self) -> int:
        return self.tail_batches * self.rows_per_batch

    def check(self) -> None:
        """Raise ``AssertionError`` if a token was created or lost."""
        lhs = self.fresh_rows * self.row_len + self.tokens_carried_in
        rhs = self.tokens_trained + self.tokens_dropped + self.tokens_carried_out
        if lhs != rhs:
            raise AssertionError(f'tail accounting broken: {lhs} tokens in, {rhs} out ({self})')

    def as_dict(self) -> dict[str, Any]:
        """Plain data for logs and checkpoints: the fields and ``fresh_rows`` / ``tail_rows``
        (``resumed_at_step`` only once an iterated epoch set it)."""
        out = asdict(self)
        if out['resumed_at_step'] is None:
            del out['resumed_at_step']
        out['fresh_rows'], out['tail_rows'] = self.fresh_rows, self.tail_rows
        return out

    def summary(self) -> str:
        """One line for logs."""
        return (
            f'policy={self.policy} steps={self.steps:,} fresh_rows={self.fresh_rows:,} '
            f'tail_rows={self.tail_rows:,} trained={self.tokens_trained:,} '
            f'dropped={self.tokens_dropped:,} recorded={self.tokens_recorded:,} '
            f'carried={self.tokens_carried_out:,} ledger_peak={self.ledger_peak_segments:,} '
            f'segments / {format_bytes(self.ledger_peak_bytes)}'
        )
