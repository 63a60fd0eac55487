"""SLWDataset with a bound pacing schedule: every token trained exactly once (or carried).

Token ``k`` of the corpus is the integer ``k`` (row ``r`` holds ``r*L .. r*L+L-1``), so the
multiset of tokens the model receives after truncation identifies every (row, position).
"""

import hashlib
import json

import numpy as np
import pytest
import torch

from slwdata.dataset import SLWDataset, make_dataloader
from slwdata.dataset.testing import write_token_shards
from slwdata.pacing import PacingSchedule

SEQ = 64
BS = 8
ROWS = 128  # 16 fresh batches a rank


@pytest.fixture(scope='module')
def shards(make_shards):
    return make_shards(ROWS, SEQ, 32, arange=True)


def schedule():
    return PacingSchedule(start=8, duration='6ba', multiple=8)


def make(root, reuse='deferred', **kw):
    ds = SLWDataset(local=root, batch_size=BS, reuse=reuse, shuffle=True, shuffle_seed=5, **kw)
    ds.bind_pacing(schedule(), rows_per_step=BS)
    return ds


def train(batches, sched=None, step0=0, tokens0=0):
    """Truncate like the algorithm would; check the planned length against the trainer's."""
    sched = sched or schedule().with_end(SEQ)
    trained, hashes, kinds = [], [], []
    tokens = tokens0
    for i, b in enumerate(batches):
        lengths = b['slw_seq_len'].unique().tolist()
        assert len(lengths) == 1
        L = lengths[0]
        assert L == sched.seq_len(step=step0 + i, samples=(step0 + i) * BS, tokens=tokens)
        x = b['input_ids'][:, :L]
        assert x.shape[0] == BS  # lockstep: every batch has the same row count
        trained.append(x.reshape(-1).numpy())
        hashes.append(hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest())
        kinds.append(int(b['slw_tail_rows'][0]))
        tokens += L * BS
    return np.concatenate(trained) if trained else np.empty(0, np.int64), hashes, kinds


def carried_tokens(ds, epoch):
    _, ledger = ds.epochs.start(epoch + 1)
    if ledger is None or ledger.tokens == 0:
        return np.empty(0, np.int64)
    seg = ledger.segments()
    return ds.reader.read_segments(seg['row'], seg['start'], seg['length']).astype(np.int64)


def assert_exactly_once(trained, carried, tokens):
    got = np.concatenate([trained, carried]).astype(np.int64)
    counts = np.bincount(got, minlength=tokens.size)
    assert counts.max() == 1, f'token served twice: {np.flatnonzero(counts > 1)[:10]}'
    assert counts.sum() == tokens.size, f'{tokens.size - counts.sum()} tokens lost'


@pytest.mark.parametrize('reuse', ['deferred', 'interleave'])
def test_epoch_conserves_every_token_one_rank(shards, reuse):
    root, tokens = shards
    ds = make(root, reuse)
    trained, _, kinds = train(ds)
    assert any(kinds), 'no tail batch was served'
    assert len(kinds) == len(ds) == ds.num_batches(0)
    assert_exactly_once(trained, carried_tokens(ds, 0), tokens)
    acc = ds.last_account
    assert acc.tokens_trained == trained.size
    assert acc.tokens_trained + acc.tokens_carried_out == ROWS * SEQ and acc.tokens_dropped == 0
    assert acc.ledger_peak_bytes == 16 * acc.ledger_peak_segments > 0
    assert acc.as_dict() == ds.epoch_account(0).as_dict() | {'resumed_at_step': 0}


def test_deferred_serves_tails_after_warmup_only(shards):
    root, _ = shards
    ds = make(root, 'deferred')
    batches = list(ds)
    lengths = [int(b['slw_seq_len'][0]) for b in batches]
    tails = [i for i, b in enumerate(batches) if int(b['slw_tail_rows'][0])]
    warm_end = lengths.index(SEQ)
    assert tails and min(tails) >= warm_end
    assert all(int(b['slw_tail_rows'][0]) == BS for b in batches if b['slw_tail_rows'][0])


def test_off_drops_and_counts(shards):
    root, tokens = shards
    ds = make(root, 'off')
    trained, _, kinds = train(ds)
    assert not any(kinds)
    acc = ds.last_account
    assert acc.tokens_dropped == ROWS * SEQ - trained.size > 0
    assert np.bincount(trained.astype(np.int64)).max() == 1


@pytest.mark.parametrize('transfer', ['addresses', 'compact', 'full'])
def test_two_workers_deliver_the_same_batches(shards, transfer):
    root, tokens = shards
    _, ref, _ = train(make(root))
    ds = make(root)
    trained, hashes, _ = train(make_dataloader(ds, num_workers=2, transfer=transfer))
    assert hashes == ref
    assert_exactly_once(trained, carried_tokens(ds, 0), tokens)


def test_forkserver_workers_deliver_the_same_batches(shards):
    """The start method the README recommends for tail reuse with workers: the dataset is
    pickled into workers started from a clean process, and they still plan the same epoch."""
    root, tokens = shards
    _, ref, _ = train(make(root))
    ds = make(root)
    trained, hashes, kinds = train(make_dataloader(ds, num_workers=2, multiprocessing_context='forkserver'))
    assert any(kinds)  # tail batches were served
    assert hashes == ref
    assert_exactly_once(trained, carried_tokens(ds, 0), tokens)


def test_a_plan_sent_by_a_worker_reads_the_same_batch(shards):
    """transfer='addresses': a worker sends each plan with its reads worked out, without
    its row ids or segment list; the main process gathers the same batch from it."""
    import pickle

    root, _ = shards
    ds = make(root)
    plans = list(ds.epochs.planner(0, 0, None)[0])
    assert any(p.kind == 'tail' for p in plans)
    for p in plans:
        ref = ds._materialize(p)  # from the segment list
        sent = pickle.dumps(ds._address(p))
        got = ds.materialize_plan_in_main(pickle.loads(sent))
        assert got.keys() == ref.keys()
        for k in ref:
            assert torch.equal(got[k], ref[k]), (p.kind, k)
        arrived = pickle.loads(sent)
        assert arrived.rows is None and arrived.taken is None and arrived.gather is not None


def test_second_epoch_continues_steps_and_carry(shards):
    root, tokens = shards
    ds = make(root, 'interleave')
    e0, _, _ = train(ds)
    acc0 = ds.last_account
    sched = schedule().with_end(SEQ)
    e1, _, _ = train(ds, sched, step0=acc0.steps, tokens0=acc0.tokens_trained)
    acc1 = ds.last_account
    assert acc1.first_step == acc0.steps
    assert acc1.tokens_carried_in == acc0.tokens_carried_out
    # Over two epochs every token is trained twice, minus what is still carried.
    counts = np.bincount(np.concatenate([e0, e1, carried_tokens(ds, 1)]).astype(np.int64), minlength=tokens.size)
    assert (counts == 2).all()


def _hashes_with_resume(root, num_workers, stop_after, **loader_kw):
    ds = make(root)
    loader = make_dataloader(ds, num_workers=num_workers, **loader_kw)
    hashes = []
    for i, b in enumerate(loader):
        hashes.append(hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest())
        if i + 1 == stop_after:
            break
    state = loader.state_dict()
    assert state['slw']['pacing']['rows_per_step'] == BS
    del loader, ds
    ds2 = make(root)
    loader2 = make_dataloader(ds2, num_workers=num_workers, **loader_kw)
    loader2.load_state_dict(state)
    hashes += [hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest() for b in loader2]
    return hashes


@pytest.mark.parametrize('num_workers', [0, 2])
def test_resume_mid_warmup_and_mid_reuse(shards, num_workers):
    root, _ = shards
    ref_batches = list(make(root))
    ref = [hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest() for b in ref_batches]
    first_tail = next(i for i, b in enumerate(ref_batches) if int(b['slw_tail_rows'][0]))
    mid_warmup = 3
    assert int(ref_batches[mid_warmup]['slw_seq_len'][0]) < SEQ
    for stop in (mid_warmup, first_tail + 1):
        assert _hashes_with_resume(root, num_workers, stop) == ref


def test_resume_with_short_last_blocks(shards):
    """Addresses in blocks of 3: resumed at steps 1, 2, 3, the rest of the epoch ends with a
    block of 0, 1 or 2 steps (one of them short enough to join the block before it); the
    batches are the uninterrupted run's either way."""
    root, _ = shards
    ref = [hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest() for b in make(root)]
    assert len(ref) >= 6  # so each resumed rest has a whole block for a short one to join
    for stop in (1, 2, 3):
        assert _hashes_with_resume(root, 2, stop, addresses_per_item=3) == ref


def test_resume_with_other_pacing_stops_clearly(shards):
    root, _ = shards
    ds = make(root)
    next(iter(ds))
    state = ds.state_dict(num_samples=2 * BS, from_beginning=True)
    ds2 = SLWDataset(local=root, batch_size=BS, shuffle=True, shuffle_seed=5)
    ds2.bind_pacing(PacingSchedule(start=16, duration='6ba'), rows_per_step=BS)
    ds2.load_state_dict(state)
    with pytest.raises(RuntimeError, match='pacing: checkpoint'):
        next(iter(ds2))


def test_partial_batch_rows_are_carried_as_whole_rows(tmp_path):
    tokens = np.arange(20 * SEQ, dtype=np.uint16).reshape(20, SEQ)
    write_token_shards(str(tmp_path), tokens=tokens, rows_per_shard=8)
    ds = SLWDataset(local=str(tmp_path), batch_size=BS)
    ds.bind_pacing(schedule(), rows_per_step=BS)
    trained, _, _ = train(ds)
    acc = ds.last_account
    assert acc.leftover_rows == 4 and acc.fresh_rows == 20
    assert_exactly_once(trained, carried_tokens(ds, 0), tokens)


def test_bind_pacing_checks_row_length(shards):
    root, _ = shards
    ds = SLWDataset(local=root, batch_size=BS)
    with pytest.raises(ValueError, match='rows of 64 tokens'):
        ds.bind_pacing(PacingSchedule(start=8, end=128, duration='6ba'), rows_per_step=BS)
    with pytest.raises(ValueError, match='rows_per_step'):
        ds.bind_pacing(schedule(), rows_per_step=0)


def test_resume_in_second_epoch_replays_the_carried_ledger(shards):
    root, _ = shards
    ref_ds = make(root, 'interleave')
    list(ref_ds)
    ref = [hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest() for b in ref_ds]
    assert ref_ds.last_account.tokens_carried_in > 0  # epoch 1 starts with tails carried over
    ds = make(root, 'interleave')
    list(ds)
    it = iter(ds)
    seen = [hashlib.sha1(next(it)['input_ids'].numpy().tobytes()).hexdigest() for _ in range(5)]
    state = ds.state_dict(num_samples=5 * BS, from_beginning=True)
    assert state['epoch'] == 1 and state['slw']['epoch_carried_tokens'] > 0
    assert len(json.dumps(state)) < 1024  # no ledger in the checkpoint: it is replayed
    ds2 = make(root, 'interleave')
    ds2.load_state_dict(state)
    seen += [hashlib.sha1(b['input_ids'].numpy().tobytes()).hexdigest() for b in ds2]
    assert seen == ref


def test_resume_refuses_a_replay_that_disagrees(shards):
    root, _ = shards
    ds = make(root)
    next(iter(ds))
    state = ds.state_dict(num_samples=2 * BS, from_beginning=True)
    state['slw']['epoch_first_step'] = 7  # as if the shards had changed since
    ds2 = make(root)
    ds2.load_state_dict(state)
    with pytest.raises(RuntimeError, match='first step 0 .* checkpoint says 7'):
        next(iter(ds2))


def test_schedule_without_warmup_serves_full_length(shards):
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=BS)
    ds.bind_pacing(PacingSchedule(kind='constant', duration='6ba'), rows_per_step=BS)
    batches = list(ds)
    assert all(int(b['slw_seq_len'][0]) == SEQ and not int(b['slw_tail_rows'][0]) for b in batches)
    assert ds.epochs.lengths == [] and len(batches) == ROWS // BS
