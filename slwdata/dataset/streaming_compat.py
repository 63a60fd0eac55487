"""Every use of mosaicml-streaming's private internals, in one place.

slwdata reads batches through streaming's cache bookkeeping, resumption and shared memory,
which streaming does not expose as an API. Each private name (a ``_``-prefixed module, class,
function or attribute, or a name from ``streaming.base.*`` that streaming's top level does not
export) is reached through this module only, so a streaming upgrade is checked here, against
the versions pinned in ``SUPPORTED_STREAMING`` (``tests/test_streaming_compat.py``).

Two kinds of use cannot be wrapped, as they are overrides: ``SLWDataset`` overrides
``StreamingDataset._resume`` and ``_evict_shard``, and ``BoundedS3Downloader`` overrides
``S3Downloader._download_file_impl``. ``OVERRIDDEN_HOOKS`` names them, and the test checks that
the installed streaming still calls them with the same parameters.
"""

from __future__ import annotations

import atexit
import json
from time import time_ns
from typing import Any, Optional

import numpy as np
from numpy.typing import NDArray
from streaming.base.batching import generate_work
from streaming.base.constant import BARRIER_FILELOCK, CACHE_FILELOCK, RESUME, SHM_TO_CLEAN
from streaming.base.dataset import _ShardState
from streaming.base.hashing import _hashes
from streaming.base.shared import SharedArray, SharedMemory, _get_path
from streaming.base.storage import download as _download
from streaming.base.storage.download import S3Downloader
from streaming.base.world import World

__all__ = [
    'SUPPORTED_STREAMING',
    'OVERRIDDEN_HOOKS',
    'BARRIER_FILELOCK',
    'CACHE_FILELOCK',
    'SHM_TO_CLEAN',
    'S3Downloader',
    'SharedArray',
    'SharedMemory',
    'World',
    'HASHES',
    'shm_path',
    'shm_prefix',
    'is_local_leader',
    'rank_world',
    'one_worker_per_rank',
    'rank_sample_ids',
    'ensure_resume_params',
    'read_resume_state',
    'start_worker_epoch',
    'missing_shards',
    'all_shards_local',
    'release_failed_shard',
    'touch_shards',
    'drop_cache_filelock',
    'download_stream_file',
    'release_local_dir',
    'streaming_shms',
    'release_shared_memory',
    'downloader_mappings',
    'stream_downloader',
    'set_stream_downloader',
]

# Release series this module was written against (``major.minor``; pyproject pins the same).
SUPPORTED_STREAMING = ('0.12', '0.13')

# (class, method, its parameters after self) that slwdata overrides.
OVERRIDDEN_HOOKS = (
    ('streaming.base.dataset.StreamingDataset', '_resume', ('world', 'epoch')),
    ('streaming.base.dataset.StreamingDataset', '_evict_shard', ('shard_id',)),
    ('streaming.base.storage.download.S3Downloader', '_download_file_impl', ('remote', 'local', 'timeout')),
)

# Hash algorithm name -> function of bytes, the ones streaming can check an index against.
HASHES = _hashes


def shm_path(prefix_int: int, name: str) -> str:
    """The shared-memory name streaming gives segment ``name`` of the run ``prefix_int``."""
    return _get_path(prefix_int, name)


# ---------------------------------------------------------------- a dataset's place
def shm_prefix(dataset: Any) -> int:
    """The shared-memory prefix of a StreamingDataset (unique per run on a machine)."""
    return dataset._shm_prefix_int


def is_local_leader(dataset: Any) -> bool:
    """Whether this process is its node's first rank."""
    return dataset._unique_rank_world.is_local_leader


def rank_world(dataset: Any) -> World:
    """This rank's place among nodes and ranks (the one streaming partitions over)."""
    return dataset._parallel_rank_world


def one_worker_per_rank(dataset: Any) -> World:
    """This rank's place, with one worker per rank."""
    w = dataset._parallel_rank_world
    return World(num_nodes=w.num_nodes, ranks_per_node=w.ranks_per_node, workers_per_rank=1, worker=w.rank)


def rank_sample_ids(dataset: Any, world: World, epoch: int) -> NDArray[np.int64]:
    """The sample ids streaming's partition gives ``world``'s rank in ``epoch``, in order,
    ``-1`` for padding."""
    work = generate_work(dataset.batching_method, dataset, world, epoch, 0)
    return work[world.node, world.rank_of_node].reshape(-1)


# ---------------------------------------------------------------- resumption
def ensure_resume_params(dataset: Any) -> None:
    """Fill ``num_canonical_nodes`` / ``shuffle_block_size`` as streaming's ``_resume`` does."""
    if dataset.num_canonical_nodes is None or dataset.shuffle_block_size is None:
        dataset._resume(dataset._parallel_rank_world, dataset.next_epoch)


def read_resume_state(prefix_int: int) -> Optional[dict[str, Any]]:
    """The JSON that ``load_state_dict`` left in shared memory, or ``None``."""
    try:
        shm = SharedMemory(name=_get_path(prefix_int, RESUME), create=False)
    except FileNotFoundError:
        return None
    buf = bytes(shm.buf)
    end = buf.find(b'\0')
    return json.loads((buf[:end] if end != -1 else buf).decode('utf-8'))


def start_worker_epoch(dataset: Any) -> tuple[int, int, World]:
    """What streaming's ``__iter__`` does before it partitions: learn this DataLoader worker's
    place and start (or resume) the epoch. Returns ``(epoch, sample_in_epoch, worker world)``."""
    # streaming's barrier makes its file lock on first use; one made by an in-process
    # epoch (0 workers) must not reach forked workers (filelock refuses an inherited lock).
    dataset._shared_barrier.__dict__.pop('lock', None)
    dataset._unique_worker_world = dataset._unique_rank_world.detect_workers()
    dataset._parallel_worker_world = dataset._parallel_rank_world.detect_workers()
    epoch, sample_in_epoch = dataset._resume_incr_epoch()
    return epoch, sample_in_epoch, dataset._parallel_worker_world


# ---------------------------------------------------------------- the shard cache
def missing_shards(dataset: Any, shards: NDArray[np.int64]) -> list[int]:
    """The shards among ``shards`` that are not local (one vectorized look at the states)."""
    states = dataset._shard_states.numpy()
    return shards[states[shards] != _ShardState.LOCAL.value].tolist()


def all_shards_local(dataset: Any) -> bool:
    """Whether every shard of the dataset is local."""
    return bool((dataset._shard_states.numpy() == _ShardState.LOCAL.value).all())


def release_failed_shard(dataset: Any, shard_id: int) -> None:
    """A failed download leaves the shard PREPARING; put it back so nobody waits forever."""
    try:
        if dataset._shard_states[shard_id] == _ShardState.PREPARING:
            dataset._shard_states[shard_id] = _ShardState.REMOTE
    except Exception:  # noqa: BLE001 - best effort on an error path.
        pass


def touch_shards(dataset: Any, shard_ids: NDArray[np.int64]) -> None:
    """Mark shards as just used, for streaming's least-recently-used eviction."""
    dataset._shard_access_times[shard_ids] = time_ns()


def drop_cache_filelock(dataset: Any) -> None:
    """Forget the FileLock ``prepare_shard`` creates: it holds a threading lock, which must not
    be pickled into spawned workers."""
    dataset.__dict__.pop('_cache_filelock', None)


def download_stream_file(stream: Any, basename: str) -> str:
    """Download one file of a stream's remote into its local directory."""
    return stream._download_file(basename)


# ---------------------------------------------------------------- shared memory
def release_local_dir(dataset: Any) -> None:
    """Give back this process's slot of the local-directory registry (what streaming's
    ``__del__`` does)."""
    if hasattr(dataset, '_locals_shm'):
        try:
            dataset._locals_shm.buf[:4] = np.int32(0).tobytes()
        except (TypeError, ValueError):
            pass


def streaming_shms(dataset: Any) -> list[SharedMemory]:
    """The streaming ``SharedMemory`` objects a dataset holds: its own attributes, and those
    of its shared arrays, scalars and barrier (``.shm``, ``.arr.shm``, ``._arr.shm``), each
    once."""
    found: dict[int, SharedMemory] = {}
    for value in list(vars(dataset).values()):
        holders = (value, getattr(value, 'arr', None), getattr(value, '_arr', None))
        for obj in holders + tuple(getattr(h, 'shm', None) for h in holders):
            if isinstance(obj, SharedMemory):
                found[id(obj)] = obj
    return list(found.values())


def release_shared_memory(dataset: Any) -> None:
    """Give back a dataset's local-directory slot and free its shared memory now, not at exit
    (streaming's ``atexit`` handlers would hold them until then); works on any
    ``StreamingDataset``."""
    release_local_dir(dataset)
    for shm in streaming_shms(dataset):
        atexit.unregister(shm.cleanup)
        shm.cleanup()


# ---------------------------------------------------------------- downloads
def downloader_mappings() -> dict[str, Any]:
    """streaming's scheme -> downloader class table (patched to bound S3 downloads)."""
    return _download.DOWNLOADER_MAPPINGS


def stream_downloader(stream: Any) -> Any:
    """The downloader a stream made for itself, or ``None`` before its first download."""
    return getattr(stream, '_downloader', None)


def set_stream_downloader(stream: Any, downloader: Any) -> None:
    """Make a stream download through ``downloader``."""
    stream._downloader = downloader
