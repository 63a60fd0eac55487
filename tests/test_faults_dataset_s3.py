"""Issue 15, case 5 (dataset side): an S3 endpoint that stops answering (its process frozen with
SIGSTOP, so connections are still accepted) ends SLWDataset iteration with an error naming the
shard and the object within ``remote_timeout``, after a logged retry; it used to hang."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from slwdata.dataset import SLWDataset, make_dataloader
from slwdata.dataset.testing import write_token_shards

pytest.importorskip('moto.server')
boto3 = pytest.importorskip('boto3')

pytestmark = pytest.mark.slow

SEQ, BS, TIMEOUT = 16, 4, 12.0
SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False)
server.start()
print('ready', flush=True)
sys.stdin.read()
"""


@pytest.fixture
def frozen_store(tmp_path, monkeypatch, free_port):
    """A moto server in its own process holding 16 one-batch shards; yields a function that
    freezes it (SIGSTOP). The server is thawed and killed in any case."""
    port = free_port()
    env = {
        'AWS_ACCESS_KEY_ID': 'testing',
        'AWS_SECRET_ACCESS_KEY': 'testing',
        'AWS_SESSION_TOKEN': 'testing',
        'AWS_DEFAULT_REGION': 'us-east-1',
        'S3_ENDPOINT_URL': f'http://127.0.0.1:{port}',
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = subprocess.Popen(
        [sys.executable, '-c', SERVER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert server.stdout.readline().strip() == 'ready'
        boto3.client('s3', endpoint_url=env['S3_ENDPOINT_URL']).create_bucket(Bucket='slw')
        write_token_shards((str(tmp_path / 'src'), 's3://slw/ds'), num_rows=16 * BS, seq_len=SEQ, rows_per_shard=BS)
        yield lambda: os.kill(server.pid, signal.SIGSTOP)
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait(timeout=30)


def test_frozen_store_ends_iteration_in_bounded_time(tmp_path, frozen_store, caplog):
    ds = SLWDataset(
        remote='s3://slw/ds', local=str(tmp_path / 'cache'), batch_size=BS, remote_timeout=TIMEOUT, prefetch_batches=0
    )
    try:
        it = iter(ds)
        next(it)
        frozen_store()
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger='slwdata.dataset.remote'), pytest.raises(RuntimeError) as err:
            next(it)
        elapsed = time.monotonic() - start
    finally:
        ds.close()
    msg = str(err.value)
    assert 'Could not prepare shard' in msg and 'shard.00001.mds' in msg
    assert 's3://slw/ds/shard.00001.mds.zstd: the object store did not deliver it (' in msg
    assert f'could end past remote_timeout={TIMEOUT:g} s' in msg
    assert elapsed < TIMEOUT + 3, elapsed
    retries = [r.getMessage() for r in caplog.records if 'retrying' in r.getMessage()]
    assert retries and 's3://slw/ds/shard.00001.mds.zstd' in retries[0], caplog.text


def test_frozen_store_with_workers(tmp_path, frozen_store):
    """A DataLoader worker downloads; its error reaches the main process, also in bounded time."""
    ds = SLWDataset(remote='s3://slw/ds', local=str(tmp_path / 'cache'), batch_size=BS, remote_timeout=TIMEOUT)
    frozen_store()  # index.json is local already: the first shard is the first download
    start = time.monotonic()
    try:
        with pytest.raises(
            RuntimeError,
            match=r'(?s)shard\.00000\.mds.*did not deliver it.*'
            r'past remote_timeout=12 s',
        ):
            next(iter(make_dataloader(ds, num_workers=1)))
    finally:
        ds.close()
    assert time.monotonic() - start < TIMEOUT + 10  # + the worker's start
