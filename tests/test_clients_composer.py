"""SequenceLengthWarmup under the batch formats real Composer loaders produce: metrics that call
``.view()`` on the cut labels, token counters of llm-foundry / Hugging Face / tuple loaders, and a
model with buffers through the memory pre-activation step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("composer")

from composer import Trainer  # noqa: E402
from composer.core import Callback, DataSpec, Event  # noqa: E402
from composer.metrics.nlp import LanguageCrossEntropy  # noqa: E402
from composer.models import ComposerModel  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from slwdata.composer import SequenceLengthWarmup  # noqa: E402
from slwdata.pacing import PacingSchedule  # noqa: E402
from slwdata.truncate import count_tokens  # noqa: E402

VOCAB, FULL, ROWS = 64, 32, 4


class MetricLM(ComposerModel):
    """Embedding + linear LM with Composer's LanguageCrossEntropy as a train metric (which calls
    ``target.view(-1)``), an optional BatchNorm (buffers), dict or tuple batches."""

    def __init__(self, batchnorm: bool = False) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, 16)
        self.norm = torch.nn.BatchNorm1d(16) if batchnorm else None
        self.head = torch.nn.Linear(16, VOCAB)
        self.train_metrics = {"LanguageCrossEntropy": LanguageCrossEntropy()}
        self.seen: list[int] = []

    @staticmethod
    def _xy(batch):
        if isinstance(batch, dict):
            x = batch["input_ids"] if "input_ids" in batch else batch["tokens"]
            return x, batch.get("labels", x)
        return batch

    def forward(self, batch):
        x, _ = self._xy(batch)
        self.seen.append(int(x.shape[1]))
        h = self.emb(x)
        if self.norm is not None:
            h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return self.head(h)

    def loss(self, outputs, batch, *args, **kwargs):
        _, y = self._xy(batch)
        return F.cross_entropy(outputs[:, :-1].reshape(-1, VOCAB), y[:, 1:].reshape(-1), ignore_index=-100)

    def get_metrics(self, is_train=False):
        return self.train_metrics if is_train else {}

    def update_metric(self, batch, outputs, metric):
        _, y = self._xy(batch)
        metric.update(outputs, y)  # as HuggingFaceModel does: LanguageCrossEntropy calls target.view(-1)


class Rows(Dataset):
    """Fixed rows as an llm-foundry text/finetuning batch (per-row counts), a Hugging Face batch
    (padding, -100 labels), a tuple, or a dict without input_ids."""

    def __init__(self, style: str, n: int = 48) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, VOCAB, (n, FULL), generator=g)
        self.style = style

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        x = self.ids[i]
        if self.style == "tuple":
            return x, x.clone()
        if self.style == "tokens":
            return {"tokens": x}
        if self.style == "hf":  # every third row padded after 12 tokens
            mask = torch.ones_like(x)
            if i % 3 == 0:
                mask[12:] = 0
            labels = torch.where(mask.bool(), x, torch.full_like(x, -100))
            return {"input_ids": x, "labels": labels, "attention_mask": mask}
        labels = x.clone()
        labels[:3] = -100  # a prompt, as the finetuning collator marks it
        return {
            "input_ids": x,
            "labels": labels,
            "sequence_id": torch.zeros_like(x),
            "total_tokens": torch.tensor(FULL),
            "loss_generating_tokens": (labels[1:] != -100).sum(),
        }


def foundry_collate(rows):
    """llm-foundry's LossGeneratingTokensCollatorWrapper: per-row counts as lists of ints."""
    batch = torch.utils.data.default_collate([{k: v for k, v in r.items() if not k.endswith("_tokens")} for r in rows])
    batch["total_tokens"] = [int(r["total_tokens"]) for r in rows]
    batch["loss_generating_tokens"] = [int(r["loss_generating_tokens"]) for r in rows]
    return batch


def foundry_counter(batch):
    """llm-foundry's rule: per-row counts when the collator stored them."""
    return {"total": sum(batch["total_tokens"]), "loss_generating": sum(batch["loss_generating_tokens"])}


def mask_counter(batch):
    return int(batch["attention_mask"].sum())


class Recorder(Callback):
    """Per trained batch: its length (any batch format of this file)."""

    def __init__(self):
        self.lengths: list[int] = []

    def run_event(self, event, state, logger):
        if event == Event.BATCH_START:
            b = state.batch
            x = b[0] if not isinstance(b, dict) else b.get("input_ids", b.get("tokens"))
            self.lengths.append(int(x.shape[1]))


class FedTokens(Callback):
    """Tokens the model is fed (non-padding), step by step."""

    def __init__(self):
        self.fed: list[int] = []

    def run_event(self, event, state, logger):
        if event == Event.BEFORE_FORWARD:
            b = state.batch
            if isinstance(b, dict) and "attention_mask" in b:
                self.fed.append(int(b["attention_mask"].sum()))
            else:
                x = b[0] if not isinstance(b, dict) else b.get("input_ids", b.get("tokens"))
                self.fed.append(x.numel())


def fit(dl, max_duration="2000tok", model=None, **slw):
    torch.manual_seed(0)
    model = model or MetricLM()
    rec, fed = Recorder(), FedTokens()
    trainer = Trainer(
        model=model,
        train_dataloader=dl,
        max_duration=max_duration,
        algorithms=[SequenceLengthWarmup(start=8, duration=slw.pop("duration", "8ba"), **slw)],
        callbacks=[rec, fed],
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        progress_bar=False,
        seed=0,
    )
    trainer.fit()
    return trainer, rec, fed, model


def test_train_metric_views_the_cut_labels():
    """Composer's LanguageCrossEntropy calls target.view(-1) on the cut labels (crashed on a view)."""
    trainer, rec, _, _ = fit(DataLoader(Rows("hf"), batch_size=ROWS), max_duration="10ba")
    assert rec.lengths == PacingSchedule(start=8, end=FULL, duration="8ba").plan(10, ROWS)
    assert float(trainer.state.train_metric_values["LanguageCrossEntropy"]) > 0


def test_llmfoundry_per_row_counts_give_trained_tokens():
    dl = DataSpec(
        DataLoader(Rows("foundry"), batch_size=ROWS, collate_fn=foundry_collate),
        get_num_tokens_in_batch=foundry_counter,
    )
    trainer, rec, fed, _ = fit(dl, max_duration="1500tok")
    assert rec.lengths[0] == 8 and len(set(rec.lengths)) > 2
    assert int(trainer.state.timestamp.token) == sum(fed.fed) == ROWS * sum(rec.lengths)
    assert sum(fed.fed) >= 1500 > sum(fed.fed) - fed.fed[-1]  # stopped on trained tokens


def test_hf_padded_batches_counted_by_attention_mask():
    dl = DataSpec(DataLoader(Rows("hf"), batch_size=ROWS), get_num_tokens_in_batch=mask_counter)
    trainer, rec, fed, _ = fit(dl, max_duration="1200tok")
    assert int(trainer.state.timestamp.token) == sum(fed.fed) < ROWS * sum(rec.lengths)  # padding not counted
    # Composer's default counter (input_ids.numel()) on the same batches: rows x cut length.
    trainer, rec, fed, _ = fit(DataLoader(Rows("hf"), batch_size=ROWS), max_duration="1200tok")
    assert int(trainer.state.timestamp.token) == ROWS * sum(rec.lengths)


def test_tuple_batches_get_an_error_that_says_what_to_do():
    """(inputs, targets) rows: the default collate gives a list of two tensors."""
    with pytest.raises(
        ValueError,
        match=r"this batch is a list: use dict batches with 'input_ids', or give the "
        r"Trainer a DataSpec.*get_num_tokens_in_batch=slwdata.truncate.count_tokens",
    ):
        fit(DataLoader(Rows("tuple"), batch_size=ROWS), max_duration="1000tok")
    dl = DataSpec(DataLoader(Rows("tuple"), batch_size=ROWS), get_num_tokens_in_batch=count_tokens)
    trainer, rec, fed, _ = fit(dl, max_duration="1000tok")
    assert int(trainer.state.timestamp.token) == sum(fed.fed) == ROWS * sum(rec.lengths)


def test_dict_without_input_ids_names_the_missing_key():
    with pytest.raises(ValueError, match=r"the batch has no 'input_ids' key \(keys: \['tokens'\]\)"):
        fit(DataLoader(Rows("tokens"), batch_size=ROWS), max_duration="1000tok")


def test_preactivation_leaves_batchnorm_buffers_unchanged():
    class Snap(Callback):
        def __init__(self):
            self.at = {}

        def run_event(self, event, state, logger):
            # Callbacks run after the algorithms of the same event: AFTER_DATALOADER of step 0
            # is right after the full-length pre-activation pass.
            if event in (Event.FIT_START, Event.AFTER_DATALOADER) and event not in self.at:
                self.at[event] = {k: v.clone() for k, v in state.model.named_buffers()}

    model, snap = MetricLM(batchnorm=True), Snap()
    torch.manual_seed(0)
    Trainer(
        model=model,
        train_dataloader=DataLoader(Rows("hf"), batch_size=ROWS),
        max_duration="1ba",
        algorithms=[SequenceLengthWarmup(start=8, duration="8ba")],
        callbacks=[snap],
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        progress_bar=False,
    ).fit()
    assert model.seen == [FULL, 8]  # the pre-activation pass ran
    before, after = snap.at[Event.FIT_START], snap.at[Event.AFTER_DATALOADER]
    assert set(before) == {"norm.running_mean", "norm.running_var", "norm.num_batches_tracked"}
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_hf_gpt2_with_language_metrics_on_slwdataset(tmp_path):
    """composer.models.HuggingFaceModel over a GPT-2 from a local config (random weights), with
    the train metrics Composer's GPT-2 factory gives it, paced by the algorithm over SLWDataset."""
    transformers = pytest.importorskip("transformers")
    from composer.loggers import InMemoryLogger
    from composer.metrics.nlp import LanguagePerplexity
    from composer.models import HuggingFaceModel

    from slwdata.dataset import SLWDataset, make_dataloader
    from slwdata.dataset.testing import random_tokens, write_token_shards

    write_token_shards(str(tmp_path / "shards"), tokens=random_tokens(64, FULL, vocab=VOCAB), rows_per_shard=16)
    ds = SLWDataset(local=str(tmp_path / "shards"), batch_size=ROWS, labels=True, reuse="deferred", shuffle=True)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=FULL, n_embd=16, n_layer=2, n_head=2)
    torch.manual_seed(0)
    model = HuggingFaceModel(
        transformers.GPT2LMHeadModel(config),
        use_logits=True,
        metrics=[LanguageCrossEntropy(ignore_index=-100), LanguagePerplexity(ignore_index=-100)],
    )
    rec, fed, mem = Recorder(), FedTokens(), InMemoryLogger()
    trainer = Trainer(
        model=model,
        train_dataloader=make_dataloader(ds),
        max_duration="1ep",
        algorithms=[SequenceLengthWarmup(start=8, duration="6ba")],
        callbacks=[rec, fed],
        loggers=[mem],
        optimizers=torch.optim.AdamW(model.parameters(), lr=1e-3),
        device="cpu",
        progress_bar=False,
        device_train_microbatch_size=ROWS,
    )
    trainer.fit()
    assert rec.lengths == [ds.seq_len_at(i) for i in range(len(rec.lengths))] and rec.lengths[0] == 8
    assert len(rec.lengths) == ds.num_batches(0) > 64 // ROWS  # the tails were served as extra batches
    assert int(trainer.state.timestamp.token) == sum(fed.fed) == ROWS * sum(rec.lengths)
    for name in ("LanguageCrossEntropy", "LanguagePerplexity"):
        assert torch.isfinite(torch.as_tensor(trainer.state.train_metric_values[name])), name
    reserved = [v for _, v in mem.data["slw/reserved_tokens"]]
    acc = ds.epoch_account(0)
    assert reserved[-1] > 0 and acc.tokens_trained + acc.tokens_carried_out == 64 * FULL


def test_llmfoundry_builder_without_llmfoundry(tmp_path):
    """The `slw` loader builder as llm-foundry calls it (keys of the YAML, tokenizer, device batch
    size); here without llm-foundry installed, so counted by slwdata's own counter."""
    from slwdata.dataset.testing import random_tokens, write_token_shards
    from slwdata.llmfoundry import build_slw_dataloader

    root = str(tmp_path / "shards")
    write_token_shards(root, tokens=random_tokens(32, FULL, vocab=VOCAB), rows_per_shard=16)
    spec = build_slw_dataloader(
        None,
        4,
        {"local": root, "shuffle": True, "max_seq_len": FULL, "reuse": "deferred"},
        num_workers=0,
        drop_last=True,
        prefetch_factor=None,
        persistent_workers=False,
    )
    batches = list(spec.dataloader)
    batch = batches[0]
    assert sorted(batch) == ["input_ids", "labels"] and tuple(batch["input_ids"].shape) == (4, FULL)
    assert spec.get_num_tokens_in_batch(batch) == 4 * FULL
    spec.dataloader.dataset.close()
    # DataLoader workers (the YAML's num_workers): the same batches.
    spec = build_slw_dataloader(
        None,
        4,
        {"local": root, "shuffle": True, "max_seq_len": FULL},
        num_workers=1,
        prefetch_factor=2,
        persistent_workers=False,
        pin_memory=False,
    )
    assert [b["input_ids"].tolist() for b in spec.dataloader] == [b["input_ids"].tolist() for b in batches]
    spec.dataloader.dataset.close()
    with pytest.raises(ValueError, match=r"dataset.max_seq_len=128 but the shards hold rows of 32 tokens"):
        build_slw_dataloader(None, 4, {"local": root, "max_seq_len": 128})
    with pytest.raises(
        ValueError,
        match=r"train_loader.dataset: unknown key\(s\) \['suffle'\], not supported: "
        r"mlm_probability \(SLW trains causal LMs",
    ):
        build_slw_dataloader(None, 4, {"local": root, "suffle": True, "mlm_probability": 0.15})
    with pytest.raises(ValueError, match=r"slw dataloader, train_loader: unknown key\(s\) \['num_worker'\]"):
        build_slw_dataloader(None, 4, {"local": root}, num_worker=2)
    with pytest.raises(ValueError, match="drop_last: false is not supported"):
        build_slw_dataloader(None, 4, {"local": root}, drop_last=False)
