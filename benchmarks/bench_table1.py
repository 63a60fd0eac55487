"""The paper's Table 1 at small scale: baseline vs SLW vs Shortformer two-stage, normal and
aggressive LR, equal trained tokens.

Li, Zhang, He (NeurIPS 2022), Table 1 compares GPT-2 pre-training stability and quality with and
without Sequence Length Warmup. This benchmark repeats the comparison on what a CPU can afford:
the same small GPT, the same shards (the embedded standard-library corpus) and seed, trained

- ``baseline``: full length from step 0;
- ``slw``: linear pacing from 8 to the full length over T (fraction of the token budget),
  truncated tails re-served (``reuse="deferred"``);
- ``shortformer``: two stages, a quarter of the length for the first half of the tokens, then
  the full length (Press et al.'s Shortformer staged training);

each at a normal and an aggressive peak LR, all stopping at the same trained-token count.
Reported per run: steps with loss ratio > 1.2, max loss ratio, Adam variance max
(max over steps of the sqrt of the largest second-moment entry, from StabilityMonitor), final
validation perplexity, wall time.

CPU default (~5-10 min on 2 cores): ``tiny`` GPT, byte-level tokens, rows of 256.
``--gpu``: GPT-2 124M class, GPT-2 tokenizer, rows of 1024, bf16.

    python benchmarks/bench_table1.py            # CPU
    python benchmarks/bench_table1.py --gpu      # a CUDA GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(
        model_size="tiny",
        tokenizer="bytes",
        seq_len=256,
        batch_size=16,
        steps=60,
        lrs=(2e-3, 2e-2),
        corpus_mb=3.0,
        device="cpu",
        precision="fp32",
        eval_batches=8,
    ),
    "gpu": dict(
        model_size="gpt2-124m",
        tokenizer="gpt2",
        seq_len=1024,
        batch_size=32,
        steps=400,
        lrs=(6e-4, 6e-3),
        corpus_mb=12.0,
        device="gpu",
        precision="amp_bf16",
        eval_batches=16,
    ),
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from slwdata.demo.quickstart import QuickstartConfig, RunSpec, prepare_data, train_run
    from slwdata.demo.report import format_table, plot_runs, write_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="GPT-2 124M class preset on a CUDA GPU")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "_work" / "table1"))
    ap.add_argument("--steps", type=int, help="baseline steps (token budget = steps*batch*seq)")
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lrs", type=float, nargs="+", help="peak LRs (default: a normal and an aggressive one)")
    ap.add_argument("--kinds", nargs="+", default=["baseline", "slw", "shortformer"])
    ap.add_argument("--warmup-duration", default="0.3dur", help="SLW T (default 0.3dur of the tokens)")
    ap.add_argument("--lr-warmup", default="0.02dur")
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args(argv)

    p = dict(PRESETS["gpu" if args.gpu else "cpu"])
    for key in ("steps", "seq_len", "batch_size"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    if args.lrs:
        p["lrs"] = tuple(args.lrs)
    out = Path(args.out) / ("gpu" if args.gpu else "cpu")
    data = prepare_data(
        QuickstartConfig(
            out=str(out), seq_len=p["seq_len"], corpus_mb=p["corpus_mb"], tokenizer=p["tokenizer"], progress=False
        )
    )
    total = p["steps"] * p["batch_size"] * p["seq_len"]
    runs = []
    t0 = time.time()
    for lr in p["lrs"]:
        for kind in args.kinds:
            spec = RunSpec(
                name=f"{kind} lr={lr:g}",
                kind=kind,
                train_dir=data["train"],
                val_dir=data["val"],
                total_tokens=total,
                seq_len=p["seq_len"],
                batch_size=p["batch_size"],
                lr=lr,
                lr_warmup=args.lr_warmup,
                model_size=p["model_size"],
                seed=args.seed,
                device=p["device"],
                precision=p["precision"],
                warmup_duration=args.warmup_duration,
                eval_batches=p["eval_batches"],
                progress=False,
            )
            print(f"[table1] {spec.name}: {total:,} tokens ...", flush=True)
            run = train_run(spec)
            run["lr"] = lr
            runs.append(run)
            print(
                f"[table1] {spec.name}: val ppl {run['final_val_ppl']:.2f}, spikes {run['loss_ratio_spikes']}, "
                f"max ratio {run['max_loss_ratio']:.3f}, {run['wall_s']:.0f}s",
                flush=True,
            )
    columns = [
        "steps",
        "trained_tokens",
        "loss_ratio_spikes",
        "max_loss_ratio",
        "adam_var_max",
        "final_val_ppl",
        "wall_s",
    ]
    table = format_table(runs, columns=columns, markdown=True)
    print("\n" + table + "\n")
    plots = plot_runs(runs, out)
    notes = [
        f"preset {'gpu' if args.gpu else 'cpu'}: {p['model_size']} GPT, tokenizer {p['tokenizer']}, "
        f"rows of {p['seq_len']}, batch {p['batch_size']}, {total:,} trained tokens per run "
        "(max_duration in tokens), token-wise cosine LR with warmup "
        f"{args.lr_warmup}, SLW T={args.warmup_duration}, same data order and seed.",
        f"total wall time {time.time() - t0:.0f}s",
    ]
    files = write_report(runs, out, title="Table 1 at small scale", notes=notes, config={"preset": p}, plots=plots)
    reading = _reading(runs, p["lrs"], args.kinds)
    for line in reading:
        print("[table1] " + line)
    return {
        "table": table,
        "reading": reading,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs],
        "preset": p,
        "files": files,
    }


def _reading(runs: list[dict], lrs: Any, kinds: list[str]) -> list[str]:
    """Plain-language comparisons computed from the measured runs (no expectations baked in)."""
    by = {(r["kind"], r["lr"]): r for r in runs}
    lines = []
    for lr in lrs:
        base = by.get(("baseline", lr))
        for kind in kinds:
            run = by.get((kind, lr))
            if base is None or run is None or run is base:
                continue
            if run["final_val_ppl"] and base["final_val_ppl"]:
                rel = 100 * (run["final_val_ppl"] / base["final_val_ppl"] - 1)
                lines.append(
                    f"lr {lr:g}: {kind} val ppl {run['final_val_ppl']:.2f} vs baseline "
                    f"{base['final_val_ppl']:.2f} ({rel:+.0f}%); steps with loss ratio > 1.2: "
                    f"{run['loss_ratio_spikes']} vs {base['loss_ratio_spikes']}"
                )
    lines.append(
        "The loss ratio compares each step's loss with the lowest earlier step loss; with a few "
        "rows per step, SLW's and Shortformer's short early steps carry few tokens and noisy "
        "losses, so at this scale the counts mix batch noise with instability."
    )
    return lines


if __name__ == "__main__":
    res = main()
    print(json.dumps(res["files"]))
