"""Checkpoint mid-warmup and resume: the same lengths and token counts from the resumed step on."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("composer")

from composer import Trainer  # noqa: E402
from composer.loggers import InMemoryLogger  # noqa: E402

from slwdata.composer import SequenceLengthWarmup  # noqa: E402
from tests.helpers_composer import Recorder, TinyLM, loader, logged  # noqa: E402


def _trainer(tmp_path, **kw):
    torch.manual_seed(0)
    model = TinyLM()
    rec, mem = Recorder(), InMemoryLogger()
    slw = SequenceLengthWarmup(start=8, duration="1200tok")
    trainer = Trainer(model=model, train_dataloader=loader(n=64, seq_len=64, batch_size=4), max_duration="10ba",
                      algorithms=[slw], callbacks=[rec], loggers=[mem],
                      optimizers=torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", progress_bar=False,
                      seed=0, save_folder=str(tmp_path / "ckpt"), save_interval="4ba", **kw)
    return trainer, slw, rec, mem


def test_resume_mid_warmup_gives_the_same_lengths(tmp_path):
    trainer, slw, rec, mem = _trainer(tmp_path)
    trainer.fit()
    full_lengths, full_tokens = rec.lengths, rec.tokens_after
    assert full_lengths[4] < 64  # the checkpoint at step 4 is mid-warmup
    ckpt = tmp_path / "ckpt" / "ep0-ba4-rank0.pt"
    assert ckpt.exists()

    resumed, slw2, rec2, mem2 = _trainer(tmp_path / "again", load_path=str(ckpt))
    resumed.fit()
    assert rec2.lengths == full_lengths[4:]
    assert rec2.tokens_after == full_tokens[4:]
    assert int(resumed.state.timestamp.token) == int(trainer.state.timestamp.token)
    # Cumulative counters come back with the checkpoint.
    assert slw2.dropped_tokens == slw.dropped_tokens
    assert logged(mem2, "slw/dropped_tokens") == logged(mem, "slw/dropped_tokens")[4:]
