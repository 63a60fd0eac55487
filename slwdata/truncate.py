"""Cut a batch to the paced sequence length: the plain-PyTorch path of Sequence Length Warmup.

Every sequence-shaped tensor (``ndim >= 2`` and ``shape[1]`` equal to the batch's row length:
``input_ids``, ``labels``, ``attention_mask``, ``sequence_id``, ``position_ids``...) is cut to
``[:, :seq_len]`` and made contiguous, so code that calls ``.view()`` on it (Composer's
``LanguageCrossEntropy``, Hugging Face losses, MPT) works; the copy costs little next to a step
(``benchmarks/bench_algorithm.py``). Per-row token counts that collators put in a batch
(llm-foundry's ``total_tokens`` and ``loss_generating_tokens``) are recomputed for the cut, so a
counter that reads them counts what is trained. Keys starting with ``slw_`` are dataset metadata
(see docs/DESIGN.md): they are removed from the batch and handed back in :class:`TruncateInfo`.

Example (a training loop without Composer):

    >>> import torch
    >>> from slwdata.pacing import PacingSchedule
    >>> sched = PacingSchedule(start=8, end=32, duration="4ba")
    >>> batch = {"input_ids": torch.zeros(2, 32, dtype=torch.long), "labels": torch.zeros(2, 32)}
    >>> short, n = slw_step(batch, step=1, schedule=sched)
    >>> n, tuple(short["input_ids"].shape), tuple(short["labels"].shape)
    (8, (2, 8), (2, 8))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from slwdata.pacing import PacingSchedule

# What a user imports; the algorithm's checks (row_length, check_inferred_end, ...) stay importable.
__all__ = [
    "truncate_batch",
    "slw_step",
    "PlainSLW",
    "TruncateInfo",
    "SLWMismatchError",
    "count_tokens",
]

SLW_PREFIX = "slw_"
#: Label value that losses ignore (PyTorch's and Hugging Face's default ``ignore_index``).
IGNORE_INDEX = -100


class SLWMismatchError(RuntimeError):
    """The dataset planned a different length than the trainer's (or loop's) schedule gives."""


def check_planned_length(planned: Any, paced: int, step: int, who: str) -> None:
    """Refuse a batch whose ``slw_seq_len`` (the dataset's plan) differs from ``paced``.

    A silent mismatch would cut steps at lengths the dataset had not planned and record tails
    for cuts that never happened.
    """
    import torch

    values = torch.as_tensor(planned).flatten().unique().tolist()
    if values != [paced]:
        raise SLWMismatchError(
            f"at step {step} the dataset planned length {values[0] if len(values) == 1 else values} but "
            f"{who} gives {paced}: the dataset was bound to a different schedule, batch size, "
            "world size or run length than the training loop uses"
        )


def check_inferred_end(full: int, end: int, step: int) -> None:
    """Refuse a batch longer than an ``end`` that was read from the first batch.

    With ``end=None`` the full length is taken from the first batch and kept; a later, longer
    batch (a variable-length collator) would otherwise be cut to that first length in silence.
    """
    if full > end:
        raise ValueError(
            f"batch at step {step} has length {full}, longer than the end length {end} inferred from the "
            "first batch: Sequence Length Warmup needs fixed-length rows. Pack or pad rows to one length, "
            "or pass end= (the full row length) explicitly"
        )


@dataclasses.dataclass
class TruncateInfo:
    """What :func:`truncate_batch` did to one batch (on this process)."""

    row_len: int
    seq_len: int
    rows: int
    dropped_tokens: int
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def kept_tokens(self) -> int:
        return self.rows * self.seq_len


def _is_seq_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "ndim") and x.ndim >= 2


def _first_seq_tensor(batch: Any) -> Any:
    if _is_seq_tensor(batch):
        return batch
    if isinstance(batch, Mapping):
        if "input_ids" in batch and _is_seq_tensor(batch["input_ids"]):
            return batch["input_ids"]
        items: Iterable[Any] = (v for k, v in batch.items() if not str(k).startswith(SLW_PREFIX))
    elif isinstance(batch, (list, tuple)):
        items = batch
    else:
        return None
    for value in items:
        found = _first_seq_tensor(value)
        if found is not None:
            return found
    return None


def row_length(batch: Any) -> int:
    """The batch's row length (its rows as stored, before any cut): ``input_ids.shape[1]``, else the first 2-D tensor's.

    Raises:
        ValueError: if the batch holds no tensor with at least two dimensions.
    """
    ref = _first_seq_tensor(batch)
    if ref is None:
        raise ValueError(
            f"cannot find a sequence-shaped tensor ([rows, length, ...]) in a batch of type {type(batch).__name__}; "
            "Sequence Length Warmup needs input_ids (or the first tensor of an (inputs, targets) tuple) to be 2-D"
        )
    return int(ref.shape[1])


def _cut(obj: Any, full: int, seq_len: int, keys: frozenset[str] | None, meta: dict[str, Any], top: bool) -> Any:
    if _is_seq_tensor(obj):
        if obj.shape[1] != full or seq_len >= full:
            return obj
        cut = obj[:, :seq_len]
        return cut.contiguous() if hasattr(cut, "contiguous") else cut.copy()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and k.startswith(SLW_PREFIX):
                meta[k] = v
            elif keys is not None and top and k not in keys:
                out[k] = v
            else:
                out[k] = _cut(v, full, seq_len, keys, meta, top=False)
        if top and seq_len < full:
            _recount_rows(obj, out, seq_len)
        if type(obj) is dict:
            return out
        try:  # keep dict subclasses such as transformers' BatchEncoding
            return type(obj)(out)
        except TypeError:
            return out
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_cut(v, full, seq_len, keys, meta, top) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cut(v, full, seq_len, keys, meta, top) for v in obj)
    return obj


def _recount_rows(full_batch: Mapping[str, Any], out: dict[str, Any], seq_len: int) -> None:
    """Recompute the per-row token counts a collator stored, for the cut batch ``out``.

    llm-foundry's collators store ``total_tokens`` (non-padding tokens of a row) and
    ``loss_generating_tokens`` (labels after the one-token shift that are not ``-100``), one
    int per row in a list (or a tensor), which its token counter sums; left at their full-length
    values they would count tokens that are no longer trained.
    """
    import torch

    for key in ("total_tokens", "loss_generating_tokens"):
        old = full_batch.get(key)
        if old is None or isinstance(old, (int, float)):
            continue
        if key == "total_tokens":
            mask = out.get("attention_mask")
            if mask is not None and hasattr(mask, "shape"):
                new = mask.reshape(mask.shape[0], -1).sum(dim=1)
            else:  # no mask: padding can only sit past the real tokens, so cap each row's count
                new = torch.clamp(torch.as_tensor(old), max=seq_len)
        else:
            labels = out.get("labels")
            if labels is None or not hasattr(labels, "shape"):
                raise ValueError(
                    "the batch has 'loss_generating_tokens' but no 'labels' to recount them from after the cut: "
                    "keep 'labels' in the batch (or drop 'loss_generating_tokens')"
                )
            new = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)
        if isinstance(old, (list, tuple)):
            out[key] = type(old)(int(v) for v in new.flatten().tolist())
        else:
            old_t = torch.as_tensor(old)
            out[key] = new.to(dtype=old_t.dtype).reshape(old_t.shape) if new.numel() == old_t.numel() else new


def count_tokens(batch: Any) -> int:
    """Tokens in a (cut) batch: ``attention_mask.sum()``, else rows x length of ``input_ids``,
    else of the first sequence-shaped tensor (``(inputs, targets)`` tuples).

    For Composer loaders whose batches its default counter cannot read (tuples, dicts without
    ``input_ids``): ``DataSpec(loader, get_num_tokens_in_batch=count_tokens)``.
    """
    if isinstance(batch, Mapping):
        mask = batch.get("attention_mask")
        if mask is not None and hasattr(mask, "sum"):
            return int(mask.sum())
        if isinstance(batch.get("total_tokens"), (list, tuple)) or hasattr(batch.get("total_tokens"), "sum"):
            return int(sum(int(v) for v in batch["total_tokens"]))
    ref = _first_seq_tensor(batch)
    if ref is None:
        raise ValueError(f"cannot count tokens: no sequence-shaped tensor in a batch of type {type(batch).__name__}")
    return int(ref.shape[0]) * int(ref.shape[1])


def truncate_batch(
    batch: Any,
    seq_len: int,
    keys: Iterable[str] | None = None,
    *,
    row_len: int | None = None,
    return_info: bool = False,
) -> Any:
    """Cut every sequence-shaped tensor of ``batch`` to ``seq_len`` (contiguous copies).

    Args:
        batch: a tensor, a dict (``input_ids``, ``labels``, ...), or a tuple/list such as
            ``(inputs, targets)``; nested containers are walked.
        seq_len: the length to keep. A batch already no longer than that is left as is.
        keys: for dict batches, only these top-level keys are cut (default: every tensor whose
            dim 1 equals the row length).
        row_len: the row length; default :func:`row_length` of the batch.
        return_info: also return a :class:`TruncateInfo` (dropped tokens, popped ``slw_*`` keys).

    Returns:
        The truncated batch, or ``(batch, info)`` with ``return_info=True``.

    Example:
        >>> import torch
        >>> x, y = torch.arange(12).view(2, 6), torch.arange(12).view(2, 6)
        >>> (x8, y8), info = truncate_batch((x, y), 4, return_info=True)
        >>> x8.tolist(), info.dropped_tokens
        ([[0, 1, 2, 3], [6, 7, 8, 9]], 4)
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    ref = _first_seq_tensor(batch)
    if row_len is None:
        row_len = row_length(batch)
    rows = int(ref.shape[0]) if ref is not None else 0
    keep = min(seq_len, row_len)
    meta: dict[str, Any] = {}
    key_set = frozenset(keys) if keys is not None else None
    out = _cut(batch, row_len, keep, key_set, meta, top=True)
    if not return_info:
        return out
    return out, TruncateInfo(
        row_len=row_len, seq_len=keep, rows=rows, dropped_tokens=rows * (row_len - keep), meta=meta
    )


def slw_step(
    batch: Any,
    step: int,
    schedule: PacingSchedule,
    *,
    samples: int = 0,
    tokens: int = 0,
    total: Any = None,
    keys: Iterable[str] | None = None,
) -> tuple[Any, int]:
    """Truncate ``batch`` to the schedule's length at this point of training.

    ``samples``/``tokens`` are the *trained* (global) counts so far, needed when the schedule's
    duration is in samples or tokens. Returns ``(batch, seq_len)``. A schedule without ``end``
    takes the batch's row length. For a loop that keeps the counters for you see
    :class:`PlainSLW`.
    """
    full = row_length(batch)
    if schedule.end is None:
        schedule = schedule.with_end(full)
    seq_len = min(schedule.seq_len(step=step, samples=samples, tokens=tokens, total=total), full)
    return truncate_batch(batch, seq_len, keys, row_len=full), seq_len


class PlainSLW:
    """Sequence Length Warmup for a hand-written PyTorch loop: counts trained steps/samples/tokens.

    ``world_size`` multiplies this process's rows and tokens so progress is global; every rank
    must see the same row count per step (as with a ``DistributedSampler`` and ``drop_last``).

    With ``dataset=`` (an :class:`~slwdata.dataset.SLWDataset`) the schedule is given once: it
    is bound to the dataset here (``rows_per_step = dataset.batch_size * world_size``), so the
    dataset plans the same cuts and re-serves their tails. Every batch that carries the
    dataset's plan (``slw_seq_len``) is checked against this loop's length: a mismatch raises
    :class:`SLWMismatchError` naming both lengths.

    Example:
        >>> import torch
        >>> slw = PlainSLW(PacingSchedule(start=8, end=16, duration="32tok"))
        >>> [tuple(slw(torch.zeros(2, 16, dtype=torch.long)).shape) for _ in range(3)]
        [(2, 8), (2, 8), (2, 16)]
        >>> slw.trained_tokens, slw.dropped_tokens
        (64, 32)
    """

    def __init__(
        self,
        schedule: PacingSchedule,
        total: Any = None,
        world_size: int = 1,
        keys: Iterable[str] | None = None,
        dataset: Any = None,
    ):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if dataset is not None:
            if schedule.end is None:
                schedule = schedule.with_end(int(dataset.seq_len))
            dataset.bind_pacing(schedule, rows_per_step=int(dataset.batch_size) * world_size, run_total=total)
        self.schedule = schedule
        self.total = total
        self.world_size = world_size
        self.keys = keys
        self.step = 0
        self.samples = 0
        self.trained_tokens = 0
        self.dropped_tokens = 0
        self.last_info: TruncateInfo | None = None
        self._end_inferred = False

    def __call__(self, batch: Any) -> Any:
        full = row_length(batch)
        if self.schedule.end is None:
            self.schedule = self.schedule.with_end(full)
            self._end_inferred = True
        elif self._end_inferred:
            check_inferred_end(full, self.schedule.end, self.step)
        seq_len = self.schedule.seq_len(
            step=self.step, samples=self.samples, tokens=self.trained_tokens, total=self.total
        )
        out, info = truncate_batch(batch, seq_len, self.keys, row_len=full, return_info=True)
        planned = info.meta.get(SLW_PREFIX + "seq_len")
        if planned is not None:
            check_planned_length(planned, info.seq_len, self.step, "PlainSLW's schedule")
        self.last_info = info
        self.step += 1
        self.samples += info.rows * self.world_size
        self.trained_tokens += info.kept_tokens * self.world_size
        self.dropped_tokens += info.dropped_tokens * self.world_size
        return out

    def state_dict(self) -> dict[str, int]:
        return {
            "step": self.step,
            "samples": self.samples,
            "trained_tokens": self.trained_tokens,
            "dropped_tokens": self.dropped_tokens,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        for key in ("step", "samples", "trained_tokens", "dropped_tokens"):
            setattr(self, key, int(state[key]))
