"""ShardTokenReader: fast gathers over memory-mapped MDS shards, and the per-sample fallback."""

import os

import numpy as np
import pytest

from slwdata.dataset import ShardFormatError, SLWDataset
from slwdata.dataset.reader import ColumnLayout, parse_token_encoding
from slwdata.dataset.testing import write_token_shards


@pytest.fixture(scope='module')
def shards(make_shards):
    return make_shards(50, 24, 8)


def test_parse_encoding():
    assert parse_token_encoding('ndarray:uint16:1024') == (np.dtype('uint16'), 1024)
    assert parse_token_encoding('ndarray:int32:4,8') == (np.dtype('int32'), 32)
    assert parse_token_encoding('ndarray') == (None, None)
    assert parse_token_encoding('bytes') == (None, None)


def test_read_rows_matches_source_across_shards(shards):
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=5)
    assert ds.reader.all_fixed and ds.seq_len == 24 and len(ds.shards) > 3
    ids = np.array([49, 0, 7, 8, 33, 8, 16, 1])  # out of order, repeated, spanning shards
    rows = ds.reader.read_rows(ids)
    assert rows.dtype == np.uint16
    np.testing.assert_array_equal(rows, tokens[ids])
    # The per-sample path of StreamingDataset agrees with the memory-mapped gather.
    np.testing.assert_array_equal(ds[33]['tokens'], tokens[33])


def test_read_segments_concatenates_in_order(shards):
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=5)
    ids, starts, lengths = np.array([3, 40, 3, 12]), np.array([20, 0, 0, 8]), np.array([4, 10, 2, 0])
    flat = ds.reader.read_segments(ids, starts, lengths)
    expect = np.concatenate([tokens[i, s : s + n] for i, s, n in zip(ids, starts, lengths)])
    np.testing.assert_array_equal(flat, expect)
    with pytest.raises(ValueError, match='outside a row'):
        ds.reader.read_segments(np.array([1]), np.array([20]), np.array([8]))


def _naive_segments(tokens, ids, starts, lengths):
    return np.concatenate([tokens[i, s : s + n] for i, s, n in zip(ids, starts, lengths)])


@pytest.mark.parametrize('order', ['row order', 'shuffled'])
def test_read_segments_runs_of_one_step_tails(shards, order):
    """A run of segments sharing (start, length), as one pacing step records them, is read
    shard by shard; mixed with short runs and with pieces split at a tail-row boundary."""
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=5)
    rng = np.random.default_rng(3)
    run = np.arange(0, 50, 2)  # 25 rows over all 7 shards
    if order == 'shuffled':
        run = rng.permutation(run)
    ids = np.concatenate([run, [5, 9], run[:6], [44, 44]])
    starts = np.concatenate([np.full(25, 16), [3, 0], np.full(6, 8), [2, 10]])
    lengths = np.concatenate([np.full(25, 8), [4, 24], np.full(6, 16), [8, 6]])
    # The same data cut at arbitrary points inside segments (a tail straddling two tail rows).
    cut_ids, cut_starts, cut_lengths = [], [], []
    for i, s, n in zip(ids, starts, lengths):
        k = int(rng.integers(0, n + 1))
        for a, m in ((s, k), (s + k, n - k)):
            if m:
                cut_ids.append(i), cut_starts.append(a), cut_lengths.append(m)
    expect = _naive_segments(tokens, ids, starts, lengths)
    for args in ((ids, starts, lengths), (cut_ids, cut_starts, cut_lengths)):
        got = ds.reader.read_segments(*map(np.array, args))
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, expect)
        # Straight into a wider buffer (what a tail batch does), cast on the way.
        out = np.full(len(expect), -1, np.int64)
        assert ds.reader.read_segments(*map(np.array, args), out=out) is out
        np.testing.assert_array_equal(out, expect.astype(np.int64))
    with pytest.raises(ValueError, match=r'out has shape \(3,\)'):
        ds.reader.read_segments(ids, starts, lengths, out=np.empty(3, np.int64))


@pytest.mark.parametrize('ids', [[49, 0, 7, 8, 33, 8, 16, 1], [17, 16, 23, 17]], ids=['across shards', 'one shard'])
def test_planned_row_reads_travel_and_read_the_same(shards, ids):
    """A worker works out a fresh batch's reads (plan_rows), the main process reads them
    (read_row_gather): rows in the order asked, cast into a wider out."""
    import pickle

    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=5)
    ids = np.array(ids)
    gather = pickle.loads(pickle.dumps(ds.reader.plan_rows(ids)))
    assert gather.order.dtype == np.int16 and gather.local.dtype == np.int32
    rows = ds.reader.read_row_gather(gather)
    assert rows.dtype == np.uint16
    np.testing.assert_array_equal(rows, tokens[ids])
    out = np.full((len(ids), 24), -1, np.int64)
    assert ds.reader.read_row_gather(gather, out) is out
    np.testing.assert_array_equal(out, tokens[ids].astype(np.int64))
    with pytest.raises(ValueError, match=r'out has shape \(3, 24\)'):
        ds.reader.read_row_gather(gather, np.empty((3, 24), np.int64))
    assert ds.reader.read_row_gather(ds.reader.plan_rows(np.array([], np.int64))).shape == (0, 24)


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs fork')
def test_a_forked_worker_never_writes_the_parents_scratch(shards):
    """Rows are gathered into a reusable buffer of shared memory (no copy-on-write after a
    fork). A forked DataLoader worker shares that mapping, so it must gather into its own:
    what the parent gathered is still there after the child gathered other rows."""
    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=5)
    mine = ds.reader._gather(1, np.array([0, 3, 5]))
    np.testing.assert_array_equal(mine, tokens[[8, 11, 13]])
    pid = os.fork()
    if pid == 0:  # the child: gather other rows of the same shape, then leave at once
        ok = np.array_equal(ds.reader._gather(2, np.array([7, 6, 4])), tokens[[23, 22, 20]])
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(mine, tokens[[8, 11, 13]])


def test_planned_segment_reads_travel_and_read_the_same(shards):
    """A DataLoader worker works out a tail batch's reads (plan_segments) and pickles them to
    the main process, which only reads (read_gather): the same tokens as the naive
    concatenation. Groups of one shard, start and length come sorted by shard (one read of
    whole rows per shard), each written at its place."""
    import pickle

    root, tokens = shards
    ds = SLWDataset(local=root, batch_size=5)
    run = np.arange(0, 50, 3)  # 17 rows over all 7 shards: runs of 2-3 per shard
    ids = np.concatenate([np.arange(8, 16), run, [5, 5], [44]])
    starts = np.concatenate([np.full(8, 16), np.full(17, 8), [0, 10], [2]])
    lengths = np.concatenate([np.full(8, 8), np.full(17, 16), [10, 4], [22]])
    gather = ds.reader.plan_segments(ids, starts, lengths)
    # One read per shard; rows 8..15 (one shard, start and length) are one group.
    assert sorted(gather.shards.tolist()) == list(range(7))
    count, pos = gather.groups[:, 2], gather.groups[:, 3]
    assert count.sum() == len(ids) - 1 and count[pos == 0].tolist() == [8]  # [5, 5] joined
    assert gather.total == int(lengths.sum())
    gather = pickle.loads(pickle.dumps(gather))
    out = np.full(gather.total, -1, np.int64)
    assert ds.reader.read_gather(gather, out) is out
    np.testing.assert_array_equal(out, _naive_segments(tokens, ids, starts, lengths))
    with pytest.raises(ValueError, match=r'out has shape \(7,\)'):
        ds.reader.read_gather(gather, np.empty(7, np.int64))
    empty = ds.reader.plan_segments(np.array([], np.int64), np.array([]), np.array([]))
    assert empty.total == 0 and len(ds.reader.read_gather(empty, np.empty(0, np.int64))) == 0


@pytest.mark.parametrize('bad', [50, -1])
def test_segment_ids_out_of_range_are_refused_unchecked_or_not(shards, bad):
    """Rows are read with np.take(mode='clip'), which would serve the last row for an id past
    the end: ids are range-checked even when the segments are not (check=False)."""
    root, _ = shards
    ds = SLWDataset(local=root, batch_size=5)
    for check in (True, False):
        with pytest.raises(IndexError, match='out of range'):
            ds.reader.read_segments(np.array([bad, 5]), np.array([0, 0]), np.array([4, 4]), check=check)


@pytest.mark.parametrize('encoding', ['ndarray', 'bytes'])
def test_variable_size_columns_fall_back_per_sample(tmp_path, encoding):
    tokens = np.random.default_rng(1).integers(0, 50000, (20, 16)).astype('int64' if encoding == 'bytes' else 'uint16')
    write_token_shards(str(tmp_path), tokens=tokens, rows_per_shard=6, encoding=encoding, meta=False)
    ds = SLWDataset(local=str(tmp_path), batch_size=4)
    assert not ds.reader.all_fixed and ds.seq_len == 16
    got = np.concatenate([b['input_ids'].numpy() for b in ds])
    np.testing.assert_array_equal(got, tokens.astype(np.int64))
    ids, starts, lengths = np.array([3, 0, 3]), np.array([4, 0, 0]), np.array([12, 16, 2])
    out = np.empty(30, np.int64)
    ds.reader.read_segments(ids, starts, lengths, out=out)
    np.testing.assert_array_equal(out, _naive_segments(tokens, ids, starts, lengths))


def test_unequal_rows_in_fallback_name_the_shard(tmp_path):
    from streaming import MDSWriter

    with MDSWriter(out=str(tmp_path), columns={'tokens': 'ndarray'}) as w:
        for n in (8, 8, 9, 8):
            w.write({'tokens': np.arange(n, dtype=np.uint16)})
    ds = SLWDataset(local=str(tmp_path), batch_size=4)
    with pytest.raises(ShardFormatError, match=r'shard\.00000\.mds.*lengths \[8, 9\]'):
        list(ds)


def test_missing_column_is_named(tmp_path):
    from streaming import MDSWriter

    with MDSWriter(out=str(tmp_path), columns={'text': 'str'}) as w:
        w.write({'text': 'hello'})
    with pytest.raises(ShardFormatError, match=r"shard\.00000\.mds: no column 'tokens'"):
        SLWDataset(local=str(tmp_path), batch_size=1)


def test_truncated_shard_file_is_refused(tmp_path):
    write_token_shards(str(tmp_path), num_rows=16, seq_len=8, rows_per_shard=8, compression=None)
    path = os.path.join(str(tmp_path), 'shard.00001.mds')
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:36] + (1).to_bytes(4, 'little') + data[40:])  # corrupt the end offset
    ds = SLWDataset(local=str(tmp_path), batch_size=8)
    with pytest.raises(ShardFormatError, match='shard.00001.mds: header says'):
        list(ds)


def test_column_layout_with_extra_fixed_columns(tmp_path):
    from streaming import MDSWriter

    tokens = np.arange(30 * 6, dtype=np.uint16).reshape(30, 6)
    with MDSWriter(out=str(tmp_path), columns={'id': 'int', 'tokens': 'ndarray:uint16:6'}, size_limit=200) as w:
        for i, row in enumerate(tokens):
            w.write({'id': i, 'tokens': row})
    ds = SLWDataset(local=str(tmp_path), batch_size=3)
    layout = ds.reader.layouts[0]
    assert isinstance(layout, ColumnLayout) and layout.fixed and layout.offset == 8
    np.testing.assert_array_equal(ds.reader.read_rows(np.array([29, 0, 13])), tokens[[29, 0, 13]])
    # Segments come from the column's strided view, single slices and runs alike.
    ids, starts, lengths = np.array([29, 3, 17, 4, 0]), np.array([2, 2, 2, 0, 5]), np.array([4] * 3 + [6, 1])
    np.testing.assert_array_equal(
        ds.reader.read_segments(ids, starts, lengths), _naive_segments(tokens, ids, starts, lengths)
    )
