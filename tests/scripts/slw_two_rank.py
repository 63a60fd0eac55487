"""Run under ``composer -n 2``: each rank trains a tiny model with SequenceLengthWarmup on CPU
(gloo) and writes what it trained on to ``$SLW_TEST_OUT/rank{rank}.json``.

With ``SLW_TEST_PADDED=1`` the rows are padded (a different amount per rank) and Composer counts
tokens with ``attention_mask.sum()``, as Hugging Face / llm-foundry counters do."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from composer import Trainer
from composer.core import Callback, DataSpec, Event
from composer.utils import dist
from torch.utils.data import DataLoader

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from slwdata.composer import SequenceLengthWarmup  # noqa: E402

from helpers_composer import RandomRows, Recorder, TinyLM  # noqa: E402


class BindingRows(RandomRows):
    """Records what the algorithm binds (world-size math), serves plain rows."""

    bound: tuple | None = None

    def bind_pacing(self, schedule, rows_per_step, run_total=None):
        self.bound = (schedule.to_config(), rows_per_step, run_total)


class PaddedRows(BindingRows):
    """Rows whose attention_mask ends in padding: row i keeps 64 - (i % 5) * (rank + 3) tokens."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        keep = 64 - (i % 5) * (dist.get_global_rank() + 3)
        item["attention_mask"][keep:] = 0
        item["labels"][keep:] = -100
        return item


class MaskTokens(Callback):
    """Non-padding tokens fed per step on this rank."""

    def __init__(self):
        self.fed: list[int] = []

    def run_event(self, event, state, logger):
        if event == Event.BEFORE_FORWARD:
            self.fed.append(int(state.batch["attention_mask"].sum()))


def main() -> None:
    out = Path(os.environ["SLW_TEST_OUT"])
    dist.initialize_dist("cpu")
    torch.manual_seed(0)
    # Different rows per rank (seeded by rank) so per-rank token counts could only agree through the all-reduce.
    padded = os.environ.get("SLW_TEST_PADDED") == "1"
    dataset = (PaddedRows if padded else BindingRows)(n=64, seq_len=64, seed=dist.get_global_rank())
    dl = DataLoader(dataset, batch_size=4, sampler=dist.get_sampler(dataset, shuffle=True))
    if padded:
        dl = DataSpec(dl, get_num_tokens_in_batch=lambda b: int(b["attention_mask"].sum()))
    model = TinyLM()
    rec = Recorder()
    fed = MaskTokens()
    slw = SequenceLengthWarmup(start=8, duration="0.5dur")
    trainer = Trainer(
        model=model,
        train_dataloader=dl,
        max_duration="3000tok",
        algorithms=[slw],
        callbacks=[rec, fed] if padded else [rec],
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        progress_bar=False,
        seed=0,
    )
    trainer.fit()
    result = {
        "rank": dist.get_global_rank(),
        "world_size": dist.get_world_size(),
        "lengths": rec.lengths,
        "tokens_after": rec.tokens_after,
        "seen": model.seen,
        "dropped_tokens": slw.dropped_tokens,
        "bound": dataset.bound,
        "mask_tokens": fed.fed,
    }
    (out / f"rank{dist.get_global_rank()}.json").write_text(json.dumps(result))
    # Tear gloo down explicitly: left to interpreter exit, its threads can be destroyed while
    # joinable, and the rank aborts with "terminate called without an active exception".
    trainer.close()
    dist.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
