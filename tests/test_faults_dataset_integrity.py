"""Issue 15, case 2: a flipped byte in a shard stops iteration with a message naming it
(default arguments), and each shard is hashed once per job, not per worker or batch."""

import json
import os

import numpy as np
import pytest
import torch
import xxhash
from streaming.base import hashing

from slwdata.dataset import ShardHashError, SLWDataset, make_dataloader
from slwdata.dataset.testing import write_token_shards

SEQ, BS, ROWS, PER_SHARD = 32, 4, 48, 8


def _shards(root: str) -> np.ndarray:
    return write_token_shards(root, num_rows=ROWS, seq_len=SEQ, rows_per_shard=PER_SHARD, compression=None)


def _flip(root: str, shard: int = 2, row: int = 3) -> tuple[str, str, str]:
    """Flip one token byte of a shard file; returns (path, expected hash, found hash)."""
    with open(os.path.join(root, 'index.json')) as f:
        info = json.load(f)['shards'][shard]['raw_data']
    path = os.path.join(root, info['basename'])
    with open(path, 'r+b') as f:
        data = bytearray(f.read())
        at = len(data) - (PER_SHARD - row) * SEQ * 2 + 5  # inside row `row`'s tokens
        data[at] ^= 0x40
        f.seek(0)
        f.write(data)
    return path, info['hashes']['xxh64'], xxhash.xxh64(bytes(data)).hexdigest()


def _iterate(ds: SLWDataset, workers: int) -> np.ndarray:
    loader = make_dataloader(ds, num_workers=workers)
    return torch.cat([b['input_ids'] for b in loader]).numpy()


@pytest.mark.parametrize('workers', [0, 2])
def test_flipped_byte_stops_iteration_naming_the_shard(tmp_path, workers):
    root = str(tmp_path / 'ds')
    _shards(root)
    path, expected, found = _flip(root)
    ds = SLWDataset(local=root, batch_size=BS)
    try:
        with pytest.raises(ShardHashError if workers == 0 else Exception) as err:
            _iterate(ds, workers)
    finally:
        ds.close()
    msg = str(err.value)
    assert f'{path}: xxh64 hash is {found} but index.json says {expected}' in msg
    assert f'slwdata verify {root}' in msg and 'Delete this copy' in msg


def test_opt_out_serves_the_bytes_unchecked(tmp_path):
    root = str(tmp_path / 'ds')
    tokens = _shards(root)
    _flip(root)
    ds = SLWDataset(local=root, batch_size=BS, verify_hashes=False)
    try:
        got = _iterate(ds, 0)
    finally:
        ds.close()
    # One row of 48 differs: what the issue saw served silently with default arguments.
    assert (got != tokens.astype(np.int64)).any(axis=1).sum() == 1


def test_each_shard_hashed_once_per_job_with_workers(tmp_path, monkeypatch):
    """Two forked workers address batches, the main process gathers them, over two epochs:
    every shard is hashed exactly once (the record is shared memory, not per process)."""
    root = str(tmp_path / 'ds')
    tokens = _shards(root)
    log = str(tmp_path / 'hashed.log')
    plain = hashing._hashes['xxh64']

    def counted(data):
        with open(log, 'a') as f:
            f.write(f'{os.getpid()} {len(data)}\n')
        return plain(data)

    monkeypatch.setitem(hashing._hashes, 'xxh64', counted)
    ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=1)
    try:
        for _ in range(2):
            got = _iterate(ds, 2)
            assert sorted(map(bytes, got)) == sorted(map(bytes, tokens.astype(np.int64)))
    finally:
        ds.close()
    with open(log) as f:
        calls = f.read().splitlines()
    assert len(calls) == ROWS // PER_SHARD
    # ... and in the workers, not in the main process that runs the model.
    assert str(os.getpid()) not in {c.split()[0] for c in calls}


def test_evicted_shard_is_checked_again_in_a_worker(tmp_path, monkeypatch):
    """With a cache_limit, shards are evicted and downloaded again: each new copy is hashed
    again, still by the workers that make it local."""
    remote = str(tmp_path / 'remote')
    tokens = write_token_shards(remote, num_rows=ROWS, seq_len=SEQ, rows_per_shard=BS)
    with open(os.path.join(remote, 'index.json')) as f:
        index = json.load(f)['shards']
    # The minimum make_dataloader takes here: 8 raw shards, one downloading, index.json.
    limit = (
        8 * max(s['raw_data']['bytes'] for s in index)
        + max(s['raw_data']['bytes'] + s['zip_data']['bytes'] for s in index)
        + os.path.getsize(os.path.join(remote, 'index.json'))
    )
    log = str(tmp_path / 'hashed.log')
    plain = hashing._hashes['xxh64']

    def counted(data):
        with open(log, 'a') as f:
            f.write(f'{os.getpid()}\n')
        return plain(data)

    ds = SLWDataset(remote=remote, local=str(tmp_path / 'cache'), batch_size=BS, cache_limit=limit, prefetch_batches=0)
    monkeypatch.setitem(hashing._hashes, 'xxh64', counted)
    try:
        loader = make_dataloader(ds, num_workers=2, addresses_per_item=1, prefetch_factor=1)
        for _ in range(2):
            got = torch.cat([b['input_ids'] for b in loader]).numpy()
            np.testing.assert_array_equal(got, tokens.astype(np.int64))
    finally:
        ds.close()
    with open(log) as f:
        pids = f.read().split()
    assert len(pids) > ROWS // BS  # evicted shards were checked again
    assert str(os.getpid()) not in pids


def test_unreadable_remote_metadata_fails_closed(tmp_path):
    """Issue 15, 'every existence check fails closed': only "not found" means a plain MDS remote."""
    from slwdata.dataset.dataset import ShardFormatError

    remote, cache = str(tmp_path / 'remote'), str(tmp_path / 'cache')
    _shards(remote)
    meta = os.path.join(remote, 'slwdata.json')
    os.remove(meta)
    ds = SLWDataset(remote=remote, local=cache, batch_size=BS)  # absent: plain shards, served as such
    assert ds.meta == {} and len(_iterate(ds, 0)) == ROWS
    ds.close()
    os.makedirs(meta)  # present but unreadable as a file: a read error, not an absence
    with pytest.raises(ShardFormatError) as exc:
        SLWDataset(remote=remote, local=str(tmp_path / 'cache2'), batch_size=BS)
    assert f'{meta}: cannot be read (' in str(exc.value) and 'not taken as absent' in str(exc.value)
