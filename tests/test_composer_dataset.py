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
    from slwdata.dataset.dataset import make_dataloader
    from slwdata.dataset.testing import random_tokens, write_token_shards

    write_token_shards(str(tmp_path / "shards"), tokens=random_tokens(96, 64, vocab=64), rows_per_shard=16)
    ds = SLWDataset(local=str(tmp_path / "shards"), batch_size=4, reuse="interleave", shuffle=False)
    rec, mem = Recorder(), InMemoryLogger()
    slw = SequenceLengthWarmup(start=8, duration="0.6dur")  # end read from the dataset
    torch.manual_seed(0)
    model = TinyLM()
    # The dataset yields whole batches (DataLoader batch_size=None): Composer needs the microbatch size.
    Trainer(model=model, train_dataloader=make_dataloader(ds), max_duration="20ba", algorithms=[slw],
            callbacks=[rec], loggers=[mem], optimizers=torch.optim.SGD(model.parameters(), lr=0.1), device="cpu",
            progress_bar=False, device_train_microbatch_size=4).fit()
    assert ds.pacing == slw.schedule and ds.rows_per_step == 4 and str(ds.run_total) == "20ba"
    plan = slw.schedule.plan(20, 4, total="20ba")
    assert rec.lengths == plan  # the dataset's slw_seq_len agreed at every step (else SLWMismatchError)
    assert rec.tokens_after[-1] == sum(plan) * 4
    dropped = logged(mem, "slw/dropped_tokens")
    reserved = logged(mem, "slw/reserved_tokens")
    assert dropped[-1] == sum(64 - n for n in plan) * 4
    assert len(reserved) == 20 and reserved == sorted(reserved) and reserved[-1] > 0
