"""truncate_batch / slw_step / PlainSLW: views, every sequence tensor, slw_ metadata, counts."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from slwdata.pacing import PacingSchedule
from slwdata.truncate import PlainSLW, row_length, slw_step, truncate_batch


def _dict_batch(rows=3, n=16):
    ids = torch.arange(rows * n).view(rows, n)
    return {
        "input_ids": ids,
        "labels": ids + 1000,
        "attention_mask": torch.ones(rows, n, dtype=torch.long),
        "position_ids": torch.arange(n).expand(rows, n),
        "embeds": torch.randn(rows, n, 4),
        "doc_ids": torch.tensor([7, 8, 9]),  # 1-D: per-row, not sequence-shaped
        "other": torch.zeros(rows, 5),  # dim 1 != full length: left alone
    }


def test_dict_batch_cuts_every_sequence_tensor_contiguously():
    batch = _dict_batch()
    out, info = truncate_batch(batch, 8, return_info=True)
    for key in ("input_ids", "labels", "attention_mask", "position_ids"):
        assert out[key].shape == (3, 8)
        assert torch.equal(out[key], batch[key][:, :8])
        assert out[key].is_contiguous()  # .view(-1) works (Composer's metrics, HF losses)
    assert out["embeds"].shape == (3, 8, 4)
    assert out["doc_ids"] is batch["doc_ids"] and out["other"] is batch["other"]
    assert (info.row_len, info.seq_len, info.rows, info.dropped_tokens, info.kept_tokens) == (16, 8, 3, 24, 24)
    assert batch["input_ids"].shape == (3, 16)  # the caller's batch is untouched


def test_tuple_and_list_batches():
    x = torch.arange(20).view(2, 10)
    y = x + 1
    (xs, ys), info = truncate_batch((x, y), 4, return_info=True)
    assert xs.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]] and torch.equal(ys, y[:, :4])
    assert info.dropped_tokens == 12
    out = truncate_batch([{"input_ids": x}, y], 6)
    assert isinstance(out, list) and out[0]["input_ids"].shape == (2, 6) and out[1].shape == (2, 6)
    Pair = namedtuple("Pair", "inputs targets")
    out = truncate_batch(Pair(x, y), 2)
    assert isinstance(out, Pair) and out.targets.shape == (2, 2)


def test_slw_keys_are_popped_not_truncated():
    batch = _dict_batch()
    batch["slw_seq_len"] = torch.full((3,), 8)
    batch["slw_tail_rows"] = 1
    out, info = truncate_batch(batch, 8, return_info=True)
    assert not any(k.startswith("slw_") for k in out)
    assert info.meta["slw_tail_rows"] == 1 and torch.equal(info.meta["slw_seq_len"], torch.full((3,), 8))


def test_keys_restricts_what_is_cut():
    batch = _dict_batch()
    out = truncate_batch(batch, 4, keys=["input_ids"])
    assert out["input_ids"].shape == (3, 4) and out["labels"].shape == (3, 16)


def test_longer_than_batch_is_a_no_op_and_bad_input_errors():
    batch = _dict_batch(n=8)
    out, info = truncate_batch(batch, 64, return_info=True)
    assert out["input_ids"].shape == (3, 8) and info.dropped_tokens == 0 and info.seq_len == 8
    with pytest.raises(ValueError, match="positive int"):
        truncate_batch(batch, 0)
    with pytest.raises(ValueError, match="sequence-shaped"):
        row_length({"x": torch.zeros(3)})


def test_slw_step_follows_the_schedule():
    sched = PacingSchedule(start=8, end=64, duration="8ba")
    batch = {"input_ids": torch.zeros(2, 64, dtype=torch.long)}
    lengths = [slw_step(batch, step, sched)[1] for step in range(10)]
    assert lengths == sched.plan(10, rows_per_step=2)
    assert lengths[0] == 8 and lengths[-1] == 64
    # A schedule without end takes the batch's length.
    assert slw_step(batch, 4, PacingSchedule(duration="8ba"))[1] == 32


def test_plain_slw_counts_trained_and_dropped_tokens():
    sched = PacingSchedule(start=8, end=32, duration="200tok")
    slw = PlainSLW(sched, world_size=2)
    seen = []
    for _ in range(8):
        out = slw({"input_ids": torch.zeros(4, 32, dtype=torch.long)})
        seen.append(out["input_ids"].shape[1])
    assert seen == sched.plan(8, rows_per_step=8)  # global rows = 4 * world_size
    assert slw.trained_tokens == sum(seen) * 8
    assert slw.dropped_tokens == sum(32 - n for n in seen) * 8
    resumed = PlainSLW(sched, world_size=2)
    resumed.load_state_dict(slw.state_dict())
    assert resumed.state_dict() == slw.state_dict()


def test_plain_slw_refuses_a_later_batch_longer_than_the_inferred_end():
    slw = PlainSLW(PacingSchedule(start=8, end=None, duration="100ba"))
    slw(torch.zeros(2, 16, dtype=torch.long))
    slw(torch.zeros(2, 12, dtype=torch.long))  # shorter: nothing is lost
    with pytest.raises(ValueError, match=r"length 24, longer than the end length 16.*pass end="):
        slw(torch.zeros(2, 24, dtype=torch.long))
    # With an explicit end, longer rows are the user's choice and are cut to end.
    explicit = PlainSLW(PacingSchedule(start=8, end=16, duration="0ba"))
    explicit(torch.zeros(2, 16, dtype=torch.long))
    assert tuple(explicit(torch.zeros(2, 24, dtype=torch.long)).shape) == (2, 16)
