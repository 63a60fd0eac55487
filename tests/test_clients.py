"""What real consumers do with cut batches and with SLWDataset: ``.view()`` on the cut tensors
(Composer's metrics), token counters of several loaders, streaming's DataLoader idioms, plain
PyTorch with the schedule given once, and a model with buffers through memory pre-activation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slwdata.pacing import PacingSchedule
from slwdata.truncate import PlainSLW, SLWMismatchError, count_tokens, truncate_batch

FULL = 32


# ---------------------------------------------------------------- cuts
def test_cut_tensors_are_contiguous_and_view_works():
    x = torch.arange(4 * FULL).view(4, FULL)
    batch = {
        "input_ids": x,
        "labels": x.clone(),
        "attention_mask": torch.ones_like(x),
        "sequence_id": torch.zeros_like(x),
        "emb": torch.zeros(4, FULL, 3),
    }
    out = truncate_batch(batch, 8)
    for key, value in out.items():
        assert value.shape[:2] == (4, 8) and value.is_contiguous(), key
    assert out["labels"].view(-1).tolist() == x[:, :8].reshape(-1).tolist()
    assert out["emb"].view(-1).numel() == 4 * 8 * 3


def test_per_row_counts_are_recomputed_for_the_cut():
    """llm-foundry's collators store total_tokens / loss_generating_tokens per row."""
    ids = torch.arange(3 * FULL).view(3, FULL)
    mask = torch.ones_like(ids)
    mask[2, 5:] = 0  # a padded row: 5 real tokens
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[1, :4] = -100  # a prompt that does not generate loss
    batch = {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": mask,
        "total_tokens": mask.sum(1),
        "loss_generating_tokens": (labels[:, 1:] != -100).sum(1),
    }
    out = truncate_batch(batch, 8)
    assert out["total_tokens"].tolist() == [8, 8, 5]
    assert out["loss_generating_tokens"].tolist() == [7, 4, 4]
    # Without a mask (llm-foundry's text loader): every row's count is capped at the cut.
    out = truncate_batch(
        {"input_ids": ids, "total_tokens": [FULL] * 3, "labels": labels, "loss_generating_tokens": [31, 27, 4]}, 16
    )  # lists, as llm-foundry stores them
    assert out["total_tokens"] == [16, 16, 16] and out["loss_generating_tokens"] == [15, 12, 4]
    assert count_tokens(out) == 48


# ---------------------------------------------------------------- plain PyTorch
def _shards(tmp_path, rows=64, seq_len=FULL):
    from slwdata.dataset.testing import random_tokens, write_token_shards

    root = str(tmp_path / "shards")
    tokens = write_token_shards(root, tokens=random_tokens(rows, seq_len, vocab=64), rows_per_shard=16)
    return root, tokens


def test_plain_slw_binds_the_dataset_once(tmp_path):
    from slwdata.dataset import SLWDataset

    root, _ = _shards(tmp_path)
    ds = SLWDataset(local=root, batch_size=4, reuse="deferred")
    sched = PacingSchedule(start=8, duration="6ba")
    slw = PlainSLW(sched, dataset=ds)  # the only place the schedule is given
    assert ds.pacing is not None and ds.rows_per_step == 4
    lengths = [slw(b)["input_ids"].shape[1] for b in torch.utils.data.DataLoader(ds, batch_size=None)]
    assert lengths[:7] == [8, 8, 8, 16, 16, 24, 32] or lengths[:6] == ds.epochs.lengths[:6]
    assert lengths == [ds.seq_len_at(i) for i in range(len(lengths))]
    assert len(lengths) == len(ds) > 64 // 4  # the tail batches are served too


def test_plain_slw_refuses_a_dataset_planned_for_another_length(tmp_path):
    from slwdata.dataset import SLWDataset

    root, _ = _shards(tmp_path)
    ds = SLWDataset(local=root, batch_size=4)
    sched = PacingSchedule(start=8, end=FULL, duration="64sp")
    ds.bind_pacing(sched, rows_per_step=16)  # planned for 4 ranks
    slw = PlainSLW(sched, world_size=2)  # the loop says 2
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=None))
    with pytest.raises(
        SLWMismatchError,
        match=r"at step \d+ the dataset planned length \d+ but PlainSLW's "
        r"schedule gives \d+",
    ):
        for batch in loader:
            slw(batch)


# ---------------------------------------------------------------- streaming idioms
@pytest.mark.parametrize("num_workers", [0, 1])
def test_dataloader_with_a_batch_size_is_refused(tmp_path, num_workers):
    from slwdata.dataset import SLWDataset

    root, _ = _shards(tmp_path)
    ds = SLWDataset(local=root, batch_size=4)
    with pytest.raises(
        Exception,
        match=r"SLWDataset yields whole batches .*DataLoader\(ds, batch_size=None\) "
        r"or slwdata.dataset.make_dataloader\(ds\)",
    ):
        next(iter(torch.utils.data.DataLoader(ds, batch_size=16, num_workers=num_workers)))


def test_len_counts_the_batches_of_the_epoch_being_served(tmp_path):
    from slwdata.dataset import SLWDataset, make_dataloader

    root, _ = _shards(tmp_path)
    plain = SLWDataset(local=root, batch_size=4, reuse="deferred")
    assert len(plain) == len(list(torch.utils.data.DataLoader(plain, batch_size=None))) == 64 // 4
    plain.close()
    ds = SLWDataset(local=root, batch_size=4, reuse="deferred")
    ds.bind_pacing(PacingSchedule(start=8, duration="8ba"), rows_per_step=4)
    loader = make_dataloader(ds)
    for epoch in range(2):
        lens, n = [], 0
        for _ in loader:
            lens.append(len(loader))
            n += 1
        assert set(lens) == {n} == {len(ds)} == {ds.num_batches(epoch)}, epoch
    assert ds.num_batches(0) > 64 // 4 == ds.num_batches(1)  # epoch 0 also serves its tail batches


def test_unpaced_batches_are_plain_model_inputs(tmp_path):
    from slwdata.dataset import SLWDataset

    root, tokens = _shards(tmp_path)
    ds = SLWDataset(local=root, batch_size=4, labels=True)
    emb, head = torch.nn.Embedding(64, 8), torch.nn.Linear(8, 64)

    def model(input_ids, labels):  # a model's forward: no room for extra keys
        logits = head(emb(input_ids))
        return F.cross_entropy(logits[:, :-1].reshape(-1, 64), labels[:, 1:].reshape(-1))

    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=None)))
    assert sorted(batch) == ["input_ids", "labels"]
    assert torch.isfinite(model(**batch))
