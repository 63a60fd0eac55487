"""Converter throughput on pile-mini (GPT-2, seq_len 1024), printed next to two references.

- ceiling: tiktoken ``encode_ordinary_batch`` on all cores over the same documents already in
  memory (no reading, no writing): what tokenization alone can do on this machine;
- ours: ``converters.convert`` end to end (read + decompress + tokenize + write zstd MDS);
- baseline: a minimal single-process llm-foundry style ``ConcatTokens`` loop (tokenize each
  document, append EOS, cut ``seq_len`` rows, ``MDSWriter``), written here for comparison.

Goals: ours >= 0.8x ceiling and >= 1.5x baseline. Figures are printed as measured, goals met
or not. Run: ``python benchmarks/bench_convert.py [--workers N] [--corpus DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PILE = REPO.parent / "shared" / "data" / "corpora" / "pile-mini"


def _load_docs(corpus: Path) -> list[str]:
    from converters.readers import open_decompressed

    docs = []
    for f in sorted(corpus.glob("*.jsonl*")):
        with open_decompressed(f) as s:
            docs.extend(json.loads(line)["text"] for line in s if line.strip())
    return docs


def _peak_rss_mb() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": me, "largest_child": kids}


def baseline_concat_tokens(corpus: Path, out: str, tok: Any, seq_len: int) -> int:
    """llm-foundry ConcatTokens, minimal: one process, one document at a time, rows to MDSWriter."""
    import numpy as np
    from streaming import MDSWriter

    from converters.readers import open_decompressed

    buf: list[int] = []
    rows = 0
    with MDSWriter(out=out, columns={"tokens": f"ndarray:uint16:{seq_len}"}, compression="zstd:3",
                   hashes=["xxh64"]) as w:
        for f in sorted(corpus.glob("*.jsonl*")):
            with open_decompressed(f) as s:
                for line in s:
                    if not line.strip():
                        continue
                    buf.extend(tok.enc.encode_ordinary(json.loads(line)["text"]))
                    buf.append(tok.eos_id)
                    while len(buf) >= seq_len:
                        w.write({"tokens": np.asarray(buf[:seq_len], np.uint16)})
                        del buf[:seq_len]
                        rows += 1
    return rows


_CHILD = r"""
import json, resource, sys, time
import streaming  # import cost (torch) is paid before timing
from converters import convert
from slwdata.tokenizers import load_tokenizer
load_tokenizer("gpt2")
t = time.perf_counter()
meta = convert([sys.argv[1]], sys.argv[2], seq_len=int(sys.argv[3]), tokenizer="gpt2",
               workers=int(sys.argv[4]), progress=False, log=lambda m: None)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "meta": meta,
                  "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _run_ours_isolated(corpus: Path, out: Path, seq_len: int, workers: int) -> dict[str, Any]:
    """Our converter in a fresh process, so its peak RSS is its own (not the ceiling's docs)."""
    import subprocess

    res = subprocess.run([sys.executable, "-c", _CHILD, str(corpus), str(out), str(seq_len), str(workers)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run all three measurements once and return the figures (also printed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(PILE), help="directory of .jsonl[.zst] files (default pile-mini)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for ours/ceiling threads")
    ap.add_argument("--seq-len", type=int, default=1024, help="row length (default 1024)")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)

    from slwdata.tokenizers import load_tokenizer

    import streaming  # noqa: F401 - import cost (torch) is paid before any timing

    tmp = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    # Ours first, in a fresh process: Linux keeps ru_maxrss across fork+exec, so it must start
    # before this process holds the documents in memory.
    ours = _run_ours_isolated(corpus, tmp / "ours", args.seq_len, args.workers)
    ours_s = ours["seconds"]
    tok = load_tokenizer("gpt2")
    docs = _load_docs(corpus)

    t = time.perf_counter()
    ids = tok.enc.encode_ordinary_batch(docs, num_threads=args.workers)
    ceiling_s = time.perf_counter() - t
    n_tokens = sum(map(len, ids)) + len(docs)
    del ids

    try:
        meta = ours["meta"]
        assert meta["counts"]["tokens"] == n_tokens, (meta["counts"]["tokens"], n_tokens)

        t = time.perf_counter()
        rows = baseline_concat_tokens(corpus, str(tmp / "baseline"), tok, args.seq_len)
        base_s = time.perf_counter() - t
        assert rows == meta["counts"]["rows"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    fig = {
        "corpus": str(corpus), "documents": len(docs), "tokens": n_tokens, "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "ceiling_tok_s": n_tokens / ceiling_s, "ours_tok_s": n_tokens / ours_s, "baseline_tok_s": n_tokens / base_s,
        "ceiling_s": ceiling_s, "ours_s": ours_s, "baseline_s": base_s,
    }
    fig["ours_vs_ceiling"] = fig["ours_tok_s"] / fig["ceiling_tok_s"]
    fig["ours_vs_baseline"] = fig["ours_tok_s"] / fig["baseline_tok_s"]
    fig["peak_rss_mb"] = {"ours_writer": ours["rss_self_mb"], "ours_largest_worker": ours["rss_child_mb"],
                          "bench_process": _peak_rss_mb()["self"]}
    print(f"corpus {corpus.name}: {len(docs)} docs, {n_tokens:,} GPT-2 tokens (incl. one EOS/doc); "
          f"{args.workers} workers on {os.cpu_count()} CPUs")
    print(f"  tokenizer-only ceiling : {fig['ceiling_tok_s'] / 1e6:7.2f} M tok/s ({ceiling_s:.2f} s)")
    print(f"  ours (end to end)      : {fig['ours_tok_s'] / 1e6:7.2f} M tok/s ({ours_s:.2f} s)")
    print(f"  ConcatTokens baseline  : {fig['baseline_tok_s'] / 1e6:7.2f} M tok/s ({base_s:.2f} s)")
    print(f"  ours / ceiling  = {fig['ours_vs_ceiling']:.2f}x (goal >= 0.8x: {'met' if fig['ours_vs_ceiling'] >= 0.8 else 'MISSED'})")
    print(f"  ours / baseline = {fig['ours_vs_baseline']:.2f}x (goal >= 1.5x: {'met' if fig['ours_vs_baseline'] >= 1.5 else 'MISSED'})")
    r = fig["peak_rss_mb"]
    print(f"  peak RSS (ours): writer process {r['ours_writer']:.0f} MB, largest tokenizer worker "
          f"{r['ours_largest_worker']:.0f} MB; both include ~700 MB of torch that the timed child imports up "
          f"front via streaming, which the forked workers share copy-on-write (bench process, holding all docs for the ceiling/baseline: "
          f"{r['bench_process']:.0f} MB)")
    return fig


if __name__ == "__main__":
    main()
