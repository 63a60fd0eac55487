"""Converter peak memory against corpus size: it must not grow with the corpus.

Converts pile-mini once (1x) and then the same files repeated N times (default 4 and 8, as
distinct file names, so Nx the documents and tokens), each in a fresh process, and prints the
figures side by side with their Nx / 1x ratios.

How memory is measured (and why not ``ru_maxrss``):

- ``getrusage(...).ru_maxrss`` is wrong here twice over. Linux carries a process' peak RSS
  across ``fork`` + ``exec``, so a child started by a big parent (``benchmarks/run_all.py`` at
  2 GB) reports the parent's size; and ``RUSAGE_CHILDREN`` of forked tokenizer workers counts
  every page they share copy-on-write with the writer (torch, the tokenizer) as theirs.
- Writer ``VmHWM``: the kernel's exact peak RSS of the converter process, read from
  ``/proc/self/status`` by the process itself at the end. ``exec`` gives it a fresh address
  space, so nothing of the parent is in it. It still includes file-backed pages (shared
  libraries, memory-mapped token files), which the page cache can drop at any time.
- ``RssAnon`` / ``RssFile`` (``/proc/<pid>/status``) and ``USS`` = ``Private_Clean +
  Private_Dirty`` / ``PSS`` (``/proc/<pid>/smaps_rollup``) of the converter and all its
  descendants, sampled every ``--interval`` seconds by this process. ``RssAnon`` is the heap
  (what would grow if the writer kept per-unit data); a worker's ``USS`` is what only that
  worker holds (pages still shared with the writer are not counted), and the summed ``PSS``
  of the whole process tree is the conversion's real footprint, every shared page counted
  once. Sampled peaks can miss a spike shorter than the interval.

Input is streamed (records are read, tokenized and written unit by unit; the writer keeps no
per-unit data), so the ratios should stay near 1 once the corpus fills a shard. What does grow
from a small corpus to a big one is ``streaming.MDSWriter``'s shard buffer: it caches one
shard's rows (up to ``--size-limit`` bytes, 64 MB by default), then joins them into one bytes
object and zstd-compresses that, so the writer's anonymous memory peaks at about three shard
sizes above its base. pile-mini at 1x is 11.7 MB of rows and never fills a 64 MB shard; from
about 6x on it does, and the peak stops moving (measured: writer RssAnon 463 MB at 1x, 624 MB
at 8x, 633 MB at 16x; with ``--size-limit 8mb``: 463, 475, 478 MB at 1x, 4x, 8x). The bound is
set by ``--size-limit``, not by the corpus. The converter process imports streaming and so
torch (~0.7 GB, about 0.4 GB of it anonymous). Run:
``python benchmarks/bench_convert_memory.py [--copies 4 8 16] [--workers N] [--size-limit 64mb]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
PILE = REPO.parent / "shared" / "data" / "corpora" / "pile-mini"

_CHILD = r"""
import json, sys
from converters import convert
meta = convert([sys.argv[1]], sys.argv[2], seq_len=1024, tokenizer="gpt2", workers=int(sys.argv[3]),
               size_limit=sys.argv[4], progress=False, log=lambda m: None)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print(json.dumps({"tokens": meta["counts"]["tokens"], "vm_hwm_kb": int(status["VmHWM"].split()[0])}))
"""


# ---------------------------------------------------------------------------------------------
# /proc sampling


def _kb_fields(path: str, names: Sequence[str]) -> dict[str, int]:
    """``Name: <n> kB`` fields of a /proc file, in kB (missing file -> empty dict)."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in names:
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _descendants(root: int) -> list[int]:
    """``root``'s descendants, by scanning ``/proc/*/stat`` for parent ids (the kernel here has
    no ``/proc/<pid>/task/<tid>/children``)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            parent[int(name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found.extend(kids)
        frontier.extend(kids)
    return found


class TreeSampler(threading.Thread):
    """Polls a process and its descendants; keeps per-process and whole-tree peaks (MB)."""

    STATUS = ("RssAnon", "RssFile", "VmRSS")
    ROLLUP = ("Pss", "Private_Clean", "Private_Dirty")

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peaks: dict[int, dict[str, float]] = {}
        self.tree_pss_mb = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        total_pss = 0.0
        for pid in [self.root] + _descendants(self.root):
            st = _kb_fields(f"/proc/{pid}/status", self.STATUS)
            ro = _kb_fields(f"/proc/{pid}/smaps_rollup", self.ROLLUP)
            if not st or not ro:
                continue  # exited between the scan and the read
            now = {
                "rss_anon": st.get("RssAnon", 0) / 1024,
                "rss_file": st.get("RssFile", 0) / 1024,
                "rss": st.get("VmRSS", 0) / 1024,
                "pss": ro["Pss"] / 1024,
                "uss": (ro["Private_Clean"] + ro["Private_Dirty"]) / 1024,
            }
            peak = self.peaks.setdefault(pid, dict.fromkeys(now, 0.0))
            for k, v in now.items():
                peak[k] = max(peak[k], v)
            total_pss += now["pss"]
        self.tree_pss_mb = max(self.tree_pss_mb, total_pss)
        self.samples += 1

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def figures(self) -> dict[str, float]:
        """Writer (root) peaks, the largest worker's peaks, and the tree's summed PSS peak."""
        writer = self.peaks.get(self.root, {})
        workers = [p for pid, p in self.peaks.items() if pid != self.root]
        big = lambda k: max((p[k] for p in workers), default=0.0)  # noqa: E731
        return {
            "writer_rss_anon_mb": writer.get("rss_anon", 0.0),
            "writer_rss_file_mb": writer.get("rss_file", 0.0),
            "writer_uss_mb": writer.get("uss", 0.0),
            "worker_uss_mb": big("uss"),
            "worker_rss_anon_mb": big("rss_anon"),
            "workers_seen": len(workers),
            "tree_pss_mb": self.tree_pss_mb,
            "samples": self.samples,
        }


def run_sampled(cmd: list[str], cwd: Path, interval: float = 0.05) -> tuple[str, dict[str, float]]:
    """Run ``cmd``, sampling its process tree's memory; return (stdout, figures). Raises
    ``CalledProcessError`` (with stderr) if it fails."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, interval)
    sampler.start()
    try:
        out, err = proc.communicate()
    finally:
        sampler.stop()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    return out, sampler.figures()


# ---------------------------------------------------------------------------------------------


def _convert(corpus: Path, out: Path, workers: int, size_limit: str, interval: float) -> dict[str, Any]:
    stdout, fig = run_sampled(
        [sys.executable, "-c", _CHILD, str(corpus), str(out), str(workers), size_limit], REPO, interval
    )
    res = json.loads(stdout.strip().splitlines()[-1])
    return {"tokens": res["tokens"], "writer_hwm_mb": res["vm_hwm_kb"] / 1024, **fig}


ROWS = [
    ("writer_hwm_mb", "writer VmHWM (exact peak RSS, incl. file pages)"),
    ("writer_rss_anon_mb", "writer RssAnon peak (heap)"),
    ("writer_rss_file_mb", "writer RssFile peak (mapped files, libs)"),
    ("worker_uss_mb", "largest worker USS peak (its own pages)"),
    ("worker_rss_anon_mb", "largest worker RssAnon peak (incl. COW-shared)"),
    ("tree_pss_mb", "whole tree summed PSS peak"),
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure memory for 1x and each ``--copies`` x pile-mini; returns the figures (also printed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 16x: pile-mini fills the 64 MB shard buffer from ~6x on, so 8x -> 16x shows the plateau.
    ap.add_argument(
        "--copies",
        type=int,
        nargs="+",
        default=[4, 8, 16],
        help="how many times the corpus is repeated, one run each (default 4 8 16)",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tokenizer processes")
    ap.add_argument(
        "--size-limit",
        default="64mb",
        help="shard size limit passed to convert (default 64mb, the converter's default)",
    )
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between /proc samples")
    ap.add_argument("--corpus", default=str(PILE), help="directory of .jsonl.zst files (default pile-mini)")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    tmp = Path(tempfile.mkdtemp(prefix="bench-convert-mem-"))
    runs: dict[int, dict[str, Any]] = {}
    try:
        runs[1] = _convert(corpus, tmp / "out1", args.workers, args.size_limit, args.interval)
        for n in args.copies:
            big = tmp / f"x{n}"
            big.mkdir()
            for i in range(n):
                for f in sorted(corpus.glob("*.jsonl*")):
                    shutil.copy(f, big / f"{i:02d}-{f.name}")  # copies: symlinks would resolve to one input
            runs[n] = _convert(big, tmp / f"out{n}", args.workers, args.size_limit, args.interval)
            shutil.rmtree(tmp / f"out{n}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sizes = [1] + list(args.copies)
    fig: dict[str, Any] = {"copies": list(args.copies), "workers": args.workers, "size_limit": args.size_limit}
    for n in sizes:
        for k, v in runs[n].items():
            fig[f"{k}_{n}x"] = v
    for n in args.copies:
        for k, _ in ROWS:
            fig[f"{k}_ratio_{n}x"] = runs[n][k] / runs[1][k] if runs[1][k] else None

    print(
        f"converter memory, {args.workers} workers, --size-limit {args.size_limit}; tokens: "
        + ", ".join(f"{n}x {runs[n]['tokens']:,}" for n in sizes)
    )
    head = "".join(f"{str(n) + 'x':>9}" for n in sizes) + "".join(f"{f'{n}x/1x':>8}" for n in args.copies)
    print(f"  {'MB':<50}{head}")
    for k, label in ROWS:
        vals = "".join(f"{runs[n][k]:9.0f}" for n in sizes)
        ratios = "".join(f"{runs[n][k] / runs[1][k]:8.2f}" if runs[1][k] else f"{'-':>8}" for n in args.copies)
        print(f"  {label:<50}{vals}{ratios}")
    print(
        "  rows written (uncompressed): "
        + ", ".join(f"{n}x {runs[n]['tokens'] * 2 / 2**20:.0f} MB" for n in sizes)
        + f"; the writer buffers up to one shard (--size-limit {args.size_limit}) of them, then joins and "
        "compresses it, so its peak grows until the corpus fills a shard and is flat after"
    )
    print(
        "  (VmHWM read by the converter itself; the rest sampled from /proc every "
        f"{args.interval:g} s: {', '.join(str(runs[n]['samples']) for n in sizes)} samples)"
    )
    return fig


if __name__ == "__main__":
    main()
