"""Two ranks (two processes, gloo): lockstep batches, exactly-once tokens, resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'tests' / 'scripts' / 'dataset_ranks.py'
SEQ, BS, ROWS = 64, 8, 256  # 16 fresh batches per rank


@pytest.fixture(scope='module')
def shards(make_shards):
    return make_shards(ROWS, SEQ, 32, arange=True)


def launch(local, out, port, world=2, timeout=400):
    procs = []
    for rank in range(world):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(port),
            PYTHONPATH=str(REPO),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), '--local', local, '--out', str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])  # a hang fails here, not forever
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    return [dict(np.load(os.path.join(out, f'rank{r}.npz'))) for r in range(world)]


@pytest.fixture(scope='module')
def runs(shards, tmp_path_factory, free_port):
    root, _ = shards
    return launch(root, tmp_path_factory.mktemp('out'), free_port())


def test_two_ranks_lockstep_and_exactly_once(shards, runs):
    _, tokens = shards
    metas = [r['full_meta'] for r in runs]
    # Lockstep: same number of batches, same rows, same planned length, same fresh/tail choice.
    assert len(metas[0]) == len(metas[1]) > ROWS // (2 * BS)
    np.testing.assert_array_equal(metas[0], metas[1])
    assert (metas[0][:, 0] == BS).all() and metas[0][:, 2].any()
    got = np.concatenate([np.concatenate([r['full_trained'], r['full_carried']]) for r in runs])
    counts = np.bincount(got, minlength=tokens.size)
    assert counts.max() == 1 and counts.sum() == tokens.size
    accounts = [json.loads(str(r['full_account'])) for r in runs]
    assert accounts[0]['rank'] == 0 and accounts[1]['rank'] == 1
    assert accounts[0]['steps'] == accounts[1]['steps'] == len(metas[0])


def test_two_ranks_two_workers_same_batches(runs):
    for r in runs:
        assert list(r['workers2_hashes']) == list(r['full_hashes'])


def test_two_ranks_resume_mid_reuse(runs):
    for r in runs:
        assert int(r['resumed_at']) > 6  # after warmup, past the first tail batch
        assert list(r['resumed_hashes']) == list(r['full_hashes'])
