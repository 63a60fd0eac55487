"""Issue 15, case 4: the stale shared-memory cleaner never removes a live job's segments, owner
records go away on close() and at exit, and a SIGKILLed run's leftovers are still cleaned.

Every process here gets a private TMPDIR: owner records and streaming's file locks live there,
so the cleaners of these tests only ever see this test's records (/dev/shm itself is shared
with whatever else runs on the machine)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slwdata.dataset.testing import write_token_shards

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isdir('/dev/shm'), reason='POSIX shared memory in /dev/shm'),
]

REPO = Path(__file__).resolve().parents[1]

PLAIN_JOB = """
import sys
from streaming import StreamingDataset
ds = StreamingDataset(local=sys.argv[1], batch_size=4)
print('prefix', ds._shm_prefix_int, flush=True)
sys.stdin.readline()                      # the test runs the other job meanwhile
rows = sum(1 for _ in ds)
print('rows', rows, flush=True)
"""

SLW_JOB = """
import sys, time
from slwdata.dataset import SLWDataset
ds = SLWDataset(local=sys.argv[1], batch_size=4)
print('prefix', ds._shm_prefix_int, flush=True)
print('batches', sum(1 for _ in ds), flush=True)
if sys.argv[2] == 'close':
    ds.close()
    import os
    from slwdata.dataset.shm import owner_path
    print('record after close', os.path.exists(owner_path(ds._shm_prefix_int)), flush=True)
elif sys.argv[2] == 'hang':
    time.sleep(120)
"""


@pytest.fixture
def env(tmp_path):
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    return dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp))


def _data(tmp_path, name):
    root = str(tmp_path / name)
    write_token_shards(root, num_rows=32, seq_len=16, rows_per_shard=8, compression=None)
    return root


def _run(code, *args, env, timeout=120):
    out = subprocess.run([sys.executable, '-c', code, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _segments(prefix):
    return sorted(n for n in os.listdir('/dev/shm') if n.startswith(f'{prefix:06}_'))


def _record(env, prefix):
    return os.path.join(env['TMPDIR'], f'slwdata_owner_{prefix:06}.json')


def _dead_pid():
    proc = subprocess.Popen(['true'])
    proc.wait(timeout=10)
    return proc.pid


def test_live_plain_streaming_job_keeps_its_memory(tmp_path, env):
    """The issue's case: an owner record left by an earlier SLWDataset process that had the
    same prefix (here written as that process left it: dead pid, no segment inodes), a plain
    StreamingDataset job now running on that prefix, and a new SLWDataset process."""
    plain = subprocess.Popen(
        [sys.executable, '-c', PLAIN_JOB, _data(tmp_path, 'a')],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        prefix = int(plain.stdout.readline().split()[1])
        before = _segments(prefix)
        assert before
        with open(_record(env, prefix), 'w') as f:
            f.write(f'{{"pid": {_dead_pid()}, "start": "1"}}')
        out = _run(SLW_JOB, _data(tmp_path, 'b'), 'exit', env=env)
        assert 'batches 8' in out.stdout
        assert _segments(prefix) == before, out.stderr
        assert f'prefix {prefix:06} of dead process' in out.stderr and 'left alone' in out.stderr
        assert not os.path.exists(_record(env, prefix))  # the stale record is dropped
        out, err = plain.communicate('go\n', timeout=60)
        assert plain.returncode == 0 and 'rows 32' in out, err
    finally:
        if plain.poll() is None:
            plain.kill()
            plain.wait(timeout=30)


@pytest.mark.parametrize('how', ['close', 'exit'])
def test_owner_record_removed_on_close_and_at_exit(tmp_path, env, how):
    out = _run(SLW_JOB, _data(tmp_path, 'a'), how, env=env)
    prefix = int(out.stdout.split()[1])
    if how == 'close':
        assert 'record after close False' in out.stdout
    assert not os.path.exists(_record(env, prefix))
    assert not os.listdir(env['TMPDIR']) or not [f for f in os.listdir(env['TMPDIR']) if f.startswith('slwdata_owner_')]


def test_sigkilled_run_is_still_cleaned(tmp_path, env):
    root = _data(tmp_path, 'a')
    job = subprocess.Popen(
        [sys.executable, '-c', SLW_JOB, root, 'hang'],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        prefix = int(job.stdout.readline().split()[1])
        assert job.stdout.readline().startswith('batches')
    finally:
        # The whole group, as the OOM killer of a container does (multiprocessing's resource
        # tracker would otherwise unlink the segments of its dead parent).
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    leaked = _segments(prefix)
    assert 'locals' in ' '.join(leaked) and 'slw_verified' in ' '.join(leaked)
    assert os.path.exists(_record(env, prefix))
    out = _run(SLW_JOB, root, 'exit', env=env)  # the same local dir: it must be freed first
    assert 'batches 8' in out.stdout
    assert f'left by dead process {job.pid}' in out.stderr
    assert _segments(prefix) == [] and not os.path.exists(_record(env, prefix))
