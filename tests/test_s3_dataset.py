"""SLWDataset over an S3-compatible object store (moto's threaded server on 127.0.0.1)."""

import os
import time

import numpy as np
import pytest
import torch

from slwdata.dataset import SLWDataset, make_dataloader
from slwdata.dataset.testing import write_token_shards

moto_server = pytest.importorskip('moto.server')
boto3 = pytest.importorskip('boto3')

SEQ, BS = 32, 4


@pytest.fixture
def s3_env(moto_s3):
    """A fresh moto server (conftest) with the bucket 'slw'; (server, client)."""
    moto_s3[1].create_bucket(Bucket='slw')
    return moto_s3


def upload(tmp_path, client, num_rows=48, rows_per_shard=8, prefix='ds'):
    local_src = str(tmp_path / 'src')
    tokens = write_token_shards(
        (local_src, f's3://slw/{prefix}'), num_rows=num_rows, seq_len=SEQ, rows_per_shard=rows_per_shard
    )
    client.upload_file(os.path.join(local_src, 'slwdata.json'), 'slw', f'{prefix}/slwdata.json')
    return tokens


@pytest.mark.parametrize('num_workers', [0, 2])
def test_stream_full_epoch_from_s3(tmp_path, s3_env, num_workers):
    """With workers, they download while the main process gathers (transfer='addresses')."""
    _, client = s3_env
    tokens = upload(tmp_path, client)
    keys = {o['Key'] for o in client.list_objects_v2(Bucket='slw')['Contents']}
    assert 'ds/index.json' in keys and 'ds/shard.00005.mds.zstd' in keys
    cache = str(tmp_path / 'cache')
    ds = SLWDataset(remote='s3://slw/ds', local=cache, batch_size=BS, validate_hash='xxh64')
    assert ds.meta['seq_len'] == SEQ  # slwdata.json came from the bucket
    got = torch.cat([b['input_ids'] for b in make_dataloader(ds, num_workers=num_workers)])
    np.testing.assert_array_equal(got.numpy(), tokens.astype(np.int64))
    assert sorted(f for f in os.listdir(cache) if f.endswith('.mds'))[-1] == 'shard.00005.mds'


def test_server_gone_mid_epoch_fails_with_bounded_retries(tmp_path, s3_env):
    server, client = s3_env
    upload(tmp_path, client, num_rows=64, rows_per_shard=4)  # 16 shards, one batch each
    ds = SLWDataset(
        remote='s3://slw/ds', local=str(tmp_path / 'cache'), batch_size=BS, remote_timeout=10, prefetch_batches=1
    )
    it = iter(ds)
    next(it)
    server.stop()
    start = time.monotonic()
    with pytest.raises(
        RuntimeError,
        match=r'Could not prepare shard .*shard\.000\d\d\.mds from '
        r's3://slw/ds',
    ):
        for _ in it:
            pass
    assert time.monotonic() - start < 120  # bounded: no hang


def test_altered_shard_is_refused_by_name(tmp_path, s3_env):
    _, client = s3_env
    upload(tmp_path, client)
    key = 'ds/shard.00002.mds.zstd'
    data = bytearray(client.get_object(Bucket='slw', Key=key)['Body'].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket='slw', Key=key, Body=bytes(data))
    ds = SLWDataset(remote='s3://slw/ds', local=str(tmp_path / 'cache'), batch_size=BS, validate_hash='xxh64')
    with pytest.raises(RuntimeError, match=r'shard\.00002\.mds.*Checksum failure'):
        list(ds)
