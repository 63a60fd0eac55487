"""One rank of a multi-rank SLWDataset run (launched by tests/test_dataset_ranks.py).

Reads RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT like
streaming does, iterates one epoch with a bound pacing schedule and writes what the model
would receive (tokens after truncation to ``slw_seq_len``), per-batch metadata and the carried
ledger's tokens to ``<out>/rank<R>.npz``.

    python tests/scripts/dataset_ranks.py --local SHARDS --out DIR

Scenarios, in one process per rank (imports dominate the run time): a full epoch with 0
workers, the same with 2 workers, and 2 workers stopped after the first tail batch then resumed
from rank 0's ``state_dict`` in a new dataset.
"""

import argparse
import datetime
import hashlib
import json
import os
import sys

import numpy as np
import torch.distributed as dist


def run_epoch(args, world, workers=0, stop_after=None, state_in=None):
    """One (partial) epoch in a fresh SLWDataset; returns what the model receives."""
    from slwdata.dataset import SLWDataset, make_dataloader
    from slwdata.pacing import PacingSchedule

    bs = args.batch_size
    ds = SLWDataset(local=args.local, batch_size=bs, reuse=args.reuse, shuffle=True, shuffle_seed=5)
    ds.bind_pacing(PacingSchedule(start=8, duration=args.duration, multiple=8), rows_per_step=bs * world)
    loader = make_dataloader(ds, num_workers=workers)
    if state_in is not None:
        loader.load_state_dict(state_in)
    trained, meta, hashes = [], [], []
    for i, batch in enumerate(loader):
        L = int(batch['slw_seq_len'][0])
        trained.append(batch['input_ids'][:, :L].reshape(-1).numpy())
        meta.append((batch['input_ids'].shape[0], L, int(batch['slw_tail_rows'][0])))
        hashes.append(hashlib.sha1(batch['input_ids'].numpy().tobytes()).hexdigest())
        if stop_after is not None and i + 1 == stop_after:
            break
    state = loader.state_dict()
    _, ledger = ds.epochs.start(1)
    carried = np.empty(0, np.int64)
    if ledger is not None and ledger.tokens:
        seg = ledger.segments()
        carried = ds.reader.read_segments(seg['row'], seg['start'], seg['length'])
    out = {
        'trained': np.concatenate(trained) if trained else np.empty(0, np.int64),
        'meta': np.array(meta, np.int64).reshape(-1, 3),
        'carried': carried.astype(np.int64),
        'hashes': np.array(hashes),
        'account': json.dumps(ds.epoch_account(0).as_dict()),
    }
    del loader, ds
    return out, state


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument('--local', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--reuse', default='deferred')
    p.add_argument('--duration', default='6ba')
    args = p.parse_args()

    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    dist.init_process_group('gloo', rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    results = {}
    # Importing torch + streaming costs most of a process's life: run every scenario here.
    full, _ = run_epoch(args, world)
    results.update({f'full_{k}': v for k, v in full.items()})
    two, _ = run_epoch(args, world, workers=2)
    results.update({f'workers2_{k}': v for k, v in two.items()})
    first_tail = int(np.flatnonzero(full['meta'][:, 2])[0])
    part1, state = run_epoch(args, world, workers=2, stop_after=first_tail + 1)
    # Every rank resumes from rank 0's state, as from a Composer checkpoint.
    state = [state]
    dist.broadcast_object_list(state, src=0)
    part2, _ = run_epoch(args, world, workers=2, state_in=state[0])
    results['resumed_hashes'] = np.concatenate([part1['hashes'], part2['hashes']])
    results['resumed_at'] = np.array(first_tail + 1)
    np.savez(os.path.join(args.out, f'rank{rank}.npz'), **results)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
