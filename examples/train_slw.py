"""Train a GPT with Composer from a YAML config, with Sequence Length Warmup on or off.

Single process (CPU or one GPU)::

    python examples/train_slw.py examples/configs/tiny-cpu.yaml
    python examples/train_slw.py examples/configs/tiny-cpu.yaml --no-slw      # the baseline

Eight GPUs (Composer's launcher starts one process per GPU)::

    composer -n 8 examples/train_slw.py examples/configs/gpt2-117m-8gpu-bs4k.yaml

Override any entry with dotted keys: ``--set max_duration=2000000tok --set data.train=/data/x``.
SLW is one YAML entry: ``slw: {enabled: true, start: 8, duration: ...}``.

Data: shards written by ``slwdata convert`` (``data.train`` / ``data.val`` are local folders,
or set ``data.remote_train`` for s3://... with ``data.train`` as the local cache).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from slwdata.tune.runners import set_dotted  # the same --set rules as `slwdata tune`


def load_config(path: str, overrides: list[str] = (), no_slw: bool = False) -> dict[str, Any]:
    with open(path) as f:
        cfg = yaml.safe_load(f)
    for item in overrides:
        try:
            set_dotted(cfg, item)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    if no_slw:
        cfg.setdefault("slw", {})["enabled"] = False
    return cfg


def build_trainer(cfg: dict[str, Any]):
    """A Composer ``Trainer`` for ``cfg`` (see the YAML files in examples/configs/)."""
    import torch
    from composer import Trainer
    from composer.loggers import InMemoryLogger
    from composer.optim import CosineAnnealingWithWarmupScheduler, DecoupledAdamW
    from composer.utils import dist
    from streaming import StreamingDataset
    from torch.utils.data import DataLoader

    from slwdata.composer import SequenceLengthWarmup, StabilityMonitor
    from slwdata.dataset import SLWDataset
    from slwdata.demo.models import ComposerGPT
    from slwdata.pacing import PacingSchedule
    from slwdata.shards import read_meta_fields

    world = dist.get_world_size()
    global_bs = int(cfg["global_batch_size"])
    if global_bs % world:
        raise SystemExit(f"global_batch_size {global_bs} is not divisible by {world} processes")
    per_rank = global_bs // world
    data = cfg["data"]
    seq_len = int(cfg["seq_len"])
    slw = cfg.get("slw") or {}
    slw_on = bool(slw.get("enabled", False))

    meta = read_meta_fields(data["train"]) or {}  # absent for llm-foundry shards
    vocab = int(cfg.get("model", {}).get("vocab_size") or meta.get("tokenizer", {}).get("vocab_size", 50257))

    torch.manual_seed(int(cfg.get("seed", 17)))
    model = ComposerGPT(cfg["model"]["size"], vocab_size=vocab, block_size=seq_len)
    train_ds = SLWDataset(
        local=data["train"],
        remote=data.get("remote_train"),
        batch_size=per_rank,
        shuffle=bool(data.get("shuffle", True)),
        shuffle_seed=int(cfg.get("seed", 17)),
        reuse=slw.get("reuse", "deferred") if slw_on else "off",
    )
    train_dl = DataLoader(train_ds, batch_size=None, num_workers=int(data.get("num_workers", 0)))
    if not slw_on:
        # Without the algorithm nothing pops the dataset's slw_* metadata: drop it here.
        from composer.core import DataSpec

        from slwdata.demo.quickstart import strip_slw_keys

        train_dl = DataSpec(train_dl, batch_transforms=strip_slw_keys)
    eval_dl = None
    if data.get("val"):
        val_ds = StreamingDataset(local=data["val"], remote=data.get("remote_val"), shuffle=False, batch_size=per_rank)
        eval_dl = DataLoader(val_ds, batch_size=per_rank, collate_fn=_collate, num_workers=0)
    algorithms = []
    if slw_on:
        schedule = PacingSchedule(
            start=int(slw.get("start", 8)),
            end=seq_len,
            duration=slw.get("duration", "0.3dur"),
            kind=slw.get("kind", "linear"),
        )
        algorithms.append(SequenceLengthWarmup(schedule=schedule))
    opt = cfg.get("optimizer", {})
    lr = float(opt.get("lr", 6e-4))
    optimizer = DecoupledAdamW(
        model.parameters(),
        lr=lr,
        betas=tuple(opt.get("betas", (0.9, 0.95))),
        eps=float(opt.get("eps", 1e-8)),
        weight_decay=float(opt.get("weight_decay", 0.1)) * lr,
    )
    sched = cfg.get("scheduler", {})
    memory = InMemoryLogger()
    trainer = Trainer(
        run_name=cfg.get("run_name"),
        model=model,
        train_dataloader=train_dl,
        eval_dataloader=eval_dl,
        eval_interval=cfg.get("eval_interval", "1dur") if eval_dl is not None else 1,
        eval_subset_num_batches=int(cfg.get("eval_subset_num_batches", -1)),
        max_duration=cfg["max_duration"],
        optimizers=optimizer,
        # t_max: "1dur" decays over this run; an absolute one keeps a shortened run (a tuning
        # trial) on the full run's LR schedule.
        schedulers=CosineAnnealingWithWarmupScheduler(
            t_warmup=sched.get("t_warmup", "0.01dur"),
            t_max=sched.get("t_max", "1dur"),
            alpha_f=float(sched.get("alpha_f", 0.1)),
        ),
        algorithms=algorithms,
        callbacks=[StabilityMonitor()],
        loggers=[memory],
        device=cfg.get("device"),
        device_train_microbatch_size=cfg.get("device_microbatch_size") or per_rank,
        precision=cfg.get("precision", "amp_bf16" if torch.cuda.is_available() else "fp32"),
        seed=int(cfg.get("seed", 17)),
        save_folder=cfg.get("save_folder"),
        save_interval=cfg.get("save_interval", "1dur"),
        progress_bar=bool(cfg.get("progress_bar", True)),
        log_to_console=bool(cfg.get("log_to_console", False)),
    )
    return trainer, memory


def _collate(samples):
    import numpy as np
    import torch

    return {"input_ids": torch.from_numpy(np.stack([s["tokens"] for s in samples]).astype(np.int64))}


def summarize(trainer, memory) -> dict[str, Any]:
    """Final figures: steps, trained tokens, SLW accounting, stability and validation loss."""
    ts = trainer.state.timestamp
    out: dict[str, Any] = {"steps": int(ts.batch), "trained_tokens": int(ts.token)}
    for key in ("slw/seq_len", "slw/trained_tokens", "slw/dropped_tokens", "slw/reserved_tokens"):
        if memory.data.get(key):
            out[key] = float(memory.data[key][-1][1])
    for key, values in memory.data.items():
        if key.startswith("metrics/eval"):
            out[key] = float(values[-1][1])
            # (steps, trained tokens, value) at every validation: what `slwdata tune` judges.
            out.setdefault("eval_curves", {})[key] = [[int(ts.batch), int(ts.token), float(v)] for ts, v in values]
    for cb in trainer.state.callbacks:
        if hasattr(cb, "summary"):
            out["stability"] = cb.summary()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config (examples/configs/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config entry, dotted keys (repeatable)",
    )
    parser.add_argument("--no-slw", action="store_true", help="train the baseline (slw.enabled=false)")
    parser.add_argument("--summary-json", help="write the final figures to this file")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides, args.no_slw)
    trainer, memory = build_trainer(cfg)
    trainer.fit()
    summary = summarize(trainer, memory)
    trainer.close()
    from composer.utils import dist

    if dist.get_global_rank() == 0:
        print(json.dumps(summary, indent=1, default=str))
        if args.summary_json:
            with open(args.summary_json, "w") as f:
                json.dump(summary, f, indent=1, default=str)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
