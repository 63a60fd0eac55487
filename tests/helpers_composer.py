"""Tiny models, data and recorders for the Composer algorithm tests (CPU, seconds)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from composer.core import Callback, Event, State
from composer.loggers import Logger
from composer.models import ComposerModel
from torch.utils.data import DataLoader, Dataset

VOCAB = 64
ROWS = 4  # rows per batch in the algorithm tests
FULL = 64  # full row length in the algorithm tests


class TinyLM(ComposerModel):
    """A non-HF ComposerModel: embedding + linear next-token predictor.

    Accepts ``{"input_ids", "labels"?}`` dicts and ``(inputs, targets)`` tuples, and records the
    length of every batch it is run on (``self.seen``).
    """

    def __init__(self, vocab: int = VOCAB, dim: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.drop = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(dim, vocab)
        self.seen: list[int] = []

    @staticmethod
    def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, dict):
            x = batch["input_ids"]
            y = batch.get("labels", x)
        else:
            x, y = batch
        return x, y

    def forward(self, batch: Any) -> torch.Tensor:
        x, _ = self._split(batch)
        self.seen.append(int(x.shape[1]))
        return self.head(self.drop(self.emb(x)))

    def loss(self, outputs: torch.Tensor, batch: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        _, y = self._split(batch)
        return F.cross_entropy(outputs[:, :-1].reshape(-1, outputs.shape[-1]), y[:, 1:].reshape(-1))


class RandomRows(Dataset):
    """Deterministic random token rows of a fixed length, as dicts or (inputs, targets) tuples."""

    def __init__(
        self,
        n: int = 64,
        seq_len: int = 64,
        vocab: int = VOCAB,
        style: str = "dict",
        seed: int = 0,
        extra: dict | None = None,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.rows = torch.randint(0, vocab, (n, seq_len), generator=g)
        self.style = style
        self.seq_len = seq_len
        self.extra = extra or {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:
        row = self.rows[i]
        if self.style == "tuple":
            return row, row.clone()
        item = {"input_ids": row, "labels": row.clone(), "attention_mask": torch.ones_like(row)}
        item.update(self.extra)
        return item


def loader(n: int = 64, seq_len: int = 64, batch_size: int = 4, style: str = "dict", **kw: Any) -> DataLoader:
    return DataLoader(RandomRows(n, seq_len, style=style, **kw), batch_size=batch_size, shuffle=False)


class Recorder(Callback):
    """Records, per trained batch: the batch length, the LR used, and the timestamp after it."""

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.lrs: list[float] = []
        self.tokens_before: list[int] = []
        self.tokens_after: list[int] = []
        self.batches_after: list[int] = []

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BATCH_START:
            b = state.batch
            x = b["input_ids"] if isinstance(b, dict) else b[0]
            self.lengths.append(int(x.shape[1]))
            self.lrs.append(state.optimizers[0].param_groups[0]["lr"])
            self.tokens_before.append(int(state.timestamp.token))
        elif event == Event.BATCH_END:
            self.tokens_after.append(int(state.timestamp.token))
            self.batches_after.append(int(state.timestamp.batch))


def logged(in_memory_logger: Any, key: str) -> list[Any]:
    return [value for _, value in in_memory_logger.data.get(key, [])]


class PlanningRows(Dataset):
    """Stands in for the slwdata dataset: bind_pacing + slw_* keys per row."""

    def __init__(self, n=48, seq_len=FULL, wrong_by=0):
        self.rows = torch.randint(0, 64, (n, seq_len), generator=torch.Generator().manual_seed(1))
        self.seq_len = seq_len
        self.bound = None
        self.wrong_by = wrong_by

    def bind_pacing(self, schedule, rows_per_step, run_total=None):
        self.bound = (schedule, rows_per_step, run_total)
        self.lengths = schedule.plan(len(self.rows) // rows_per_step, rows_per_step, total=run_total)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        step = i // ROWS
        return {
            "input_ids": self.rows[i],
            "slw_seq_len": torch.tensor(self.lengths[step] + self.wrong_by),
            "slw_tail_rows": torch.tensor(1 if step % 2 else 0),
        }
