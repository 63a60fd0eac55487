"""Refuse a ``cache_limit`` that cannot hold the shards of the batches in flight.

A batch needs all its shards local at once, and with DataLoader workers several batches are
prepared ahead: each worker holds ``prefetch_factor`` items ready plus the one it is preparing
(``addresses_per_item`` batches each when it sends addresses), and its prefetch thread prepares
``prefetch_batches`` more. streaming evicts the least recently used shard, and a shard
prepared for a batch not read yet was last used when it was prepared: every shard read since
is "newer". So a prepared shard survives only if the cache holds, besides the one being
downloaded, the shards of twice the batches in flight (those prepared after it, and those
read after it was prepared). Otherwise preparing one batch evicts the shards of another before
it is read, and the reader downloads them again (correct, but the cache thrashes).
:func:`check_cache_limit` works out, from the rank's own epoch plan, the most shards any window
of that many consecutive fresh batches touches, and refuses a smaller limit up front with the
minimum that works.

Example::

    check_cache_limit(dataset, num_workers=2, prefetch_factor=2, addresses_per_item=8)
"""

from __future__ import annotations

import numpy as np

__all__ = ['batches_in_flight', 'min_cache_bytes', 'check_cache_limit']


def batches_in_flight(
    num_workers: int, prefetch_factor: int, addresses_per_item: int, prefetch_batches: int, addresses: bool
) -> int:
    """Consecutive batches whose shards may have to be local at the same time."""
    if num_workers <= 0:
        return prefetch_batches + 1
    per_item = addresses_per_item if addresses else 1
    return num_workers * ((prefetch_factor + 1) * per_item + prefetch_batches)


def min_cache_bytes(dataset, batches: int, epoch: int = 0) -> tuple[int, int]:
    """``(bytes, shards)``: what the cache must hold for ``batches`` in flight over this rank's
    ``epoch``: the most distinct shards a window of ``2 * batches`` consecutive fresh batches
    touches (summed per batch, an upper bound) at the size of the largest shards as they stay
    in the cache, plus one being downloaded (raw and compressed at once), plus the index files,
    which streaming counts too."""
    fresh, _ = dataset.rank_batches(epoch)
    keep = [dataset.streams[i].safe_keep_zip for i in dataset.stream_per_shard]
    sizes = np.sort(np.array([s.get_persistent_size(k) for s, k in zip(dataset.shards, keep)], np.int64))[::-1]
    downloading = max(s.get_max_size() for s in dataset.shards)
    if not len(fresh):
        return 0, 0
    shard_ids = np.sort(dataset.reader.shard_of(fresh.reshape(-1)).reshape(fresh.shape), axis=1)
    per_batch = 1 + (np.diff(shard_ids, axis=1) != 0).sum(axis=1)
    window = min(2 * batches, len(per_batch))
    sums = np.convolve(per_batch, np.ones(window, np.int64), mode='valid')
    shards = int(min(len(sizes), sums.max() + 1))
    index = sum(stream.get_index_size() for stream in dataset.streams)
    return int(sizes[: shards - 1].sum()) + downloading + index, shards


def check_cache_limit(dataset, num_workers: int, prefetch_factor: int, addresses_per_item: int) -> None:
    """Raise ``ValueError`` if ``dataset.cache_limit`` is set and too small for the loader."""
    limit = getattr(dataset, 'cache_limit', None)
    if not limit:
        return
    addresses = dataset.transfer == 'addresses' and dataset.reader.all_fixed
    batches = batches_in_flight(
        num_workers, prefetch_factor or 0, addresses_per_item, dataset.prefetch_batches, addresses
    )
    need, shards = min_cache_bytes(dataset, batches)
    if limit >= need:
        return
    how = (
        (
            f'{num_workers} workers x ((prefetch_factor {prefetch_factor} + 1) x '
            f'{"addresses_per_item " + str(addresses_per_item) if addresses else "1"} + '
            f'prefetch_batches {dataset.prefetch_batches})'
        )
        if num_workers > 0
        else f'prefetch_batches {dataset.prefetch_batches} + 1'
    )
    raise ValueError(
        f'cache_limit={limit} bytes cannot hold the shards of the batches in flight: {batches} '
        f'batches ({how}); with those read meanwhile and one downloading, up to {shards} shards, '
        f'{need} bytes. Set cache_limit >= {need}, or lower num_workers / prefetch_factor / '
        f'addresses_per_item / prefetch_batches.'
    )
