"""The llm-foundry dataloader ``slw``: an :class:`~slwdata.dataset.SLWDataset` train loader from YAML alone.

slwdata registers :func:`build_slw_dataloader` under llm-foundry's ``llmfoundry_dataloaders``
entry point as ``slw``, so a training YAML enables tail reuse with no plugin package::

    train_loader:
      name: slw
      dataset: {local: shards/train, shuffle: true, reuse: deferred}
      num_workers: 2

llm-foundry calls the builder with the ``train_loader`` keys plus its ``tokenizer`` and the device
batch size. The keys users already write for the ``text`` loader are accepted where they mean
the same here; the others are refused by name with the reason (see :data:`TEXT_KEYS_REFUSED`).
The batches carry ``input_ids`` and ``labels`` (what llm-foundry's causal LMs train on) and are
counted by llm-foundry's own token counter; resumption goes through Composer checkpoints
(the loader is a ``StreamingDataLoader``).
"""

from __future__ import annotations

from typing import Any, Optional

from slwdata.dataset import SLWDataset, make_dataloader
from slwdata.dataset.dataset import REUSE_POLICIES
from slwdata.dataset.transport import TRANSFER_MODES

__all__ = ["build_slw_dataloader", "DATASET_KEYS", "LOADER_KEYS", "TEXT_KEYS_REFUSED"]

#: ``dataset:`` keys passed to ``streaming.StreamingDataset`` as they are (the ``text`` loader's too).
STREAMING_KEYS = frozenset(
    {
        "remote",
        "local",
        "split",
        "download_retry",
        "download_timeout",
        "validate_hash",
        "keep_zip",
        "epoch_size",
        "predownload",
        "cache_limit",
        "partition_algo",
        "num_canonical_nodes",
        "shuffle",
        "shuffle_algo",
        "shuffle_seed",
        "shuffle_block_size",
        "sampling_method",
        "sampling_granularity",
        "batching_method",
        "allow_unsafe_types",
        "replication",
    }
)
#: ``dataset:`` keys of SLWDataset itself.
SLW_KEYS = frozenset({"reuse", "column", "output_dtype", "bytes_dtype", "prefetch_batches", "clean_stale_shm"})
#: Every ``dataset:`` key accepted (``streams`` and ``max_seq_len`` are handled here).
DATASET_KEYS = STREAMING_KEYS | SLW_KEYS | {"streams", "max_seq_len"}
#: ``train_loader:`` keys besides ``name`` and ``dataset``.
LOADER_KEYS = frozenset(
    {
        "num_workers",
        "drop_last",
        "pin_memory",
        "prefetch_factor",
        "persistent_workers",
        "timeout",
        "transfer",
        "addresses_per_item",
    }
)
#: ``text`` loader keys that have no meaning here, with the reason given to the user.
TEXT_KEYS_REFUSED = {
    "mlm_probability": "SLW trains causal LMs on fixed-length rows; masked-LM batches are not supported",
    "eos_token_id": "sequence_id (attention within documents) is not built by the slw loader; drop the key",
    "bos_token_id": "sequence_id (attention within documents) is not built by the slw loader; drop the key",
    "token_encoding_type": "the token dtype is read from the shards (set output_dtype to change what is served)",
    "tokenizer_name": "the shards are already tokenized; the model's tokenizer comes from the YAML's tokenizer",
}


def _refuse_unknown(keys: Any, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in keys if k not in allowed)
    if not unknown:
        return
    reasons = [f"{k} ({TEXT_KEYS_REFUSED[k]})" for k in unknown if k in TEXT_KEYS_REFUSED]
    plain = [k for k in unknown if k not in TEXT_KEYS_REFUSED]
    parts = []
    if plain:
        parts.append(f"unknown key(s) {plain}")
    if reasons:
        parts.append("not supported: " + "; ".join(reasons))
    raise ValueError(f"slw dataloader, {where}: {', '.join(parts)}. Allowed: {sorted(allowed)}")


def _token_counter() -> Any:
    """llm-foundry's own token counter (what its ``text`` loader uses), else slwdata's."""
    try:
        from llmfoundry.data.utils import get_tokens_per_batch_func
    except ImportError:
        from slwdata.truncate import count_tokens

        return count_tokens
    return get_tokens_per_batch_func()


def build_slw_dataloader(
    tokenizer: Any,
    device_batch_size: int,
    dataset: dict[str, Any],
    num_workers: int = 0,
    drop_last: bool = True,
    pin_memory: bool = True,
    prefetch_factor: Optional[int] = 2,
    persistent_workers: bool = False,
    timeout: float = 0,
    transfer: str = "addresses",
    addresses_per_item: int = 8,
    **unknown: Any,
) -> Any:
    """Build the ``slw`` train loader: a Composer ``DataSpec`` over ``make_dataloader(SLWDataset(...))``.

    Args:
        tokenizer: llm-foundry's tokenizer (unused: the shards hold token ids).
        device_batch_size: rows per rank per step (llm-foundry's ``device_train_batch_size``).
        dataset: the YAML's ``dataset:`` mapping (see :data:`DATASET_KEYS`). ``max_seq_len``, if
            given, must equal the shards' row length (SLW cuts rows itself; a shorter
            ``max_seq_len`` would drop tokens the tail ledger never sees).
        num_workers, pin_memory, prefetch_factor, persistent_workers, timeout: as for the
            ``text`` loader. ``drop_last`` must stay true (the dataset never yields a short batch).
        transfer, addresses_per_item: see :func:`slwdata.dataset.make_dataloader`.
    """
    del tokenizer
    loader_keys = LOADER_KEYS | {"name", "dataset"}
    _refuse_unknown(unknown, loader_keys, "train_loader")
    if not isinstance(dataset, dict):
        dataset = dict(dataset or {})
    _refuse_unknown(dataset, DATASET_KEYS, "train_loader.dataset")
    if not drop_last:
        raise ValueError(
            "slw dataloader: drop_last: false is not supported (a rank's final partial batch is carried "
            "to the next epoch as tail rows, never served short)"
        )
    if not isinstance(device_batch_size, int) or device_batch_size < 1:
        raise ValueError(f"slw dataloader: device batch size must be a positive int, got {device_batch_size!r}")
    if transfer not in TRANSFER_MODES:
        raise ValueError(f"slw dataloader: transfer={transfer!r}; choose one of {list(TRANSFER_MODES)}")
    kwargs = dict(dataset)
    if kwargs.get("reuse", "deferred") not in REUSE_POLICIES:
        raise ValueError(f"slw dataloader: dataset.reuse={kwargs['reuse']!r}; choose one of {list(REUSE_POLICIES)}")
    max_seq_len = kwargs.pop("max_seq_len", None)
    streams = kwargs.pop("streams", None)
    if streams:
        from streaming import Stream

        kwargs["streams"] = [Stream(**dict(s)) for s in streams.values()]
    ds = SLWDataset(batch_size=device_batch_size, labels=True, **kwargs)
    if max_seq_len is not None and int(max_seq_len) != ds.seq_len:
        ds.close()
        raise ValueError(
            f"slw dataloader: dataset.max_seq_len={max_seq_len} but the shards hold rows of {ds.seq_len} "
            "tokens: convert with --seq-len equal to the model's max_seq_len (SLW cuts the rows itself)"
        )
    loader_kwargs: dict[str, Any] = {"pin_memory": pin_memory, "timeout": timeout}
    if num_workers > 0:
        loader_kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=persistent_workers)
    dl = make_dataloader(
        ds, num_workers=num_workers, transfer=transfer, addresses_per_item=addresses_per_item, **loader_kwargs
    )
    from composer.core import DataSpec

    return DataSpec(dataloader=dl, get_num_tokens_in_batch=_token_counter())
