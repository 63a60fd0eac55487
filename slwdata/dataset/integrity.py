"""Check each shard's hash once, when it is first mapped, against what ``index.json`` records.

streaming's own ``validate_hash`` checks a file only when it downloads or decompresses it, and
only if the user names an algorithm: a raw shard already in the cache, or in a local dataset,
is served unchecked, so a flipped byte on disk becomes wrong tokens. :class:`ShardVerifier`
hashes the raw file (the bytes the reader serves, through the very mapping it reads) the first
time any process of the job maps it, and records that in a shared-memory array of one
fingerprint per shard (device, inode, size and mtime of the verified file), so DataLoader
workers and the main process do not hash a shard again. A shard evicted and downloaded again
is a new file with a new fingerprint and is checked again. See ``docs/DESIGN.md``.

Example::

    verifier = ShardVerifier(dataset.shards, prefix_int=streaming_compat.shm_prefix(dataset))
    reader = ShardTokenReader(..., verify=verifier.verify)
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import numpy as np

from slwdata.dataset.reader import ShardFormatError
from slwdata.dataset.streaming_compat import HASHES, SharedArray, shm_path

__all__ = ['ShardHashError', 'ShardVerifier', 'VERIFIED_SHM', 'pick_hash']

logger = logging.getLogger(__name__)

# Name (after the prefix) of the shared-memory array of verified fingerprints.
VERIFIED_SHM = 'slw_verified'
# Fastest first: the check reads every byte once, and xxh64 keeps up with the page cache.
_PREFERRED = ('xxh3_64', 'xxh64', 'xxh3_128', 'xxh128', 'xxh32', 'md5', 'sha1', 'sha256')


class ShardHashError(ShardFormatError):
    """A shard's bytes do not match the hash its ``index.json`` records."""


def pick_hash(hashes: dict) -> Optional[str]:
    """The fastest algorithm among those an index lists that this streaming can compute."""
    known = [a for a in hashes if a in HASHES]
    for algo in _PREFERRED:
        if algo in known:
            return algo
    return sorted(known)[0] if known else None


def fingerprint(st: os.stat_result) -> int:
    """A non-zero int64 naming one version of a file (0 means "not verified")."""
    return (hash((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)) & 0x7FFF_FFFF_FFFF_FFFF) | 1


class ShardVerifier:
    """Verify raw shard files against ``index.json`` hashes, once per file version per job.

    Args:
        shards: streaming shard readers (``dataset.shards``).
        prefix_int: the dataset's shared-memory prefix (the record is shared by every process
            of the job on this node); ``None`` keeps the record in this process only.
    """

    def __init__(self, shards: Sequence, prefix_int: Optional[int] = None) -> None:
        self.expected: list[Optional[tuple[str, str]]] = []
        for shard in shards:
            raw_info = shard.file_pairs[0][0]
            algo = pick_hash(raw_info.hashes or {})
            self.expected.append(None if algo is None else (algo, raw_info.hashes[algo]))
        n = max(1, len(self.expected))
        self._lock_path: Optional[str] = None
        if prefix_int is None:
            self._local = np.zeros(n, np.int64)
            self.arr = None
        else:
            self.arr = SharedArray(n, np.int64, shm_path(prefix_int, VERIFIED_SHM))
            path = os.path.join('/dev/shm', shm_path(prefix_int, VERIFIED_SHM))
            self._lock_path = path if os.path.exists(path) else None
        if not any(self.expected):
            logger.info('index.json records no shard hashes: shards are read unverified.')

    @contextmanager
    def _claim(self, shard_id: int) -> Iterator[None]:
        """Hold an fcntl lock on byte ``shard_id`` of the record's file while checking that
        shard: two workers that reach a new shard together hash it once, not twice."""
        if self._lock_path is None:
            yield
            return
        # Opened per claim (once per shard and process): a held fd would outlive close().
        fd = os.open(self._lock_path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, shard_id)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _record(self) -> np.ndarray:
        return self.arr.numpy() if self.arr is not None else self._local

    def pending(self, shard_ids: np.ndarray) -> np.ndarray:
        """Those of ``shard_ids`` that no process of this job has verified yet."""
        ids = np.asarray(shard_ids, np.int64)
        return ids[self._record()[ids] == 0]

    def forget(self, shard_id: int) -> None:
        """The shard's file is gone (evicted): its next copy is checked again."""
        self._record()[shard_id] = 0

    def verify(self, shard_id: int, filename: str, buf: mmap.mmap, st: os.stat_result) -> None:
        """Check the mapped file ``buf`` of ``shard_id`` unless this version was checked.

        Raises :class:`ShardHashError` naming the file, the expected and the found hash."""
        want = self.expected[shard_id]
        if want is None:
            return
        mark = fingerprint(st)
        record = self._record()
        if record[shard_id] == mark:
            return
        algo, expected = want
        with self._claim(shard_id):
            if record[shard_id] == mark:  # checked by another process while this one waited
                return
            found = HASHES[algo](buf).hexdigest()
            if found == expected:
                record[shard_id] = mark
                return
        where = os.path.dirname(filename) or '.'
        raise ShardHashError(
            f'{filename}: {algo} hash is {found} but index.json says {expected}: the shard is '
            f'corrupt or was modified. Delete this copy (a dataset with a remote downloads it '
            f'again) or reconvert it; `slwdata verify {where}` checks every shard. '
            f'(verify_hashes=False skips this check, for shards verified elsewhere.)'
        )
