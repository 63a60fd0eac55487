"""Benchmark: the cost of SLWDataset's shard hash check (``verify_hashes``) on a first epoch.

Each shard is hashed once per job, when a process first maps it (in a DataLoader worker when
there are workers), so the check costs only the first epoch of a job; this measures that epoch
with and without it, side by side: per round a fresh dataset (a new job's record) for each
setting, in alternating order, over local raw shards already in the page cache. Prints the
ratio ``verify_hashes=True`` / ``False`` of epoch wall time per round, median and range.

    .venv/bin/python benchmarks/bench_integrity.py [--quick] [--mb 128]

Data: pile-mini converted at seq_len 1024 (12 shards of 1 MB, as ``bench_dataset.py``), and
random tokens written as ``--mb`` MB in shards of 16 MB (the check reads every byte once, so
its share grows with the bytes per row the epoch gathers; ``xxh64`` throughput is printed too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _epoch_s(local: str, batch_size: int, workers: int, verify: bool) -> float:
    """Wall seconds of one epoch of a fresh dataset (its first: every shard is checked)."""
    from slwdata.dataset import SLWDataset, make_dataloader

    ds = SLWDataset(local=local, batch_size=batch_size, verify_hashes=verify)
    try:
        loader = make_dataloader(ds, num_workers=workers)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - t0
    finally:
        ds.close()


def _synthetic(out: Path, mb: int, seq_len: int = 1024) -> str:
    if not (out / 'index.json').exists():
        from slwdata.dataset.testing import write_token_shards

        rows = mb * 2**20 // (2 * seq_len)
        write_token_shards(
            str(out), num_rows=rows, seq_len=seq_len, rows_per_shard=16 * 2**20 // (2 * seq_len), compression=None
        )
    return str(out)


def _hash_mb_per_s(local: str) -> float:
    from streaming.base.hashing import get_hash

    files = sorted(Path(local).glob('*.mds'))
    data = [f.read_bytes() for f in files]
    t0 = time.perf_counter()
    for d in data:
        get_hash('xxh64', d)
    return sum(map(len, data)) / 2**20 / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--quick', action='store_true', help='2 rounds, a 32 MB synthetic set')
    p.add_argument('--mb', type=int, default=128, help='size of the synthetic set')
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    from bench_dataset import build_shards

    from slwdata.dataset import SLWDataset

    tmp = Path(os.environ.get('SLW_BENCH_DIR') or tempfile.gettempdir())
    mb = 32 if args.quick else args.mb
    sets = {
        'pile-mini (12 x 1 MB)': str(build_shards(tmp / 'slwdata-bench-pile-1024-1mb')),
        f'random ({mb} MB, 16 MB shards)': _synthetic(tmp / f'slwdata-bench-random-{mb}mb', mb),
    }
    rounds = 2 if args.quick else 11
    out: dict[str, Any] = {'batch_size': args.batch_size, 'rounds': rounds}
    lines = [
        '| data | xxh64 MB/s | workers | epoch s, check off (median) | check on (median) | '
        'on - off s per round: median [min, max] | on / off per round: median [min, max] |',
        '|---|---|---|---|---|---|---|',
    ]
    for name, local in sets.items():
        warm = SLWDataset(local=local, batch_size=args.batch_size, verify_hashes=False)
        list(warm)  # decompress once, and bring every shard into the page cache
        warm.close()
        speed = out[f'{name}: xxh64 MB/s'] = round(_hash_mb_per_s(local))
        for workers in (0, 2):
            times: dict[bool, list[float]] = {False: [], True: []}
            for r in range(rounds):
                for verify in (False, True) if r % 2 == 0 else (True, False):
                    times[verify].append(_epoch_s(local, args.batch_size, workers, verify))
            ratios = [on / off for on, off in zip(times[True], times[False])]
            extra = [on - off for on, off in zip(times[True], times[False])]
            key = f'{name}, {workers} workers'
            out[key] = {
                'off_s': [round(t, 3) for t in times[False]],
                'on_s': [round(t, 3) for t in times[True]],
                'ratio_median': round(statistics.median(ratios), 3),
                'ratio_min': round(min(ratios), 3),
                'ratio_max': round(max(ratios), 3),
            }
            lines.append(
                f'| {name} | {speed} | {workers} | {statistics.median(times[False]):.3f} | '
                f'{statistics.median(times[True]):.3f} | '
                f'{statistics.median(extra):+.3f} [{min(extra):+.3f}, {max(extra):+.3f}] | '
                f'{statistics.median(ratios):.3f} [{min(ratios):.3f}, '
                f'{max(ratios):.3f}] |'
            )
            print(lines[-1], flush=True)
    out['table'] = '\n'.join(lines)
    print(out['table'])
    return out


if __name__ == '__main__':
    main()
