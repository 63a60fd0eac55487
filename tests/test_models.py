"""The small GPT: shapes at changing lengths, causality, loss against a hand computation."""

import math

import pytest
import torch
import torch.nn.functional as F

from slwdata.demo.models import GPT, lm_loss
from slwdata.demo.models.gpt import get_config


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return GPT.from_name("tiny", vocab_size=97, block_size=64).eval()


@pytest.mark.parametrize("length", [8, 24, 64])
def test_forward_any_length(model, length):
    ids = torch.randint(0, 97, (3, length))
    logits = model(ids)
    assert logits.shape == (3, length, 97)
    assert torch.isfinite(logits).all()


def test_longer_than_block_size_is_an_error(model):
    with pytest.raises(ValueError, match="block_size 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_causal_prefix_logits_match(model):
    # What SLW relies on: a truncated row sees exactly what its prefix saw at full length.
    ids = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        full = model(ids)
        short = model(ids[:, :8])
    torch.testing.assert_close(full[:, :8], short, rtol=1e-4, atol=1e-5)


def test_loss_is_shifted_cross_entropy(model):
    ids = torch.randint(0, 97, (2, 16))
    logits = model(ids)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(lm_loss(logits, ids), expected)
    # At init the model is close to uniform over the vocabulary.
    assert abs(lm_loss(logits, ids).item() - math.log(97)) < 0.5


def test_tied_head_and_named_sizes():
    m = GPT.from_name("tiny", vocab_size=50, block_size=16)
    assert m.lm_head.weight is m.wte.weight
    assert get_config("gpt2-124m").n_layer == 12 and get_config("gpt2-124m").d_model == 768
    with pytest.raises(ValueError, match="unknown model size"):
        get_config("huge")


def test_training_step_reduces_loss_at_two_lengths():
    torch.manual_seed(0)
    m = GPT.from_name("tiny", vocab_size=16, block_size=32)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    ids = torch.arange(32).remainder(16).repeat(4, 1)  # a learnable cyclic pattern
    first = None
    for step in range(30):
        batch = ids[:, : (8 if step % 2 else 32)]
        loss = lm_loss(m(batch), batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5


def test_composer_model_loss_and_metrics():
    pytest.importorskip("composer")
    from slwdata.demo.models import ComposerGPT

    torch.manual_seed(0)
    cm = ComposerGPT("tiny", vocab_size=97, block_size=64)
    batch = {"input_ids": torch.randint(0, 97, (2, 16))}
    out = cm(batch)
    loss = cm.loss(out, batch)
    metrics = cm.get_metrics(is_train=False)
    for metric in metrics.values():
        cm.update_metric(batch, out, metric)
    torch.testing.assert_close(metrics["LanguageCrossEntropy"].compute(), loss.detach())
    torch.testing.assert_close(metrics["LanguagePerplexity"].compute(), loss.detach().exp())
