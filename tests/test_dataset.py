"""SLWDataset without pacing: whole batches, worker-count independence, resumption."""

import hashlib
import logging

import numpy as np
import pytest
import torch

from slwdata.dataset import ResumeMismatchError, SLWDataset, make_dataloader
from slwdata.dataset.testing import write_token_shards

SEQ = 32
BS = 8


@pytest.fixture(scope='module')
def shards(make_shards):
    """96 rows of 32 uint16 tokens in 6 zstd shards with xxh64 hashes and slwdata.json."""
    return make_shards(96, SEQ, 16)


def batch_hash(batch) -> str:
    return hashlib.sha1(batch['input_ids'].numpy().tobytes()).hexdigest()


def rows_multiset(arr: np.ndarray) -> list:
    return sorted(map(bytes, np.ascontiguousarray(arr.astype(np.int64))))


def test_epoch_in_order_without_shuffle(shards):
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS)
    batches = list(ds)
    assert len(batches) == len(ds) == 96 // BS
    b = batches[0]
    assert list(b) == ['input_ids']  # no pacing bound: nothing to remove before model(**batch)
    assert b['input_ids'].dtype == torch.int64 and b['input_ids'].shape == (BS, SEQ)
    got = torch.cat([x['input_ids'] for x in batches]).numpy()
    np.testing.assert_array_equal(got, tokens.astype(np.int64))
    acc = ds.last_account
    assert (acc.steps, acc.fresh_rows, acc.tokens_trained, acc.tokens_dropped) == (12, 96, 96 * SEQ, 0)


def test_compact_dtype_and_labels(shards):
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS, output_dtype=None, labels=True)
    b = next(iter(ds))
    assert b['input_ids'].numpy().dtype == np.uint16
    np.testing.assert_array_equal(b['input_ids'].numpy(), tokens[:BS])
    assert torch.equal(b['labels'].to(torch.int64), b['input_ids'].to(torch.int64))


@pytest.mark.parametrize('num_workers', [0, 2])
def test_shuffled_epoch_same_for_any_worker_count(shards, num_workers):
    root, tokens = shards
    ref = [batch_hash(b) for b in SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=7)]
    ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=7)
    loader = make_dataloader(ds, num_workers=num_workers)
    batches = list(loader)
    assert [batch_hash(b) for b in batches] == ref
    got = torch.cat([b['input_ids'] for b in batches]).numpy()
    assert rows_multiset(got) == rows_multiset(tokens)
    assert not np.array_equal(got, tokens.astype(np.int64))  # it did shuffle


def test_two_epochs_differ_and_are_complete(shards):
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS, shuffle=True)
    e0 = torch.cat([b['input_ids'] for b in ds]).numpy()
    e1 = torch.cat([b['input_ids'] for b in ds]).numpy()
    assert rows_multiset(e0) == rows_multiset(e1) == rows_multiset(tokens)
    assert not np.array_equal(e0, e1)


def _resume_run(root, num_workers, stop_after, epochs_before=0):
    """Train `stop_after` batches, checkpoint, resume in a fresh dataset, return all hashes."""
    ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=11)
    loader = make_dataloader(ds, num_workers=num_workers)
    for _ in range(epochs_before):
        for _ in loader:
            pass
    seen = []
    for i, b in enumerate(loader):
        seen.append(batch_hash(b))
        if i + 1 == stop_after:
            break
    state = loader.state_dict()
    del loader, ds
    ds2 = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=11)
    loader2 = make_dataloader(ds2, num_workers=num_workers)
    loader2.load_state_dict(state)
    seen += [batch_hash(b) for b in loader2]
    return seen, state


@pytest.mark.parametrize('num_workers,stop_after', [(0, 5), (2, 3), (2, 12)])
def test_resume_mid_epoch_gives_same_batches(shards, num_workers, stop_after):
    root, _ = shards
    ref_ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=11)
    ref = [batch_hash(b) for b in ref_ds]
    seen, state = _resume_run(root, num_workers, stop_after)
    assert state['slw']['steps_in_epoch'] == stop_after
    assert seen == ref


def test_resume_in_second_epoch(shards):
    root, _ = shards
    ref_ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=11)
    list(ref_ds)
    ref = [batch_hash(b) for b in ref_ds]  # epoch 1
    seen, state = _resume_run(root, 0, 4, epochs_before=1)
    assert state['epoch'] == 1
    assert seen == ref


def test_resume_with_other_world_size_stops_clearly(shards):
    root, _ = shards
    ds = SLWDataset(local=root, batch_size=BS)
    next(iter(ds))
    state = ds.state_dict(num_samples=3 * BS, from_beginning=True)
    state['slw']['num_ranks'] = 2  # as if written by a 2-rank run
    ds2 = SLWDataset(local=root, batch_size=BS)
    ds2.load_state_dict(state)
    with pytest.raises(ResumeMismatchError, match='num_ranks: checkpoint 2, now 1'):
        next(iter(ds2))


def test_resume_with_other_batch_size_stops_clearly(shards):
    root, _ = shards
    ds = SLWDataset(local=root, batch_size=BS)
    next(iter(ds))
    state = ds.state_dict(num_samples=16, from_beginning=True)
    ds2 = SLWDataset(local=root, batch_size=4)
    ds2.load_state_dict(state)
    with pytest.raises(ResumeMismatchError, match='batch_size: checkpoint 8, now 4'):
        next(iter(ds2))


def test_partial_last_batch_is_counted_not_silently_dropped(tmp_path, caplog):
    tokens = write_token_shards(str(tmp_path), num_rows=21, seq_len=SEQ, rows_per_shard=8)
    ds = SLWDataset(local=str(tmp_path), batch_size=BS)
    with caplog.at_level(logging.INFO, logger='slwdata.dataset.dataset'):
        got = torch.cat([b['input_ids'] for b in ds]).numpy()
    np.testing.assert_array_equal(got, tokens[:16].astype(np.int64))
    acc = ds.last_account
    assert acc.leftover_rows == 5 and acc.tokens_dropped == 5 * SEQ
    assert '"tokens_dropped": 160' in caplog.text
    assert ds.accounts[0]['fresh_rows'] == 21  # 16 served + 5 counted as dropped
    assert acc.fresh_rows * SEQ == acc.tokens_trained + acc.tokens_dropped


def test_bad_arguments():
    with pytest.raises(ValueError, match='batch_size'):
        SLWDataset(local='/nonexistent', batch_size=None)
    with pytest.raises(ValueError, match='reuse='):
        SLWDataset(local='/nonexistent', batch_size=2, reuse='sometimes')


def test_workers_send_addresses_and_the_main_process_gathers(shards, monkeypatch):
    """Default transfer: workers ship plans (a few KB), not token tensors."""
    from slwdata.dataset import BatchAddress

    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=7)
    gathered = []
    real = ds.materialize_in_main

    def spy(address):
        assert isinstance(address, BatchAddress)
        assert len(address) == BS * len(address.plans) and 1 <= len(address.plans) <= 12
        gathered.append([p.index for p in address.plans])
        return real(address)

    monkeypatch.setattr(ds, 'materialize_in_main', spy)
    # 12 steps in blocks of k, alternating workers. k=5: 0-4 (worker 0), 5-11 (1): the short
    # last block (10-11, under half a block) joins the one before it instead of travelling
    # alone. k=7: 0-6, 7-11 (5 steps is not short).
    for k, blocks in ((5, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]]), (7, [[0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11]])):
        gathered.clear()
        batches = list(make_dataloader(ds, num_workers=2, addresses_per_item=k))
        assert gathered == blocks and len(batches) == 12
        got = torch.cat([b['input_ids'] for b in batches]).numpy()
        assert rows_multiset(got) == rows_multiset(tokens)


def test_variable_layout_shards_fall_back_to_worker_gather(tmp_path):
    """llm-foundry 'bytes' columns have no fixed row layout: workers gather, nothing breaks."""
    tokens = write_token_shards(
        str(tmp_path), num_rows=32, seq_len=SEQ, rows_per_shard=8, encoding='bytes', dtype='int64'
    )
    ds = SLWDataset(local=str(tmp_path), batch_size=BS)
    got = torch.cat([b['input_ids'] for b in make_dataloader(ds, num_workers=2)]).numpy()
    assert rows_multiset(got) == rows_multiset(tokens)


def test_addresses_survive_cache_eviction(tmp_path):
    """A cache_limit of 9 of 12 shards: workers evict shards while others are read; the main
    process re-prepares an evicted shard it still has to gather from."""
    import glob
    import os

    remote = str(tmp_path / 'remote')
    tokens = write_token_shards(remote, num_rows=96, seq_len=SEQ, rows_per_shard=8)
    cache = str(tmp_path / 'cache')
    import json

    with open(os.path.join(remote, 'index.json')) as f:
        index = json.load(f)['shards']
    # 8 raw shards, one more downloading (zip and raw) and index.json.
    limit = (
        8 * max(s['raw_data']['bytes'] for s in index)
        + max(s['raw_data']['bytes'] + s['zip_data']['bytes'] for s in index)
        + os.path.getsize(os.path.join(remote, 'index.json'))
    )
    # Unshuffled, one shard a batch, and few batches in flight: a cache_limit of 9 shards is
    # enough for them (a smaller one is refused, tests/test_faults_dataset_cache.py).
    ds = SLWDataset(remote=remote, local=cache, batch_size=BS, cache_limit=limit, prefetch_batches=0)
    got = torch.cat(
        [b['input_ids'] for b in make_dataloader(ds, num_workers=2, addresses_per_item=1, prefetch_factor=1)]
    ).numpy()
    assert rows_multiset(got) == rows_multiset(tokens)
    assert len(glob.glob(os.path.join(cache, 'shard.*.mds'))) < 12  # it did evict

    # Deterministically: a shard evicted after a worker addressed it.
    from slwdata.dataset import BatchAddress

    plan = next(iter(ds.epochs.planner(0, 0, None)[0]))
    for shard_id in np.unique(ds.reader.shard_of(plan.rows)):
        ds.evict_shard(int(shard_id))
    ds.reader.close()
    (batch,) = ds.materialize_in_main(BatchAddress([plan]))
    np.testing.assert_array_equal(batch['input_ids'].numpy(), tokens[plan.rows].astype(np.int64))


def test_spawned_workers_across_epochs(shards):
    """Spawned workers (macOS / forkserver default) get a pickled dataset: after the main
    process has gathered an epoch it holds memory maps, which must not travel (a pickled
    memmap is a full copy of the shard)."""
    import pickle

    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS)
    loader = make_dataloader(ds, num_workers=1, multiprocessing_context='spawn')
    for _ in range(2):
        got = torch.cat([b['input_ids'] for b in loader]).numpy()
        np.testing.assert_array_equal(got, tokens.astype(np.int64))
        assert ds.reader._maps  # the main process gathered
        assert not pickle.loads(pickle.dumps(ds.reader))._maps


def test_unknown_transfer_mode_is_refused(shards):
    ds = SLWDataset(local=shards[0], batch_size=BS)
    with pytest.raises(ValueError, match="transfer='pigeons'"):
        make_dataloader(ds, num_workers=2, transfer='pigeons')


def _fds_to(prefix: str) -> int:
    """Open file descriptors of this process on /dev/shm segments named ``prefix*``."""
    import os

    n = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            n += os.path.basename(os.readlink(f'/proc/self/fd/{fd}')).startswith(prefix)
        except OSError:
            pass
    return n


@pytest.mark.skipif(not __import__('os').path.isdir('/proc/self/fd'), reason='needs /proc')
def test_close_releases_streamings_shared_memory(shards):
    """streaming keeps a dataset's shared memory (and its fds) until the process exits, even
    once the dataset is collected; close() gives them back, so a process can build many."""
    import os

    root, _ = shards
    for seed in range(3):
        ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=seed)
        list(make_dataloader(ds, num_workers=0))
        prefix = f'{ds._shm_prefix_int:06d}_'
        segments = [n for n in os.listdir('/dev/shm') if n.startswith(prefix)]
        assert len(segments) >= 5 and _fds_to(prefix) >= len(segments)
        ds.close()
        assert not [n for n in os.listdir('/dev/shm') if n.startswith(prefix)]
        assert _fds_to(prefix) == 0
    with pytest.raises(RuntimeError, match='closed'):
        next(iter(ds))


def test_iterate_in_process_then_with_workers(shards):
    """An epoch in the main process (0 workers) leaves streaming's barrier holding a file lock;
    forked workers must not inherit it (filelock refuses an inherited lock)."""
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=5)
    first = torch.cat([b['input_ids'] for b in make_dataloader(ds, num_workers=0, streaming_loader=False)])
    second = torch.cat([b['input_ids'] for b in make_dataloader(ds, num_workers=2, streaming_loader=False)])
    assert rows_multiset(first.numpy()) == rows_multiset(second.numpy()) == rows_multiset(tokens)
    ds.close()
