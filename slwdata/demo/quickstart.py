"""``slwdata quickstart``: Sequence Length Warmup end to end, offline, on a CPU, in a few minutes.

What it does, in order (everything lands under ``--out``, default ``./slw-quickstart``):

1. builds a small corpus from this Python's standard library (``slwdata.demo.corpus``, no download),
   in The Pile's ``*.jsonl.zst`` layout;
2. converts it with the real converter into fixed-length zstd MDS shards (train and validation);
3. trains a small GPT with Composer three times on the same data and seed:
   a *baseline* at full length; *SLW* (``SequenceLengthWarmup`` + ``SLWDataset`` with
   ``reuse="deferred"``, so truncated tails are served again); and the *noise floor*: the
   baseline at a safe LR held at SLW's start length, as many steps as SLW takes. Baseline and
   SLW stop at the same number of *trained tokens*, by default one pass over the training shards,
   so every tail SLW cuts is re-served within the run (less than one batch is carried);
4. prints a table (loss-ratio counts beside the noise floor, cut = re-served + carried tail
   tokens), the tokens and time SLW needs to reach the baseline's final validation loss, and
   writes ``seq_len.png``, ``loss.png``, ``report.md`` and ``report.json``.

The defaults put at least 2,048 tokens in SLW's shortest step (128 rows x 16), because with fewer
the loss ratio mostly measures mini-batch noise: the floor run shows how much.

Python use::

    >>> from slwdata.demo.quickstart import QuickstartConfig, run_quickstart
    >>> result = run_quickstart(QuickstartConfig(out="/tmp/qs", steps=4))   # doctest: +SKIP
    >>> result["runs"][1]["name"]                                           # doctest: +SKIP
    'slw'
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = "./slw-quickstart"


@dataclasses.dataclass
class QuickstartConfig:
    """Every knob of the quickstart; the CLI flags map one to one onto these fields."""

    out: str = DEFAULT_OUT
    steps: int = 0  # baseline optimizer steps (token budget steps*batch*seq-len); 0: one pass over the data
    seq_len: int = 128
    batch_size: int = 128
    model_size: str = "tiny"
    lr: float = 0.1  # high for this model (the baseline spikes); where benchmarks/RESULTS.md finds SLW's gain
    lr_warmup: str = "5ba"  # in steps ("Nba"), so the LR peaks while SLW is still short
    warmup_duration: str = "40ba"  # SLW's T: 8x the LR warmup
    slw_start: int = 16  # 128 rows x 16 = 2,048 tokens in the shortest step
    floor_lr: float = 0.05  # the noise-floor run: a safe LR, held at --slw-start
    beta2: float = 0.999
    clip: float = 1.0  # gradient-norm clipping (the paper's); 0 turns it off
    seed: int = 17
    device: str = "cpu"
    precision: str | None = None  # None: fp32 on CPU, amp_bf16 on GPU
    corpus_mb: float = 1.1
    tokenizer: str = "bytes"
    eval_batches: int = 1
    eval_points: int = 8  # validation points per run, for the tokens-to-reach figure
    workers: int | None = None
    progress: bool = True
    reuse: str = "deferred"


# ----------------------------------------------------------------------------- data


def _log(msg: str) -> None:
    print(f"[slwdata quickstart] {msg}", flush=True)


def prepare_data(cfg: QuickstartConfig) -> dict[str, Any]:
    """Build the corpus and convert it; returns the train/val shard folders and counts.

    The last corpus file is held out for validation. Reuses shards already converted with the
    same settings (the converter's ``slwdata.json`` records them), so a rerun starts training
    at once.
    """
    from converters import convert
    from slwdata.demo.corpus import build_corpus

    out = Path(cfg.out)
    corpus_dir = out / "corpus"
    stamp = {
        "corpus_mb": cfg.corpus_mb,
        "seq_len": cfg.seq_len,
        "tokenizer": cfg.tokenizer,
        "python": sys.version.split()[0],
    }
    stamp_file = out / "shards" / "quickstart-data.json"
    train_dir, val_dir = out / "shards" / "train", out / "shards" / "val"
    if stamp_file.exists() and json.loads(stamp_file.read_text()).get("stamp") == stamp:
        _log(f"reusing shards in {out / 'shards'}")
        return json.loads(stamp_file.read_text())
    t0 = time.time()
    from slwdata.errors import UserError
    from slwdata.tokenizers import TokenizerError, load_tokenizer

    try:  # fail before building anything, and say how to go on without the GPT-2 file
        load_tokenizer(cfg.tokenizer)
    except TokenizerError as exc:
        raise UserError(f"{exc}\n(or run with --tokenizer bytes: byte-level tokens, no file needed)") from None
    corpus = build_corpus(corpus_dir, max_mb=cfg.corpus_mb, num_files=4)
    _log(
        f"corpus: {corpus['documents']} documents, {corpus['text_bytes'] / 1e6:.1f} MB of text "
        f"from {corpus['source']} -> {corpus_dir}"
    )
    files = corpus["files"]
    counts = {}
    for name, inputs, dest in (("train", files[:-1], train_dir), ("val", files[-1:], val_dir)):
        shutil.rmtree(dest, ignore_errors=True)
        counts[name] = convert(
            inputs,
            str(dest),
            seq_len=cfg.seq_len,
            tokenizer=cfg.tokenizer,
            workers=cfg.workers,
            progress=cfg.progress,
            overwrite=True,
        )
        c = counts[name].get("counts", counts[name])
        _log(
            f"converted {name}: {c.get('tokens', '?'):,} tokens -> {c.get('rows', '?'):,} rows "
            f"of {cfg.seq_len} -> {dest}"
        )
    info = {
        "stamp": stamp,
        "train": str(train_dir),
        "val": str(val_dir),
        "corpus": corpus,
        "convert": counts,
        "seconds": round(time.time() - t0, 1),
    }
    stamp_file.write_text(json.dumps(info, indent=1, default=str))
    return info


def shard_meta(shard_dir: str | os.PathLike) -> dict[str, Any]:
    """The converter's ``slwdata.json`` (seq_len, tokenizer.vocab_size, counts)."""
    from slwdata.shards import META_NAME, read_meta_fields

    meta = read_meta_fields(shard_dir)
    if meta is None:
        from slwdata.errors import UserError

        raise UserError(f"{Path(shard_dir) / META_NAME}: missing; not a folder written by 'slwdata convert'")
    return meta


def strip_slw_keys(batch: Any) -> Any:
    """Drop the dataset's ``slw_*`` metadata (for runs without ``SequenceLengthWarmup``)."""
    if isinstance(batch, dict):
        return {k: v for k, v in batch.items() if not str(k).startswith("slw_")}
    return batch


def vocab_size(meta: dict[str, Any]) -> int:
    """The model's vocabulary: the tokenizer's, else the largest id the row dtype can hold."""
    size = (meta.get("tokenizer") or {}).get("vocab_size")
    if size:
        return int(size)
    return 65536 if meta.get("dtype", "uint16") == "uint16" else 2**17


class _TokensCollate:
    """Stack MDS ``tokens`` rows into ``{"input_ids": int64 [B, L]}`` (picklable for workers)."""

    def __call__(self, samples: list[dict]) -> dict:
        import numpy as np
        import torch

        return {"input_ids": torch.from_numpy(np.stack([s["tokens"] for s in samples]).astype(np.int64))}


def val_dataloader(val_dir: str, batch_size: int):
    """Full-length validation batches from converted shards (plain ``StreamingDataset``)."""
    from streaming import StreamingDataset
    from torch.utils.data import DataLoader

    ds = StreamingDataset(local=val_dir, shuffle=False, batch_size=batch_size)
    return DataLoader(ds, batch_size=batch_size, collate_fn=_TokensCollate(), num_workers=0)


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass
class RunSpec:
    """One training run of the comparison (quickstart and ``benchmarks/bench_table1.py``)."""

    name: str
    kind: str  # "baseline" | "slw" | "shortformer"
    train_dir: str
    val_dir: str
    total_tokens: int
    seq_len: int
    batch_size: int
    lr: float
    lr_warmup: str = "0.02dur"
    model_size: str = "tiny"
    seed: int = 17
    device: str = "cpu"
    precision: str | None = None
    slw_start: int = 8
    warmup_duration: str = "0.4dur"
    shortformer_short: int = 0  # first-stage length for "shortformer" (0: seq_len // 4)
    shortformer_switch: float = 0.5  # fraction of the token budget spent on the first stage
    reuse: str = "deferred"
    eval_batches: int = 8
    progress: bool = True
    weight_decay: float = 0.1
    microbatch_size: int | None = None  # None: the whole batch at once
    beta2: float = 0.95
    clip: float = 0.0  # gradient-norm clipping threshold; 0: none
    eval_interval: str | None = None  # Composer time string; None: only at the end
    max_steps: int | None = None  # stop after this many steps instead of total_tokens (floor runs)


def _schedule(spec: RunSpec):
    from slwdata.pacing import PacingSchedule

    if spec.kind == "slw":
        return PacingSchedule(start=spec.slw_start, end=spec.seq_len, duration=spec.warmup_duration)
    if spec.kind == "floor":
        # One stage at s that outlasts the run: rows stay full length in the dataset (which
        # refuses a pacing end shorter than its rows), the algorithm cuts every batch to s.
        return PacingSchedule(
            kind="stages", end=spec.seq_len, stages=[(0, spec.slw_start)], duration=f"{(spec.max_steps or 0) + 1}ba"
        )
    if spec.kind == "shortformer":
        short = spec.shortformer_short or max(8, spec.seq_len // 4)
        switch = int(spec.total_tokens * spec.shortformer_switch)
        return PacingSchedule(kind="stages", end=spec.seq_len, stages=[(0, short), (f"{switch}tok", spec.seq_len)])
    return None


class StepWarmupTokenCosine:
    """LR multiplier: linear warmup over optimizer steps, then cosine decay by trained tokens to
    ``alpha_f`` (the paper's token-wise decay; Composer's schedulers need one unit for both)."""

    def __init__(self, warmup_steps: int, total_tokens: int, alpha_f: float = 0.1) -> None:
        self.warmup_steps, self.total_tokens, self.alpha_f = warmup_steps, total_tokens, alpha_f

    def __call__(self, state: Any, ssr: float = 1.0) -> float:
        step, tokens = int(state.timestamp.batch), int(state.timestamp.token)
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        frac = min(1.0, tokens / self.total_tokens)
        return warm * (self.alpha_f + (1 - self.alpha_f) * 0.5 * (1 + math.cos(math.pi * frac)))


def _steps_of(time_string: str) -> int | None:
    """``"5ba"`` -> 5; None for any other unit."""
    text = str(time_string).strip()
    return int(text[:-2]) if text.endswith("ba") and text[:-2].isdigit() else None


class _EvalClock:
    """Composer callback: wall time since fit start at each evaluation (for tokens-to-reach)."""

    def __init__(self) -> None:
        from composer import Callback

        self.t0, self.c0 = time.time(), time.process_time()
        self.points: list[tuple[int, float, float]] = []

        def start(cb: Any, state: Any, logger: Any) -> None:
            self.t0, self.c0 = time.time(), time.process_time()

        def mark(cb: Any, state: Any, logger: Any) -> None:
            self.points.append((int(state.timestamp.token), time.time() - self.t0, time.process_time() - self.c0))

        self._cb = type("EvalClock", (Callback,), {"fit_start": start, "eval_end": mark})()

    @property
    def callback(self) -> Any:
        return self._cb


def train_run(spec: RunSpec) -> dict[str, Any]:
    """Train one run with Composer and return its figures and per-step history."""
    import torch
    from composer import Trainer
    from composer.loggers import InMemoryLogger
    from composer.optim import CosineAnnealingWithWarmupScheduler, DecoupledAdamW
    from torch.utils.data import DataLoader

    from slwdata.composer import SequenceLengthWarmup, StabilityMonitor
    from slwdata.dataset import SLWDataset
    from slwdata.demo.models import ComposerGPT
    from slwdata.demo.report import LOSS_RATIO_THRESHOLD, loss_ratios

    meta = shard_meta(spec.train_dir)
    vocab = vocab_size(meta)
    if meta["seq_len"] != spec.seq_len:
        from slwdata.errors import UserError

        raise UserError(f"{spec.train_dir}: rows are {meta['seq_len']} tokens, run asks for {spec.seq_len}")
    torch.manual_seed(spec.seed)
    model = ComposerGPT(spec.model_size, vocab_size=vocab, block_size=spec.seq_len)
    schedule = _schedule(spec)
    # Same dataset class, order and seed for every run: only truncation and reuse differ.
    dataset = SLWDataset(
        local=spec.train_dir,
        batch_size=spec.batch_size,
        shuffle=True,
        shuffle_seed=spec.seed,
        reuse=spec.reuse if schedule is not None and spec.kind != "floor" else "off",
    )
    train_dl: Any = DataLoader(dataset, batch_size=None, num_workers=0)
    if schedule is None:
        # No algorithm pops the dataset's slw_* metadata, and Composer cannot count samples
        # in a batch holding a 0-d tensor: strip it before Composer looks at the batch.
        from composer.core import DataSpec

        train_dl = DataSpec(train_dl, batch_transforms=strip_slw_keys)
    algorithms: list[Any] = [SequenceLengthWarmup(schedule=schedule)] if schedule is not None else []
    if spec.clip > 0:
        from composer.algorithms import GradientClipping

        algorithms.append(GradientClipping(clipping_type="norm", clipping_threshold=spec.clip))
    monitor = StabilityMonitor()
    clock = _EvalClock()
    mem = InMemoryLogger()
    optimizer = DecoupledAdamW(
        model.parameters(), lr=spec.lr, betas=(0.9, spec.beta2), eps=1e-8, weight_decay=spec.weight_decay * spec.lr
    )
    # max_duration in tokens: the LR schedule decays token-wise and both runs stop at equal
    # trained tokens (Composer counts tokens after SLW's truncation; see docs/DESIGN.md).
    duration = f"{spec.max_steps}ba" if spec.max_steps else f"{spec.total_tokens}tok"
    warmup_steps = _steps_of(spec.lr_warmup)
    scheduler = (
        StepWarmupTokenCosine(warmup_steps, spec.total_tokens)
        if warmup_steps is not None
        else CosineAnnealingWithWarmupScheduler(t_warmup=spec.lr_warmup, alpha_f=0.1)
    )
    precision = spec.precision or ("fp32" if spec.device == "cpu" else "amp_bf16")
    trainer = Trainer(
        model=model,
        train_dataloader=train_dl,
        eval_dataloader=val_dataloader(spec.val_dir, spec.batch_size),
        eval_interval=spec.eval_interval or duration,
        eval_subset_num_batches=spec.eval_batches,
        max_duration=duration,
        optimizers=optimizer,
        schedulers=scheduler,
        algorithms=algorithms,
        callbacks=[monitor, clock.callback],
        loggers=[mem],
        device=spec.device,
        device_train_microbatch_size=spec.microbatch_size or spec.batch_size,
        precision=precision,
        seed=spec.seed,
        progress_bar=spec.progress,
        log_to_console=False,
        python_log_level=None,
    )
    t0, c0 = time.time(), time.process_time()
    trainer.fit()
    wall, cpu = time.time() - t0, time.process_time() - c0

    def series(key: str) -> list[float]:
        return [float(v) for _, v in mem.data.get(key, [])]

    loss_entries = mem.data.get("loss/train/total", [])
    losses = [float(v) for _, v in loss_entries]
    hist: dict[str, list] = {
        "step": [int(ts.batch) for ts, _ in loss_entries],
        "tokens": [int(ts.token) for ts, _ in loss_entries],
        "loss": losses,
        "loss_ratio": loss_ratios(losses),
        "seq_len": [int(v) for v in series("slw/seq_len")] or [spec.seq_len] * len(losses),
    }
    summary = monitor.summary()
    state = trainer.state
    val_loss = _last_metric(mem, "LanguageCrossEntropy")
    evals = [
        {"tokens": tok, "wall_s": wall_at, "cpu_s": cpu_at, "val_loss": float(v)}
        for (tok, wall_at, cpu_at), (_, v) in zip(clock.points, _metric_series(mem, "LanguageCrossEntropy"))
    ]
    from slwdata.stability import loss_ratio_stats

    result = {
        "name": spec.name,
        "kind": spec.kind,
        "steps": int(state.timestamp.batch),
        "trained_tokens": int(state.timestamp.token),
        "reserved_tokens": _last_int(mem, "slw/reserved_tokens"),
        "dropped_tokens": _last_int(mem, "slw/dropped_tokens"),
        "loss_ratio_spikes": summary.get(
            "steps_above_threshold", sum(r > LOSS_RATIO_THRESHOLD for r in hist["loss_ratio"])
        ),
        "loss_ratio_spikes_1.5": loss_ratio_stats(losses, threshold=1.5)["steps_above_threshold"],
        "max_loss_ratio": summary.get("max_loss_ratio", max(hist["loss_ratio"], default=float("nan"))),
        "adam_var_max": summary.get("adam_var_sqrt_max_max"),
        "final_val_loss": val_loss,
        "final_val_ppl": math.exp(val_loss) if val_loss is not None else None,
        "wall_s": wall,
        "cpu_s": cpu,
        "evals": evals,
        "monitor": summary,
        "history": hist,
    }
    if schedule is not None and spec.reuse != "off" and spec.kind != "floor":
        # The dataset's own account of epoch 0 (planned, no tokens read): what it carries out.
        result["epoch0_account"] = dataset.epoch_account(0).as_dict()
    if schedule is None:
        result["reserved_tokens"] = result["reserved_tokens"] or 0
        result["dropped_tokens"] = result["dropped_tokens"] or 0
    trainer.close()
    del trainer, train_dl, dataset
    gc.collect()
    return result


def _last_metric(mem, name: str) -> float | None:
    for key in sorted(mem.data):
        if key.endswith(name) and key.startswith("metrics/eval"):
            return float(mem.data[key][-1][1])
    return None


def _metric_series(mem, name: str) -> list[tuple[Any, float]]:
    for key in sorted(mem.data):
        if key.endswith(name) and key.startswith("metrics/eval"):
            return [(ts, float(v)) for ts, v in mem.data[key]]
    return []


def _last_int(mem, key: str) -> int | None:
    values = mem.data.get(key)
    return int(values[-1][1]) if values else None


# ----------------------------------------------------------------------------- entry points


def token_budget(cfg: QuickstartConfig, train_dir: str) -> int:
    """Trained tokens for baseline and SLW: ``--steps`` full batches, or (0) one pass over the
    training shards in whole batches."""
    if cfg.steps:
        return cfg.steps * cfg.batch_size * cfg.seq_len
    rows = int(shard_meta(train_dir)["counts"]["rows"])
    if rows < cfg.batch_size:
        from slwdata.errors import UserError

        raise UserError(
            f"{train_dir}: {rows} rows, fewer than one batch of {cfg.batch_size}; "
            "raise --corpus-mb or lower --batch-size"
        )
    return rows // cfg.batch_size * cfg.batch_size * cfg.seq_len


def quiet_threshold(floor: dict[str, Any], thresholds: tuple[float, ...] = (1.2, 1.5, 2.0)) -> float | None:
    """The lowest loss-ratio threshold the noise-floor run never crossed (None: it crossed all)."""
    from slwdata.stability import loss_ratio_stats

    for th in thresholds:
        if loss_ratio_stats(floor["history"]["loss"], threshold=th)["steps_above_threshold"] == 0:
            return th
    return None


def tail_account(slw: dict[str, Any], rows_per_batch: int, seq_len: int) -> dict[str, Any]:
    """Cut tail tokens against re-served ones (both the algorithm's counts) and what the dataset's
    own plan of epoch 0 carries out of it.

    ``carried`` = cut - re-served: the tail tokens still in the ledger when the run ended. The
    independent check (``consistent``) is that every cut token the dataset did *not* plan to
    carry out of epoch 0 was re-served: ``cut - carried_out(epoch 0) <= re-served <= cut``. A
    run that goes on into epoch 1 may re-serve some of the carried tokens too.
    """
    cut, reserved = int(slw.get("dropped_tokens") or 0), int(slw.get("reserved_tokens") or 0)
    planned = (slw.get("epoch0_account") or {}).get("tokens_carried_out")
    carried = cut - reserved
    return {
        "cut": cut,
        "reserved": reserved,
        "carried": carried,
        "epoch0_carried_out": planned,
        "consistent": planned is not None and cut - planned <= reserved <= cut,
        "carried_below_batch": 0 <= carried < rows_per_batch * seq_len,
    }


def reach(run: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """The first validation point where ``run`` is at or below ``base``'s final validation loss."""
    target = base.get("final_val_loss")
    if target is None:
        return None
    for e in run.get("evals") or []:
        if e["val_loss"] <= target:
            return {
                "tokens": e["tokens"],
                "tokens_x": e["tokens"] / base["trained_tokens"],
                "wall_s": e["wall_s"],
                "wall_x": e["wall_s"] / base["wall_s"],
                "cpu_s": e["cpu_s"],
                "cpu_x": e["cpu_s"] / base["cpu_s"],
                "target": target,
            }
    return None


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    """Data, three trainings, table, plots and report; returns ``{"runs", "table", "files", ...}``."""
    from slwdata.demo.report import format_table, plot_runs, write_report

    _validate(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu0 = time.process_time()
    data = prepare_data(cfg)
    total = token_budget(cfg, data["train"])
    common = dict(
        train_dir=data["train"],
        val_dir=data["val"],
        total_tokens=total,
        seq_len=cfg.seq_len,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        lr_warmup=cfg.lr_warmup,
        model_size=cfg.model_size,
        seed=cfg.seed,
        device=cfg.device,
        precision=cfg.precision,
        slw_start=cfg.slw_start,
        warmup_duration=cfg.warmup_duration,
        reuse=cfg.reuse,
        eval_batches=cfg.eval_batches,
        progress=cfg.progress,
        beta2=cfg.beta2,
        clip=cfg.clip,
        weight_decay=0.01,
        eval_interval=f"{max(1, total // cfg.eval_points)}tok",
    )
    runs = []
    for name in ("baseline", "slw"):
        _log(f"training {name}: {cfg.model_size} GPT, {total:,} tokens, lr {cfg.lr:g}, device {cfg.device}")
        runs.append(train_run(RunSpec(name=name, kind=name, **common)))
        _log(f"{name} done in {runs[-1]['wall_s']:.0f}s")
    base, slw = runs
    floor_spec = RunSpec(
        name=f"noise floor (lr {cfg.floor_lr:g}, length {cfg.slw_start})",
        kind="floor",
        **{**common, "lr": cfg.floor_lr, "eval_interval": None, "max_steps": slw["steps"]},
    )
    _log(f"training the noise floor: lr {cfg.floor_lr:g} held at length {cfg.slw_start}, {slw['steps']} steps")
    floor = train_run(floor_spec)
    runs.append(floor)
    cpu = time.process_time() - cpu0
    quiet = quiet_threshold(floor)
    tails = tail_account(slw, cfg.batch_size, cfg.seq_len)
    hit = reach(slw, base)
    columns = [
        "steps",
        "trained_tokens",
        "dropped_tokens",
        "reserved_tokens",
        "loss_ratio_spikes_1.5",
        "loss_ratio_spikes",
        "max_loss_ratio",
        "final_val_loss",
        "wall_s",
    ]
    table = format_table(runs, columns=columns)
    lines = [table, ""]
    floor_counts = f"{floor['loss_ratio_spikes_1.5']} steps > 1.5, {floor['loss_ratio_spikes']} > 1.2"
    lines.append(
        f"noise floor: {floor_counts} of {floor['steps']} steps at {cfg.batch_size} x {cfg.slw_start} "
        f"tokens and a safe LR; "
        + (
            f"counts at ratio > {quiet:g} are above it."
            if quiet
            else "it crosses every threshold: the counts here measure noise."
        )
    )
    if quiet is not None:
        from slwdata.stability import loss_ratio_stats

        b, s_ = (loss_ratio_stats(r["history"]["loss"], threshold=quiet)["steps_above_threshold"] for r in (base, slw))
        verdict = "fewer with SLW in this run" if s_ < b else "no stability gain from SLW in this run"
        lines.append(
            f"steps with loss ratio > {quiet:g}: baseline {b}, SLW {s_} (floor 0): {verdict}; one seed, "
            "one LR: benchmarks/RESULTS.md has the seeds and the LR sweep."
        )
    batch_tokens = cfg.batch_size * cfg.seq_len
    if tails["consistent"] and tails["carried_below_batch"]:
        lines.append(
            f"tails: cut {tails['cut']:,} = re-served {tails['reserved']:,} + carried {tails['carried']:,} "
            f"(< one batch of {batch_tokens:,}; the dataset planned to carry "
            f"{tails['epoch0_carried_out']:,} out of epoch 0)"
        )
    else:
        lines.append(
            f"tails: cut {tails['cut']:,}, re-served {tails['reserved']:,} within the run; "
            f"{tails['carried']:,} were still waiting in the ledger when the token budget ran out "
            "(--steps 0 trains one pass, which re-serves them)"
        )
    if hit:
        lines.append(
            f"efficiency: SLW reached the baseline's final val loss {hit['target']:.3f} at "
            f"{hit['tokens']:,} tokens ({hit['tokens_x']:.2f}x the baseline's), "
            f"{hit['cpu_s']:.0f} CPU s ({hit['cpu_x']:.2f}x the baseline's CPU time; "
            f"wall {hit['wall_x']:.2f}x, which on a shared machine also measures the neighbours)"
        )
    else:
        lines.append(
            f"efficiency: SLW did not reach the baseline's final val loss "
            f"{base['final_val_loss']:.3f} within the run (final {slw['final_val_loss']:.3f})"
        )
    lines.append(f"CPU time of this process: {cpu:.0f}s")
    text = "\n".join(lines)
    print("\n" + text + "\n", flush=True)
    plots = plot_runs(runs, out)
    notes = [
        f"Baseline and SLW train the same {cfg.model_size} GPT on the same shards with the same seed and "
        f"peak LR {cfg.lr:g}; both stop at {total:,} trained tokens (Composer max_duration in tokens), "
        "so the comparison is at equal trained tokens and SLW takes more, shorter steps.",
        f"SLW: linear pacing from {cfg.slw_start} to {cfg.seq_len} over T = {cfg.warmup_duration}, "
        f"LR warmup {cfg.lr_warmup} then cosine decay by tokens; tails re-served with reuse='{cfg.reuse}'.",
        "Loss ratio = a step's training loss / the minimum training loss of all previous steps "
        "(Li, Zhang, He, NeurIPS 2022).",
        *lines[2:],
    ]
    files = write_report(
        runs,
        out,
        title="slwdata quickstart: baseline vs Sequence Length Warmup",
        notes=notes,
        config={
            "quickstart": dataclasses.asdict(cfg),
            "data": data,
            "tails": tails,
            "reach": hit,
            "quiet_threshold": quiet,
            "cpu_s": cpu,
        },
        plots=plots,
    )
    _log(f"plots: {', '.join(plots)}")
    _log(f"report: {files['markdown']} and {files['json']}")
    return {
        "runs": runs,
        "table": table,
        "text": text,
        "tails": tails,
        "reach": hit,
        "quiet": quiet,
        "cpu_s": cpu,
        "files": {**files, "plots": plots},
        "data": data,
    }


def _validate(cfg: QuickstartConfig) -> None:
    from slwdata.demo.models.gpt import CONFIGS
    from slwdata.errors import UserError

    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.seq_len < 16 or cfg.seq_len % 8:
        raise UserError(f"--seq-len must be a multiple of 8 and >= 16, got {cfg.seq_len}")
    if not 1 <= cfg.slw_start <= cfg.seq_len:
        raise UserError(f"--slw-start must lie in [1, --seq-len], got {cfg.slw_start}")
    if cfg.model_size not in CONFIGS:
        raise UserError(f"--model-size must be one of {', '.join(CONFIGS)}, got {cfg.model_size!r}")
    if cfg.corpus_mb <= 0:
        raise UserError(f"--corpus-mb must be positive, got {cfg.corpus_mb}")
    if not cfg.lr > 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    if not cfg.floor_lr > 0:
        raise UserError(f"--floor-lr must be positive, got {cfg.floor_lr}")
    if not 0 < cfg.beta2 < 1:
        raise UserError(f"--beta2 must lie in (0, 1), got {cfg.beta2}")
    if cfg.steps < 0:
        raise UserError(f"--steps must be >= 0 (0: one pass over the data), got {cfg.steps}")
    if cfg.eval_points < 1:
        raise UserError(f"--eval-points must be >= 1, got {cfg.eval_points}")


def register(subparsers: Any) -> None:
    """Add ``slwdata quickstart`` to the CLI."""
    d = QuickstartConfig()
    p = subparsers.add_parser(
        "quickstart",
        help="end-to-end SLW demo on an embedded corpus (offline, CPU, a few minutes)",
        description=__doc__.split("Python use::")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help="baseline steps; sets the token budget steps*batch*seq-len for both runs "
        "(default 0: one pass over the training shards, so every cut tail is re-served)",
    )
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="full row length (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per step (default %(default)s)")
    p.add_argument(
        "--model-size",
        default=d.model_size,
        choices=["tiny", "small", "gpt2-124m"],
        help="GPT size (default %(default)s)",
    )
    p.add_argument("--lr", type=float, default=d.lr, help="peak LR for both runs (default %(default)s)")
    p.add_argument(
        "--lr-warmup",
        default=d.lr_warmup,
        help="LR warmup: 'Nba' steps (then cosine by tokens), or any Composer time string (default %(default)s)",
    )
    p.add_argument(
        "--floor-lr",
        type=float,
        default=d.floor_lr,
        help="LR of the noise-floor run, held at --slw-start (default %(default)s)",
    )
    p.add_argument("--beta2", type=float, default=d.beta2, help="Adam beta2 (default %(default)s)")
    p.add_argument("--clip", type=float, default=d.clip, help="gradient-norm clipping, 0: off (default %(default)s)")
    p.add_argument(
        "--eval-points",
        type=int,
        default=d.eval_points,
        help="validation points per run, for tokens-to-reach (default %(default)s)",
    )
    p.add_argument(
        "--warmup-duration",
        default=d.warmup_duration,
        help="SLW pacing duration T: '200ba', '50000tok' or a fraction '0.4dur' (default %(default)s)",
    )
    p.add_argument("--slw-start", type=int, default=d.slw_start, help="SLW start length (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for data order and init (default %(default)s)")
    p.add_argument("--device", default=d.device, help="cpu or gpu (default %(default)s)")
    p.add_argument("--precision", default=None, help="Composer precision (default fp32 on cpu, amp_bf16 on gpu)")
    p.add_argument(
        "--corpus-mb", type=float, default=d.corpus_mb, help="embedded corpus size in MB (default %(default)s)"
    )
    p.add_argument(
        "--tokenizer",
        default=d.tokenizer,
        help="'gpt2' (local file in ../shared, no download) or 'bytes' (default %(default)s)",
    )
    p.add_argument("--eval-batches", type=int, default=d.eval_batches, help="validation batches (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="converter processes (default: all cores)")
    p.add_argument(
        "--reuse",
        default=d.reuse,
        choices=["deferred", "interleave", "off"],
        help="SLWDataset tail policy (default %(default)s)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(QuickstartConfig)}
    cfg = QuickstartConfig(**{k: v for k, v in vars(args).items() if k in fields})
    run_quickstart(cfg)
    return 0
