"""``SequenceLengthWarmup``: the Composer algorithm (Li, Zhang, He, NeurIPS 2022).

Differences from ``composer.algorithms.SeqLengthWarmup`` (see docs/method_card.md):

* any :class:`~composer.models.ComposerModel`, dict or ``(inputs, targets)`` batches;
* durations in steps, samples, tokens or a fraction of a run given in batches, samples,
  tokens or epochs; short runs work (no division by a floored step count);
* the length reaches ``end`` exactly at ``T`` (no early finish through integer flooring);
* Composer's ``state.timestamp.token`` counts the tokens *trained*, after truncation, so
  token durations, token-wise LR schedules and the pacing itself use trained tokens.

How the token count is made right: the trainer counts a batch's tokens
(``DataSpec.get_num_tokens_in_batch``) *before* ``Event.AFTER_DATALOADER``, so truncating there
(as Composer's version does) is counted at full length. At ``Event.FIT_START`` we therefore
replace ``state.dataloader`` by :class:`PacedDataLoader`, which cuts each batch as the trainer
draws it. The trainer draws lazily, right after the previous step's timestamp update, so the
length is a function of the (all-reduced, hence rank-identical) timestamp of the step about to
run. Everything else (``len``, ``dataset``, ``sampler``, ``state_dict``...) is forwarded to the
wrapped loader; ``state.train_dataloader`` (used for checkpoints) is left alone.

Example::

    >>> from composer import Trainer
    >>> from slwdata.composer import SequenceLengthWarmup
    >>> slw = SequenceLengthWarmup(start=8, duration="0.3dur")        # doctest: +SKIP
    >>> Trainer(model=model, train_dataloader=loader, max_duration="5000000tok",
    ...         algorithms=[slw]).fit()                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Iterator, Mapping, Optional

import torch
from composer.core import Algorithm, Event, State, TimeUnit
from composer.loggers import Logger
from composer.utils import dist

from slwdata.pacing import PacingSchedule
from slwdata.truncate import (
    SLW_PREFIX,
    SLWMismatchError,
    TruncateInfo,
    check_inferred_end,
    check_planned_length,
    row_length,
    truncate_batch,
)

__all__ = ["SequenceLengthWarmup", "PacedDataLoader", "SLWMismatchError", "registry"]

log = logging.getLogger(__name__)


def _distributed_samplers(loader: Any) -> list[Any]:
    from torch.utils.data.distributed import DistributedSampler

    found = []
    batch_sampler = getattr(loader, "batch_sampler", None)
    for cand in (getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
        if isinstance(cand, DistributedSampler) and cand not in found:
            found.append(cand)
    return found


class PacedDataLoader:
    """Wraps the train dataloader; each batch is cut to the paced length as it is drawn.

    Attribute access falls through to the wrapped loader, so ``len()``, ``.dataset``,
    ``.batch_size``, ``.sampler``, ``state_dict()`` and ``load_state_dict()`` keep working.
    """

    def __init__(self, dataloader: Any, algorithm: "SequenceLengthWarmup", state: State) -> None:
        self.dataloader = dataloader
        self._algorithm = algorithm
        self._state = state

    def __iter__(self) -> Iterator[Any]:
        # The trainer only calls DistributedSampler.set_epoch on real DataLoaders; do it for it.
        for sampler in _distributed_samplers(self.dataloader):
            sampler.set_epoch(int(self._state.timestamp.epoch))
        # On resume without dataset resumption the trainer draws and discards the batches of the
        # epoch it already trained; their planned lengths belong to earlier steps, so they are
        # not checked against the current step's length.
        state = self._state
        replayed = 0 if "train" in (state.dataset_resumption or {}) else int(state.timestamp.batch_in_epoch)
        for index, batch in enumerate(self.dataloader):
            yield self._algorithm._pace(batch, state, check=index >= replayed)

    def __len__(self) -> int:
        if self._algorithm._epoch_len is not None:  # a planning dataset's count for this epoch
            return self._algorithm._epoch_len
        if not hasattr(self.dataloader, "__len__"):
            raise TypeError(f"{type(self.dataloader).__name__} has no len()")
        return len(self.dataloader)

    def __getattr__(self, name: str) -> Any:
        if name == "dataloader":  # not set yet (e.g. during unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.dataloader, name)


def _safe_len(loader: Any) -> Optional[int]:
    try:
        return len(loader)
    except (TypeError, NotImplementedError):
        return None


def _rows_per_device(loader: Any) -> Optional[int]:
    # A DataLoader batching rows, else a dataset that yields whole batches (SLWDataset with
    # DataLoader(batch_size=None)).
    for owner in (loader, getattr(loader, "batch_sampler", None), getattr(loader, "dataset", None)):
        batch_size = getattr(owner, "batch_size", None)
        if isinstance(batch_size, int) and not isinstance(batch_size, bool):
            return batch_size
    return None


def _slice_rows(batch: Any, n: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[:n] if batch.ndim >= 1 else batch
    if isinstance(batch, Mapping):
        return {k: _slice_rows(v, n) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice_rows(v, n) for v in batch)
    return batch


def _reduce_flag(state: State, value: int, op: str) -> int:
    flag = state.device.tensor_to_device(torch.tensor([value], dtype=torch.uint8))
    dist.all_reduce(flag, reduce_operation=op)
    return int(flag.item())


def _total_loss(loss: Any) -> torch.Tensor:
    if isinstance(loss, Mapping):
        return loss["total"] if "total" in loss else sum(loss.values())  # type: ignore[return-value]
    if isinstance(loss, (list, tuple)):
        return sum(loss)  # type: ignore[return-value]
    return loss


class _Counts:
    """What a right token counter may report for one cut batch (this rank), and what to do when
    Composer's counter reported something else."""

    GENERIC_FIX = (
        "give the Trainer a DataSpec whose get_num_tokens_in_batch counts the (cut) batch it is "
        "given, e.g. DataSpec(loader, get_num_tokens_in_batch=slwdata.truncate.count_tokens)"
    )

    def __init__(self, valid: list[int], fix: str) -> None:
        self.valid = valid
        self.fix = fix


def _token_counts(batch: Any, info: TruncateInfo) -> _Counts:
    """Counts of the cut batch under the conventions Composer's and llm-foundry's counters use:
    rows x length (``input_ids.numel()``), ``attention_mask.sum()``, ``total_tokens.sum()``."""
    valid = [info.rows * info.seq_len]
    if isinstance(batch, Mapping):
        for key in ("attention_mask", "total_tokens"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor):
                valid.append(int(value.sum()))
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, torch.Tensor)) for v in value):
                valid.append(int(sum(int(v) for v in value)))  # llm-foundry: one int per row
        if "input_ids" in batch:
            fix = (
                "the batch's input_ids were cut, so its DataSpec.get_num_tokens_in_batch reads something the "
                "cut does not change; " + _Counts.GENERIC_FIX
            )
        else:
            fix = (
                f"the batch has no 'input_ids' key (keys: {sorted(map(str, batch))}), which Composer's default "
                f"counter reads: name the token tensor 'input_ids', or {_Counts.GENERIC_FIX}"
            )
    else:
        fix = (
            f"Composer's default counter reads a dict batch's 'input_ids' key, and this batch is a "
            f"{type(batch).__name__}: use dict batches with 'input_ids', or {_Counts.GENERIC_FIX}"
        )
    return _Counts(valid, fix)


class SequenceLengthWarmup(Algorithm):
    """Train on short sequences first and grow the length to the full row length.

    Args:
        start: first length ``s`` (default 8; with stages, the first stage's length).
        end: full length ``e``; ``None`` reads it from the dataset (``seq_len``/``max_seq_len``)
            or the first batch.
        duration: warmup length ``T``: ``"0.3dur"`` (fraction of ``max_duration``), ``"1000ba"``,
            ``"2000sp"`` or ``"5000000tok"`` (trained tokens), an int (steps) or a float fraction
            (default ``"0.3dur"``; with stages, the last stage's start).
        kind, multiple, degree, stages, fn: see :class:`slwdata.pacing.PacingSchedule`.
        schedule: a ready :class:`PacingSchedule` (or its config dict); overrides the above.
        truncate: ``False`` keeps full-length batches (pops ``slw_*`` keys, logs the trained
            length, does not bind the dataset's tail planning): a control run with identical
            plumbing.
        preallocate: before the first step run one forward+backward at the full length (then
            zero the grads), so memory is reserved once and ``device_train_microbatch_size='auto'``
            is searched at the full length.
        keys: only cut these top-level batch keys (default: every sequence-shaped tensor).

    Logged every batch: ``slw/seq_len``, ``slw/trained_tokens``, ``slw/dropped_tokens``
    (cumulative, all ranks) and, with the slwdata dataset, ``slw/reserved_tokens``.
    """

    def __init__(
        self,
        start: Optional[int] = None,
        end: Optional[int] = None,
        duration: Any = None,
        kind: str = "linear",
        multiple: int = 8,
        degree: float = 2.0,
        stages: Any = None,
        fn: Any = None,
        schedule: Any = None,
        truncate: bool = True,
        preallocate: bool = True,
        keys: Optional[list[str]] = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            # YAML configs reach here as keyword arguments: name the typo and what is accepted.
            raise ValueError(f"unknown SequenceLengthWarmup option(s) {sorted(unknown)}; allowed: {_ALLOWED_KEYS}")
        pacing_args = {
            "start": (start, None),
            "end": (end, None),
            "duration": (duration, None),
            "kind": (kind, "linear"),
            "multiple": (multiple, 8),
            "degree": (degree, 2.0),
            "stages": (stages, None),
            "fn": (fn, None),
        }
        if schedule is not None:
            also = sorted(name for name, (value, default) in pacing_args.items() if value != default)
            if also:
                raise ValueError(
                    f"schedule= replaces the pacing options, which would be ignored: do not also pass "
                    f"{also} (put them in the schedule)"
                )
        if schedule is None:
            schedule = PacingSchedule(
                start=start,
                end=end,
                duration=duration,
                kind=kind,
                multiple=multiple,
                degree=degree,
                stages=stages,
                fn=fn,
            )
        elif isinstance(schedule, Mapping):
            schedule = PacingSchedule.from_config(schedule)
        elif not isinstance(schedule, PacingSchedule):
            raise TypeError(f"schedule must be a PacingSchedule or a config dict, got {type(schedule).__name__}")
        self.schedule: PacingSchedule = schedule
        self.truncate = truncate
        self.preallocate = preallocate
        self.keys = keys
        self.total: Optional[str] = None  # the run length, for fraction durations: "1000ba" / "..tok" / "..sp"
        self.seq_len: Optional[int] = None  # length of the batch being trained
        self.trained_tokens = 0  # cumulative, all ranks: rows * paced length (whatever Composer counts)
        self.dropped_tokens = 0  # cumulative, all ranks
        self.reserved_tokens = 0  # cumulative trained tokens that came from re-served tails, all ranks
        self._info: Optional[TruncateInfo] = None
        self._counts: Optional[_Counts] = None
        self._tail_rows = 0
        self._has_tail_meta = False
        self._full_batch: Any = None
        self._original_model: Any = None
        self._preallocated = False
        self._planning_dataset: Any = None  # an SLWDataset-like dataset whose epochs hold tail batches
        self._epoch_len: Optional[int] = None
        self._warned_token_count = False
        self._end_inferred = False  # end was read from the data (first batch), not given by the user

    def __repr__(self) -> str:
        return f"SequenceLengthWarmup(schedule={self.schedule!r}, truncate={self.truncate})"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SequenceLengthWarmup":
        """Build from a YAML mapping, e.g. ``{"start": 8, "duration": "0.3dur"}``."""
        unknown = sorted(str(k) for k in config if k not in _ALLOWED_KEYS)
        if unknown:
            raise ValueError(f"unknown SequenceLengthWarmup option(s) {unknown}; allowed: {_ALLOWED_KEYS}")
        return cls(**dict(config))

    # ------------------------------------------------------------------ events
    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, Event.FIT_START, Event.EPOCH_START, Event.AFTER_DATALOADER, Event.BATCH_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            # Before DDP/FSDP wrap it: the ComposerModel's own loss() is needed for pre-activation.
            self._original_model = state.model
        elif event == Event.FIT_START:
            self._fit_start(state)
        elif event == Event.EPOCH_START:
            self._set_epoch_len(state)
        elif event == Event.AFTER_DATALOADER:
            if self.preallocate and not self._preallocated and self._full_batch is not None:
                self._preallocate(state)
            self._full_batch = None
        elif event == Event.BATCH_END:
            self._batch_end(state, logger)

    def _run_total(self, state: State) -> Optional[str]:
        if self.schedule.duration.unit != "dur":
            return None
        max_duration = state.max_duration
        if max_duration is None:
            raise ValueError(f"duration {self.schedule.duration} is a fraction of the run, but max_duration is not set")
        unit, value = max_duration.unit, int(max_duration.value)
        if unit == TimeUnit.BATCH:
            return f"{value}ba"
        if unit == TimeUnit.SAMPLE:
            return f"{value}sp"
        if unit == TimeUnit.TOKEN:
            return f"{value}tok"
        if unit == TimeUnit.EPOCH:
            if state.dataloader_len is None:
                raise ValueError(
                    f"duration {self.schedule.duration} is a fraction of max_duration={max_duration}, but the train "
                    "dataloader has no length: give duration in 'ba', 'sp' or 'tok', or max_duration in those units"
                )
            return f"{value * int(state.dataloader_len)}ba"
        raise ValueError(f"cannot use a fraction duration with max_duration in {unit}")

    def _fit_start(self, state: State) -> None:
        self.total = self._run_total(state)
        loader = state.train_dataloader
        dataset = getattr(loader, "dataset", None)
        # Without truncation nothing is dropped, so the dataset must not plan tails for it.
        if self.truncate and dataset is not None and hasattr(dataset, "bind_pacing"):
            if self.schedule.end is None:
                end = getattr(dataset, "seq_len", None) or getattr(dataset, "max_seq_len", None)
                if not isinstance(end, int):
                    raise ValueError(
                        "SequenceLengthWarmup(end=None) could not read the row length from the dataset "
                        f"({type(dataset).__name__} has no int seq_len/max_seq_len): pass end="
                    )
                self.schedule = self.schedule.with_end(end)
                self._end_inferred = True
            rows = _rows_per_device(loader)
            if rows is None:
                raise ValueError(
                    "neither the train dataloader nor its dataset has an int batch_size: the dataset "
                    "cannot plan its tails"
                )
            fresh_len = _safe_len(loader)
            dataset.bind_pacing(self.schedule, rows_per_step=rows * dist.get_world_size(), run_total=self.total)
            # Composer fixed dataloader_len from the fresh-only length; a planning dataset's epoch
            # also holds tail batches (and their number changes with the carry), so follow its
            # count per epoch -- unless the user cut the epoch short (train_subset_num_batches).
            user_cut = (
                state.dataloader_len is not None and fresh_len is not None and int(state.dataloader_len) != fresh_len
            )
            if hasattr(dataset, "num_batches") and not user_cut:
                self._planning_dataset = dataset
        if state.dataloader is not None and not isinstance(state.dataloader, PacedDataLoader):
            length = state.dataloader_len
            state.set_dataloader(
                PacedDataLoader(state.dataloader, self, state),
                state.dataloader_label or "train",
                dataloader_len=int(length) if length is not None else -1,
            )
        self._set_epoch_len(state)  # also on a mid-epoch resume, where no EPOCH_START runs

    def _set_epoch_len(self, state: State) -> None:
        if self._planning_dataset is None or state.dataloader is None:
            return
        self._epoch_len = int(self._planning_dataset.num_batches(int(state.timestamp.epoch)))
        state.dataloader_len = self._epoch_len

    # ------------------------------------------------------------------ per batch
    def length_at(self, state: State) -> int:
        """The paced length for the step about to run (a function of the timestamp only)."""
        ts = state.timestamp
        return self.schedule.seq_len(step=int(ts.batch), samples=int(ts.sample), tokens=int(ts.token), total=self.total)

    def _pace(self, batch: Any, state: State, check: bool = True) -> Any:
        full = row_length(batch)
        if self.schedule.end is None:
            self.schedule = self.schedule.with_end(full)
            self._end_inferred = True
        elif self._end_inferred:
            check_inferred_end(full, self.schedule.end, int(state.timestamp.batch))
        paced = min(self.length_at(state), full)
        cut = paced if self.truncate else full
        out, info = truncate_batch(batch, cut, self.keys, row_len=full, return_info=True)
        planned = info.meta.get(SLW_PREFIX + "seq_len")
        if planned is not None and check and self.truncate:
            check_planned_length(planned, paced, int(state.timestamp.batch), "the trainer's schedule")
        self._has_tail_meta = SLW_PREFIX + "tail_rows" in info.meta
        tail = info.meta.get(SLW_PREFIX + "tail_rows", 0)
        tail_t = torch.as_tensor(tail).flatten()
        # One count per batch, possibly repeated per row by the default collate function.
        self._tail_rows = int(tail_t[0]) if tail_t.numel() else 0
        self._info = info
        self._counts = _token_counts(out, info)
        self.seq_len = info.seq_len
        if self.preallocate and not self._preallocated:
            self._full_batch = batch
        return out

    def _batch_end(self, state: State, logger: Logger) -> None:
        info = self._info
        if info is None:
            return
        rows_global = (
            int(state.timestamp.sample) - int(state.previous_timestamp.sample)
            if state.previous_timestamp is not None
            else info.rows * dist.get_world_size()
        )
        tokens_step = (
            int(state.timestamp.token) - int(state.previous_timestamp.token)
            if state.previous_timestamp is not None
            else 0
        )
        self.trained_tokens += info.seq_len * rows_global
        self.dropped_tokens += (info.row_len - info.seq_len) * rows_global
        # Lockstep (docs/DESIGN.md): every rank re-serves the same number of tail rows per step.
        self.reserved_tokens += self._tail_rows * info.seq_len * dist.get_world_size()
        self._check_token_count(
            tokens_step, info.seq_len * rows_global, info.row_len * rows_global, state, counts=self._counts
        )
        metrics = {
            "slw/seq_len": info.seq_len,
            "slw/trained_tokens": self.trained_tokens,
            "slw/dropped_tokens": self.dropped_tokens,
        }
        if self._has_tail_meta:
            metrics["slw/reserved_tokens"] = self.reserved_tokens
        logger.log_metrics(metrics)
        self._info = None

    def _tokens_needed(self, state: State) -> bool:
        """Whether a wrong token count would change what is trained or when the run stops."""
        max_duration = state.max_duration
        return (
            self.schedule.unit == "tok"
            or (self.total or "").endswith("tok")
            or (max_duration is not None and max_duration.unit == TimeUnit.TOKEN)
        )

    def _check_token_count(
        self, counted: int, expected: int, full: int, state: State, counts: Optional["_Counts"] = None
    ) -> None:
        if counted == expected or self._warned_token_count:
            return
        if counts is not None and counts.valid:
            local = torch.tensor(counts.valid, dtype=torch.int64)
            if dist.get_world_size() > 1:  # every rank reaches BATCH_END; the counts are per rank
                dist.all_reduce(local, reduce_operation="SUM")
            if counted in local.tolist():  # e.g. attention_mask.sum() of a padded batch, after the cut
                return
        fix = counts.fix if counts is not None else _Counts.GENERIC_FIX
        if self._tokens_needed(state):
            # The pacing, the stop (max_duration in tokens) or both would run on a wrong clock; with
            # a 0 count and max_duration in tokens the run would never end.
            where = []
            if self.schedule.unit == "tok" or (self.total or "").endswith("tok"):
                where.append(f"the schedule's duration ({self.schedule.duration}, run total {self.total}) is in tokens")
            if state.max_duration is not None and state.max_duration.unit == TimeUnit.TOKEN:
                where.append(f"max_duration ({state.max_duration}) is in tokens")
            raise ValueError(
                f"Composer counted {counted} tokens for a batch of {expected} trained tokens ({full} before the cut), "
                f"but {' and '.join(where)}: {fix}"
            )
        if counted == 0:
            # Composer does not count tokens for this batch type: harmless, nothing here uses tokens.
            return
        self._warned_token_count = True
        warnings.warn(
            f"Composer counted {counted} tokens for a batch of {expected} trained tokens ({full} before the cut); "
            "so timestamp.token and token-wise LR schedules will be off: " + fix,
            stacklevel=2,
        )

    # ------------------------------------------------------------------ memory pre-activation
    def _loss_model(self, state: State) -> Any:
        model = self._original_model if self._original_model is not None else state.model
        while not hasattr(model, "loss") and hasattr(model, "module"):  # DDP wrapper
            model = model.module
        return model

    def _preallocate(self, state: State) -> None:
        """Forward + backward at the full length once, then zero grads, leaving no trace.

        The RNG states are restored so dropout etc. of the real first step are unchanged, and so
        are the model's buffers (BatchNorm's running statistics and ``num_batches_tracked``),
        which a training-mode forward updates.
        """
        from composer.core.precision import get_precision_context

        full_batch = self._full_batch
        self._full_batch = None
        if self._info is not None and self._info.seq_len >= self._info.row_len:
            self._preallocated = True  # the first step already runs at full length
            return
        full_batch, _ = truncate_batch(full_batch, 10**12, return_info=True)  # pops slw_* keys only
        try:
            from composer.trainer.trainer import _adjust_device_train_microbatch_size, _is_cuda_oom
        except ImportError:  # private helpers; fall back to no OOM search
            _adjust_device_train_microbatch_size, _is_cuda_oom = None, None  # type: ignore[assignment]
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        buffers = [(b, b.detach().clone()) for b in state.model.buffers()]
        auto = bool(getattr(state, "auto_microbatching", False)) and _is_cuda_oom is not None
        try:
            while True:
                mb = state.device_train_microbatch_size
                inputs = _slice_rows(full_batch, mb) if isinstance(mb, int) and mb > 0 else full_batch
                inputs = state.device.batch_to_device(inputs)
                oom = 0
                try:
                    with get_precision_context(state.precision, state.precision_config):
                        outputs = state.model(inputs)
                        loss = _total_loss(self._loss_model(state).loss(outputs, inputs))
                    if auto:
                        # A rank that ran out of memory in forward meets this reduction from its
                        # except branch below; skip backward everywhere rather than hang in DDP.
                        if _reduce_flag(state, 0, "MAX"):
                            _reduce_flag(state, 0, "MIN")
                            raise RuntimeError("CUDA out of memory encountered on a different rank")
                        _reduce_flag(state, 0, "MIN")
                    loss.backward()
                except RuntimeError as e:
                    if auto and _is_cuda_oom(e):
                        oom = 1
                    else:
                        raise
                finally:
                    outputs = loss = None
                    for optimizer in state.optimizers:
                        optimizer.zero_grad(set_to_none=True)
                    state.model.zero_grad(set_to_none=True)
                if auto:
                    # Keep reducing until every rank is past its forward/backward (same protocol
                    # as Composer's trainer), then agree whether anyone ran out of memory.
                    finished = False
                    while not finished:
                        oom = _reduce_flag(state, oom, "MAX")
                        finished = _reduce_flag(state, 1, "MIN") == 1
                if oom:
                    _adjust_device_train_microbatch_size(state)
                    continue
                break
        finally:
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            with torch.no_grad():
                for buf, saved in buffers:
                    buf.copy_(saved)
        self._preallocated = True

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd.update(
            {
                "schedule": self.schedule.to_config(allow_callable=True) if self.schedule.kind != "callable" else None,
                "trained_tokens": self.trained_tokens,
                "dropped_tokens": self.dropped_tokens,
                "reserved_tokens": self.reserved_tokens,
            }
        )
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trained_tokens = int(state.get("trained_tokens", 0))
        self.dropped_tokens = int(state.get("dropped_tokens", 0))
        self.reserved_tokens = int(state.get("reserved_tokens", 0))
        saved = state.get("schedule")
        if saved and self.schedule.end is None and saved.get("end") is not None:
            self.schedule = self.schedule.with_end(int(saved["end"]))
            self._end_inferred = True


_ALLOWED_KEYS = [
    "start",
    "end",
    "duration",
    "kind",
    "multiple",
    "degree",
    "stages",
    "fn",
    "schedule",
    "truncate",
    "preallocate",
    "keys",
]

#: Name -> class, for config systems (llm-foundry reads the ``llmfoundry_algorithms`` entry point).
registry: dict[str, type] = {"slw": SequenceLengthWarmup, "sequence_length_warmup": SequenceLengthWarmup}
