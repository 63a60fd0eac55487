"""``slwdata tune`` runs on this machine: the chosen ``s`` and ``T``, every trial, and the cost.

The setup is the example trainer (``examples/train_slw.py``) on byte-level shards of the Pile
sample (the real converter, ``--tokenizer bytes``), a tiny GPT at a high learning rate, a full
run of ``--full-steps`` full-length steps with a 1 % LR warmup. The command it runs is printed,
so the figures can be reproduced by hand.

    python benchmarks/bench_tune.py                 # CPU size
    python benchmarks/bench_tune.py --lr 0.05 0.1 --full-steps 2000
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slwdata.shards import read_meta_fields

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data" / "corpora" / "pile-mini"


def shards(work: Path, seq_len: int) -> tuple[Path, Path]:
    """Byte-level shards of pile-mini: 00 for training, 01 for validation (reused when present)."""
    from converters import convert

    out = []
    for name, src in (("train", "00.jsonl.zst"), ("val", "01.jsonl.zst")):
        dest = work / f"bytes-{seq_len}" / name
        if read_meta_fields(dest) is None:
            convert([str(SHARED / src)], str(dest), seq_len=seq_len, tokenizer="bytes", progress=False)
        out.append(dest)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(HERE / "_work" / "tune"))
    ap.add_argument(
        "--lr",
        type=float,
        nargs="+",
        default=[0.2, 0.25, 0.3],
        help="one search per learning rate (default %(default)s: both sides of where this model turns unstable)",
    )
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--full-steps", type=int, default=1000, help="full run length in full-length steps")
    ap.add_argument("--warmup", default="0.01dur")
    ap.add_argument("--fresh", action="store_true", help="train every trial again")
    ap.add_argument("tune_args", nargs="*", help="extra flags for slwdata tune (after --)")
    args = ap.parse_args(argv)
    results = [one_lr(args, lr) for lr in args.lr]
    table = "\n\n".join(r.pop("table") for r in results)
    return {"table": table, "searches": results}


def one_lr(args: argparse.Namespace, lr: float) -> dict[str, Any]:
    """One ``slwdata tune`` search at learning rate ``lr``: its table and figures."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train, val = shards(work, args.seq_len)
    vocab = read_meta_fields(train)["tokenizer"]["vocab_size"]
    full_tokens = args.full_steps * args.batch * args.seq_len
    out = work / f"lr{lr:g}"
    cmd = [
        sys.executable,
        "-m",
        "slwdata.cli",
        "tune",
        str(ROOT / "examples" / "configs" / "tiny-cpu.yaml"),
        "--out",
        str(out),
        "--set",
        f"data.train={train}",
        "--set",
        f"data.val={val}",
        "--set",
        f"seq_len={args.seq_len}",
        "--set",
        f"global_batch_size={args.batch}",
        "--set",
        f"model.vocab_size={vocab}",
        "--set",
        f"max_duration={full_tokens}tok",
        "--set",
        f"scheduler.t_warmup={args.warmup}",
        "--set",
        f"optimizer.lr={lr}",
        "--set",
        "eval_subset_num_batches=16",
        "--starts",
        "8,16,32",
        "--t-min",
        "1",
        "--t-max",
        "16",
        "--resolution",
        "1",
        *args.tune_args,
    ]
    if args.fresh:
        cmd.append("--fresh")
    shown = shlex.join(["slwdata", *cmd[3:]]).replace(str(ROOT) + "/", "")
    print("$ " + shown, flush=True)
    t0 = time.time()
    run = subprocess.run(cmd, text=True, capture_output=True)
    print(run.stdout[-4000:], run.stderr[-2000:], flush=True)
    if run.returncode not in (0, 1):
        raise RuntimeError(f"slwdata tune exited {run.returncode}: {run.stderr.strip().splitlines()[-1:]}")
    rep = json.loads((out / "tune.json").read_text())
    u = rep["unit"]
    rows = [
        "| # | stage | s | T | verdict | best val ppl | trained tokens | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen: set = set()
    for i, t in enumerate(rep["trials"], 1):
        verdict = "passes" if t["passed"] else f"fluctuates at {t['fluctuation_at']:,}{u}"
        best = min(v for _, v in t["curve"]["points"])
        rows.append(
            f"| {i} | {t['stage']} | {t['start']} | {t['duration']:,}{u} | {verdict} | {best:.2f} | "
            f"{t['curve']['trained_tokens']:,} | {t['curve']['wall_s']:.0f}{' (same trial)' if (t['start'], t['duration']) in seen else ''} |"
        )
        seen.add((t["start"], t["duration"]))
    space = rep["space"]
    table = "\n".join(
        [
            f"### LR {lr:g}",
            "",
            f"`{shown}`",
            "",
            f"Tiny GPT (2 layers, d_model 128), byte-level Pile sample, rows of {args.seq_len}, {args.batch} rows per "
            f"step, LR {lr:g}, full run {full_tokens:,} tokens with LR warmup {space['lr_warmup']:,}{u}; "
            f"trials train {space['trial_length']:,}{u}, validating every {space['eval_interval']:,}{u}.",
            "",
            f"**Result:** {rep['message']}. Cost: {rep['trial_tokens']:,} trained tokens in "
            f"{len({(t['start'], t['duration']) for t in rep['trials']})} trials = **{rep['cost_fraction']:.1%}** of the "
            f"full run's tokens. Wall times are each trial's own (trials are cached between runs of this "
            "benchmark), on a 2-core machine shared with other jobs.",
            "",
            *rows,
        ]
    )
    return {
        "table": table,
        "lr": lr,
        "start": rep["start"],
        "duration": rep["duration"],
        "unit": u,
        "cost_fraction": round(rep["cost_fraction"], 4),
        "trials": len({(t["start"], t["duration"]) for t in rep["trials"]}),
        "wall_s": round(time.time() - t0, 1),
    }


if __name__ == "__main__":
    res = main()
    print(res["table"])
