"""``ComposerGPT``: the small GPT as a Composer model (needs the ``composer`` extra).

Batches are ``{"input_ids": LongTensor[B, L]}``; labels are the inputs shifted by one inside
the loss, so truncating ``input_ids`` (what Sequence Length Warmup does) is all it takes.

Example::

    >>> from slwdata.demo.models import ComposerGPT
    >>> model = ComposerGPT("tiny", vocab_size=50257, block_size=1024)
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from composer.models import ComposerModel
from torchmetrics import Metric

from slwdata.demo.models.gpt import GPT, get_config, lm_loss


def _input_ids(batch: Any) -> torch.Tensor:
    if isinstance(batch, Mapping):
        return batch["input_ids"]
    if isinstance(batch, torch.Tensor):
        return batch
    raise TypeError(f"expected a dict with 'input_ids' or a tensor, got {type(batch).__name__}")


class LanguageCrossEntropy(Metric):
    """Token-weighted mean next-token cross-entropy over an evaluation set."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sum_loss", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, input_ids: torch.Tensor) -> None:
        n = input_ids[:, 1:].numel()
        self.sum_loss += lm_loss(logits, input_ids).double() * n
        self.total += n

    def compute(self) -> torch.Tensor:
        return (self.sum_loss / self.total.clamp(min=1)).float()


class LanguagePerplexity(LanguageCrossEntropy):
    """exp of the token-weighted cross-entropy."""

    def compute(self) -> torch.Tensor:
        return torch.exp(super().compute())


class ComposerGPT(ComposerModel):
    """A named GPT size (``tiny``/``small``/``gpt2-124m``) trained with Composer.

    Validation metrics: ``LanguageCrossEntropy`` and ``LanguagePerplexity``.
    """

    def __init__(self, size: str = "tiny", **config_overrides: Any) -> None:
        super().__init__()
        self.model = GPT(get_config(size, **config_overrides))
        self.train_metrics: dict[str, Metric] = {}
        self.val_metrics = {
            "LanguageCrossEntropy": LanguageCrossEntropy(),
            "LanguagePerplexity": LanguagePerplexity(),
        }

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model(_input_ids(batch))

    def loss(self, outputs: torch.Tensor, batch: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return lm_loss(outputs, _input_ids(batch))

    def eval_forward(self, batch: Any, outputs: Any = None) -> torch.Tensor:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.val_metrics

    def update_metric(self, batch: Any, outputs: Any, metric: Metric) -> None:
        metric.update(outputs, _input_ids(batch))

    def flops_per_batch(self, batch: Any) -> int:
        """6 * params * tokens (the usual dense-transformer estimate, attention ignored)."""
        ids = _input_ids(batch)
        return 6 * self.model.num_params() * ids.numel()
