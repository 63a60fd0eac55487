"""Converter peak memory against corpus size: it must not grow with the corpus.

Converts pile-mini once and then the same files repeated 4 times (as distinct file names, so
4x the documents and tokens), each in a fresh process, and prints the peak RSS of the writer
process and of the largest tokenizer worker for both, with their ratio. Input is streamed
(records are read, tokenized and written unit by unit), so the ratio should stay near 1.
The writer's figure includes torch (~0.7 GB), which streaming imports.
Run: ``python benchmarks/bench_convert_memory.py [--copies 4] [--workers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PILE = REPO.parent / "shared" / "data" / "corpora" / "pile-mini"

_CHILD = r"""
import json, resource, sys
from converters import convert
meta = convert([sys.argv[1]], sys.argv[2], seq_len=1024, tokenizer="gpt2", workers=int(sys.argv[3]),
               progress=False, log=lambda m: None)
print(json.dumps({"tokens": meta["counts"]["tokens"],
                  "writer_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _convert(corpus: Path, out: Path, workers: int) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-c", _CHILD, str(corpus), str(out), str(workers)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure peak RSS for 1x and ``--copies``x pile-mini; returns the figures (also printed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="how many times the corpus is repeated (default 4)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tokenizer processes")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-convert-mem-"))
    try:
        big = tmp / "big"
        big.mkdir()
        for i in range(args.copies):
            for f in sorted(PILE.glob("*.jsonl.zst")):
                shutil.copy(f, big / f"{i:02d}-{f.name}")
        one = _convert(PILE, tmp / "out1", args.workers)
        many = _convert(big, tmp / "outN", args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fig = {
        "copies": args.copies,
        "tokens_1x": one["tokens"], "tokens_nx": many["tokens"],
        "writer_mb_1x": one["writer_mb"], "writer_mb_nx": many["writer_mb"],
        "worker_mb_1x": one["worker_mb"], "worker_mb_nx": many["worker_mb"],
        "writer_ratio": many["writer_mb"] / one["writer_mb"],
        "worker_ratio": many["worker_mb"] / one["worker_mb"],
    }
    print(f"corpus x1: {one['tokens']:,} tokens, x{args.copies}: {many['tokens']:,} tokens")
    print(f"  peak RSS writer : {one['writer_mb']:.0f} MB -> {many['writer_mb']:.0f} MB "
          f"({fig['writer_ratio']:.2f}x for {args.copies}x the corpus)")
    print(f"  peak RSS worker : {one['worker_mb']:.0f} MB -> {many['worker_mb']:.0f} MB "
          f"({fig['worker_ratio']:.2f}x for {args.copies}x the corpus)")
    return fig


if __name__ == "__main__":
    main()
