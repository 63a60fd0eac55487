"""Per-step overhead of SequenceLengthWarmup (truncate + accounting + logging) on CPU.

The algorithm's work per step is: compute the length from the timestamp, slice the batch's
tensors (views), check/pop ``slw_*`` keys, and at batch end update counters and log four
numbers. This times exactly those methods on real batches and prints them next to the
forward+backward+SGD step time of tiny models at the same batch shape, so the ratio is a
conservative upper bound (a real model's step is far longer).

The cut makes every sequence tensor contiguous (Composer's metrics and Hugging Face losses
call ``.view()`` on them); :func:`compare_cut_copy` times that copy against plain views, side by
side in interleaved rounds, as a share of a model step at the same shape.

Run: ``python benchmarks/bench_algorithm.py [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composer.core import Timestamp  # noqa: E402
from composer.loggers import Logger, LoggerDestination  # noqa: E402

from slwdata.composer import SequenceLengthWarmup  # noqa: E402


class _ListDestination(LoggerDestination):
    """Keeps logged metrics in a list, as an in-memory logger would."""

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, dict[str, Any]]] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))


class _EmbLinear(torch.nn.Module):
    """The cheapest possible LM: embedding + linear head (vocab 512, width 64)."""

    def __init__(self, vocab: int = 512, dim: int = 64) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(x))


def _tiny_gpt(vocab: int, block: int) -> torch.nn.Module:
    from slwdata.demo.models.gpt import GPT, get_config

    return GPT(get_config("tiny", vocab_size=vocab, block_size=block))


def time_algorithm(rows: int, full: int, steps: int) -> float:
    """Mean seconds per step spent in the algorithm (pace at draw + batch-end accounting/logging)."""
    slw = SequenceLengthWarmup(start=8, duration=f"{steps * rows * full // 4}tok")
    state = SimpleNamespace(timestamp=Timestamp(), previous_timestamp=None)
    logger = Logger(state=state, destinations=[_ListDestination()])  # type: ignore[arg-type]
    batch = {
        "input_ids": torch.randint(0, 512, (rows, full)),
        "labels": torch.randint(0, 512, (rows, full)),
        "attention_mask": torch.ones(rows, full, dtype=torch.long),
    }
    elapsed = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        out = slw._pace(batch, state)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        n = out["input_ids"].numel()  # what Composer's token count reads
        state.previous_timestamp = state.timestamp
        state.timestamp = state.timestamp.to_next_batch(samples=rows, tokens=n)
        t2 = time.perf_counter()
        slw._batch_end(state, logger)  # type: ignore[arg-type]
        elapsed += (t1 - t0) + (time.perf_counter() - t2)
    return elapsed / steps


def time_model_step(model: torch.nn.Module, rows: int, length: int, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randint(0, 512, (rows, length))
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms allocators up
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def compare_cut_copy(rows: int, full: int, length: int, steps: int, rounds: int = 7) -> dict[str, Any]:
    """ms per step for the cut of ``input_ids``, ``labels`` and ``attention_mask`` to ``length``:
    contiguous copies (what ``truncate_batch`` returns) vs views (the slices alone), alternated
    round by round; median and range over ``rounds``."""
    from slwdata.truncate import truncate_batch

    batch = {
        "input_ids": torch.randint(0, 512, (rows, full)),
        "labels": torch.randint(0, 512, (rows, full)),
        "attention_mask": torch.ones(rows, full, dtype=torch.long),
    }

    def views() -> Any:
        return {k: v[:, :length] for k, v in batch.items()}

    def contiguous() -> Any:
        return truncate_batch(batch, length)

    times: dict[str, list[float]] = {"view": [], "contiguous": []}
    for r in range(rounds):
        order = (("view", views), ("contiguous", contiguous))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps * 1e3)
    out = {}
    for name, values in times.items():
        values.sort()
        out[f"{name}_ms"] = {"median": values[len(values) // 2], "min": values[0], "max": values[-1]}
    return out


def compare_token_accounting(batches: int = 40, rows: int = 4, full: int = 64) -> dict[str, Any]:
    """Composer's SeqLengthWarmup vs ours on a tiny HF GPT-2: tokens the trainer counted vs trained.

    Composer's version truncates after the trainer counted the batch, so ``timestamp.token``
    includes the dropped tails; ours truncates as the batch is drawn.
    """
    import transformers
    from composer import Trainer
    from composer.algorithms import SeqLengthWarmup
    from composer.core import Callback, Event
    from composer.models import HuggingFaceModel
    from torch.utils.data import DataLoader

    class Count(Callback):
        def __init__(self) -> None:
            self.trained = 0

        def run_event(self, event: Event, state: Any, logger: Any) -> None:
            if event == Event.BATCH_START:
                self.trained += int(state.batch["input_ids"].numel())

    rows_data = torch.randint(0, 64, (rows * batches, full))
    data = [{"input_ids": r, "attention_mask": torch.ones_like(r), "labels": r.clone()} for r in rows_data]
    out: dict[str, Any] = {}
    for name, algo in (
        ("composer_SeqLengthWarmup", SeqLengthWarmup(duration=0.5, min_seq_length=8, max_seq_length=full, step_size=8)),
        ("slwdata_SequenceLengthWarmup", SequenceLengthWarmup(start=8, duration="0.5dur")),
    ):
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(vocab_size=64, n_positions=full, n_embd=16, n_layer=1, n_head=2)
        model = HuggingFaceModel(transformers.GPT2LMHeadModel(cfg), use_logits=True)
        counter = Count()
        trainer = Trainer(
            model=model,
            train_dataloader=DataLoader(data, batch_size=rows),
            max_duration=f"{batches}ba",
            algorithms=[algo],
            callbacks=[counter],
            device="cpu",
            progress_bar=False,
        )
        trainer.fit()
        counted = int(trainer.state.timestamp.token)
        out[name] = {
            "counted_tokens": counted,
            "trained_tokens": counter.trained,
            "overcount_pct": 100 * (counted - counter.trained) / counter.trained,
        }
        print(
            f"{name:<30} timestamp.token {counted:7d}  trained {counter.trained:7d}  "
            f"overcount {out[name]['overcount_pct']:+.1f}%"
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    algo_steps, model_steps = (200, 2) if args.quick else (1000, 3)
    results: dict[str, Any] = {}
    for rows, full in ((8, 1024), (64, 2048)):
        algo_s = time_algorithm(rows, full, algo_steps)
        entry: dict[str, Any] = {"algorithm_ms": algo_s * 1e3}
        models = {"emb_linear": _EmbLinear()}
        if rows * full <= 8 * 1024:  # a transformer at 64x2048 does not fit a shared CPU box
            models["gpt_tiny"] = _tiny_gpt(512, full)
        for name, model in models.items():
            # Mid-warmup length (a quarter of full) and full length.
            for length in (full // 4, full):
                step_s = time_model_step(model, rows, length, model_steps)
                entry[f"{name}_L{length}_step_ms"] = step_s * 1e3
                entry[f"{name}_L{length}_overhead_pct"] = 100 * algo_s / step_s
        for length in (full // 4, full * 3 // 4):
            cut = compare_cut_copy(rows, full, length, algo_steps // 4)
            entry[f"cut_L{length}"] = cut
        results[f"{rows}x{full}"] = entry
        print(f"batch {rows}x{full}: algorithm {algo_s * 1e3:.3f} ms/step")
        for key, cut in entry.items():
            if key.startswith("cut_L"):
                length = int(key[5:])
                view, cont = cut["view_ms"], cut["contiguous_ms"]
                ref = entry.get(f"emb_linear_L{full // 4}_step_ms") if length == full // 4 else None
                share = (
                    f"   copy = {100 * (cont['median'] - view['median']) / ref:.2f}% of an emb_linear step at L{length}"
                    if ref
                    else ""
                )
                print(
                    f"  cut to L{length:<5} view {view['median']:.4f} ms [{view['min']:.4f}-{view['max']:.4f}]   "
                    f"contiguous {cont['median']:.4f} ms [{cont['min']:.4f}-{cont['max']:.4f}]{share}"
                )
        for key, value in entry.items():
            if key.endswith("step_ms"):
                pct = entry[key.replace("step_ms", "overhead_pct")]
                print(f"  {key[:-8]:<22} step {value:9.2f} ms   algorithm overhead {pct:6.3f}%")
    results["token_accounting"] = compare_token_accounting()
    return results


if __name__ == "__main__":
    main()
