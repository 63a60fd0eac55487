"""Checkpoint mid-warmup and resume: the same lengths and token counts from the resumed step on."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("composer")

from composer import Trainer  # noqa: E402
from composer.loggers import InMemoryLogger  # noqa: E402

from slwdata.composer import SequenceLengthWarmup  # noqa: E402

from helpers_composer import Recorder, TinyLM, loader, logged  # noqa: E402


def _trainer(tmp_path, **kw):
    torch.manual_seed(0)
    model = TinyLM()
    rec, mem = Recorder(), InMemoryLogger()
    slw = SequenceLengthWarmup(start=8, duration="1200tok")
    trainer = Trainer(
        model=model,
        train_dataloader=loader(n=64, seq_len=64, batch_size=4),
        max_duration="10ba",
        algorithms=[slw],
        callbacks=[rec],
        loggers=[mem],
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        progress_bar=False,
        seed=0,
        save_folder=str(tmp_path / "ckpt"),
        save_interval="4ba",
        **kw,
    )
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
    assert (slw2.dropped_tokens, slw2.trained_tokens) == (slw.dropped_tokens, slw.trained_tokens)
    assert logged(mem2, "slw/dropped_tokens") == logged(mem, "slw/dropped_tokens")[4:]


def test_resume_with_planning_dataset_replays_without_false_mismatch(tmp_path):
    """A plain DataLoader is replayed up to the resumed batch; those batches carry earlier plans."""
    from composer.loggers import InMemoryLogger as Mem

    from helpers_composer import PlanningRows

    def run(folder, **kw):
        torch.manual_seed(0)
        model, rec = TinyLM(), Recorder()
        ds = PlanningRows(n=48)
        slw = SequenceLengthWarmup(start=8, duration="8ba")
        trainer = Trainer(
            model=model,
            train_dataloader=torch.utils.data.DataLoader(ds, batch_size=4),
            max_duration="10ba",
            algorithms=[slw],
            callbacks=[rec],
            loggers=[Mem()],
            optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
            device="cpu",
            progress_bar=False,
            seed=0,
            save_folder=str(folder),
            save_interval="4ba",
            **kw,
        )
        trainer.fit()
        return rec, slw

    rec, slw = run(tmp_path / "a")
    rec2, slw2 = run(tmp_path / "b", load_path=str(tmp_path / "a" / "ep0-ba4-rank0.pt"))
    assert rec2.lengths == rec.lengths[4:]
    assert (slw2.trained_tokens, slw2.reserved_tokens) == (slw.trained_tokens, slw.reserved_tokens)
