"""SequenceLengthWarmup with the real SLWDataset: binding, planned lengths agree, tails re-served."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("composer")
pytest.importorskip("streaming")

from composer import Trainer  # noqa: E402
from composer.loggers import InMemoryLogger  # noqa: E402

from slwdata.composer import SequenceLengthWarmup  # noqa: E402

from helpers_composer import Recorder, TinyLM, logged  # noqa: E402


def test_slw_dataset_end_to_end(tmp_path):
    from slwdata.dataset import SLWDataset
    from slwdata.dataset.testing import random_tokens, write_token_shards
    from slwdata.dataset.transport import make_dataloader

    write_token_shards(str(tmp_path / "shards"), tokens=random_tokens(96, 64, vocab=64), rows_per_shard=16)
    ds = SLWDataset(local=str(tmp_path / "shards"), batch_size=4, reuse="interleave", shuffle=False)
    rec, mem = Recorder(), InMemoryLogger()
    slw = SequenceLengthWarmup(start=8, duration="0.6dur")  # end read from the dataset
    torch.manual_seed(0)
    model = TinyLM()
    # The dataset yields whole batches (DataLoader batch_size=None): Composer needs the microbatch size.
    Trainer(
        model=model,
        train_dataloader=make_dataloader(ds),
        max_duration="20ba",
        algorithms=[slw],
        callbacks=[rec],
        loggers=[mem],
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        progress_bar=False,
        device_train_microbatch_size=4,
    ).fit()
    assert ds.pacing == slw.schedule and ds.rows_per_step == 4 and str(ds.run_total) == "20ba"
    plan = slw.schedule.plan(20, 4, total="20ba")
    assert rec.lengths == plan  # the dataset's slw_seq_len agreed at every step (else SLWMismatchError)
    assert rec.tokens_after[-1] == sum(plan) * 4
    dropped = logged(mem, "slw/dropped_tokens")
    reserved = logged(mem, "slw/reserved_tokens")
    assert dropped[-1] == sum(64 - n for n in plan) * 4
    assert len(reserved) == 20 and reserved == sorted(reserved) and reserved[-1] > 0


def test_epoch_duration_trains_the_deferred_tail_batches(tmp_path):
    """max_duration in epochs: Composer must not cut the epoch at the fresh-only length, or the
    deferred tail batches served at the end of the epoch would never be trained."""
    from slwdata.dataset import SLWDataset
    from slwdata.dataset.testing import random_tokens, write_token_shards
    from slwdata.dataset.transport import make_dataloader

    write_token_shards(str(tmp_path / "shards"), tokens=random_tokens(96, 64, vocab=64), rows_per_shard=16)
    ds = SLWDataset(local=str(tmp_path / "shards"), batch_size=4, reuse="deferred", shuffle=False)
    fresh_batches = len(ds)  # 24 before pacing is bound
    assert fresh_batches == 24
    rec, mem = Recorder(), InMemoryLogger()
    slw = SequenceLengthWarmup(start=8, duration="10ba")
    torch.manual_seed(0)
    model = TinyLM()
    Trainer(
        model=model,
        train_dataloader=make_dataloader(ds),
        max_duration="2ep",
        algorithms=[slw],
        callbacks=[rec],
        loggers=[mem],
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        progress_bar=False,
        device_train_microbatch_size=4,
    ).fit()
    epoch0, epoch1 = ds.num_batches(0), ds.num_batches(1)
    assert epoch0 > fresh_batches  # the deferred tails form extra batches in epoch 0
    assert len(rec.lengths) == epoch0 + epoch1
    # Every token of epoch 0 was trained once, except what the account carried to epoch 1.
    acc0 = ds.epoch_account(0)
    assert acc0.tokens_trained + acc0.tokens_carried_out == 96 * 64
    assert logged(mem, "slw/reserved_tokens")[-1] > 0
