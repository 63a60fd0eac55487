"""A run killed with SIGKILL leaves streaming's shared memory behind; the next run starts cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import gettempdir

import numpy as np
import pytest
import torch

from slwdata.dataset import SLWDataset
from slwdata.dataset.shm import owner_path
from slwdata.dataset.testing import write_token_shards

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
from slwdata.dataset import SLWDataset
ds = SLWDataset(remote=sys.argv[1], local=sys.argv[2], batch_size=4)
print('prefix', ds._shm_prefix_int, flush=True)
if sys.argv[3] == 'iterate':
    for i, b in enumerate(ds):
        print('batch', i, flush=True)
        time.sleep(0.5)
else:
    time.sleep(300)
"""


@pytest.fixture
def remote(tmp_path):
    tokens = write_token_shards(
        (str(tmp_path / 'src'), str(tmp_path / 'remote')), num_rows=64, seq_len=16, rows_per_shard=4
    )
    return str(tmp_path / 'remote'), tokens


def run_and_kill(remote_dir, local, mode, wait_for):
    """Start a child that uses the dataset, SIGKILL its process group once it printed
    `wait_for`; return the child's shared-memory prefix."""
    proc = subprocess.Popen(
        [sys.executable, '-c', CHILD, remote_dir, local, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        start_new_session=True,
    )
    lines, prefix = [], None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith('prefix'):
                prefix = int(line.split()[1])
            if line.startswith(wait_for):
                break
        else:
            pytest.fail('child did not get going: ' + ''.join(lines[-20:]))
    finally:
        # Kill the whole group, as a scheduler or the OOM killer of a container does: that
        # includes multiprocessing's resource tracker, which would otherwise unlink the
        # segments of its dead parent.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert prefix is not None and any(line.startswith(wait_for) for line in lines), ''.join(lines)
    return prefix


def shm_left(prefix):
    return [n for n in os.listdir('/dev/shm') if n.startswith(f'{prefix:06}_')]


@pytest.mark.skipif(not os.path.isdir('/dev/shm'), reason='POSIX shared memory in /dev/shm')
def test_sigkill_mid_iteration_then_clean_restart(tmp_path, remote):
    remote_dir, tokens = remote
    local = str(tmp_path / 'cache')
    prefix = run_and_kill(remote_dir, local, 'iterate', 'batch 2')
    assert shm_left(prefix), 'the killed run should have leaked its shared memory'
    assert os.path.exists(owner_path(prefix))
    ds = SLWDataset(remote=remote_dir, local=local, batch_size=4)
    assert not shm_left(prefix) or ds._shm_prefix_int == prefix
    got = torch.cat([b['input_ids'] for b in ds]).numpy()
    np.testing.assert_array_equal(got, tokens.astype(np.int64))


@pytest.mark.skipif(not os.path.isdir('/dev/shm'), reason='POSIX shared memory in /dev/shm')
def test_stale_registration_of_same_local_dir(tmp_path, remote):
    remote_dir, tokens = remote
    local = str(tmp_path / 'cache')
    prefix = run_and_kill(remote_dir, local, 'sleep', 'prefix')
    # Without its file locks (e.g. a tmp cleaner ran), streaming sees the dead run's
    # registration of the same local directory and refuses to start.
    for lock in ('barrier_filelock', 'cache_filelock'):
        path = os.path.join(gettempdir(), f'{prefix:06}_{lock}')
        if os.path.exists(path):
            os.unlink(path)

    # streaming's prefix walk stops at the first prefix with neither file locks nor a `_locals`
    # segment; another job's leftovers below ours (a shared machine) hide the registration.
    def walk_reaches(p: int) -> bool:
        return any(
            os.path.exists(os.path.join(gettempdir(), f'{p:06}_{lock}'))
            for lock in ('barrier_filelock', 'cache_filelock')
        ) or os.path.exists(f'/dev/shm/{p:06}_locals')

    if all(walk_reaches(p) for p in range(prefix)):
        with pytest.raises(ValueError, match='Reused local directory'):
            SLWDataset(remote=remote_dir, local=local, batch_size=4, clean_stale_shm=False)
    ds = SLWDataset(remote=remote_dir, local=local, batch_size=4)  # cleans the dead owner
    got = torch.cat([b['input_ids'] for b in ds]).numpy()
    np.testing.assert_array_equal(got, tokens.astype(np.int64))
