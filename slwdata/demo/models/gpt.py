"""A small nanoGPT-style decoder: token + position embeddings, pre-LN blocks, tied head.

The sequence length may change at every call (Sequence Length Warmup feeds short batches
first), so nothing here caches shapes: any ``L <= block_size`` works.

Example::

    >>> import torch
    >>> from slwdata.demo.models import GPT
    >>> model = GPT.from_name("tiny", vocab_size=256, block_size=64)
    >>> logits = model(torch.randint(0, 256, (2, 16)))
    >>> tuple(logits.shape)
    (2, 16, 256)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT. ``vocab_size`` and ``block_size`` are usually set from the data."""

    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    vocab_size: int = 50257
    block_size: int = 1024
    dropout: float = 0.0
    bias: bool = True


# Named sizes. gpt2-124m is GPT-2 small (the paper's "117M"; 124M counting embeddings).
CONFIGS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=4, d_model=128),
    "small": GPTConfig(n_layer=4, n_head=4, d_model=256),
    "gpt2-124m": GPTConfig(n_layer=12, n_head=12, d_model=768),
}


def get_config(name: str, **overrides) -> GPTConfig:
    """Config by name with fields overridden, e.g. ``get_config("tiny", vocab_size=256)``."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model size {name!r}; choose one of {sorted(CONFIGS)}")
    return replace(CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None})


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model {cfg.d_model} is not a multiple of n_head {cfg.n_head}")
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # [B, H, T, hd]
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer returning logits ``[B, L, vocab]`` for ``input_ids [B, L]``."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance
        # independent of depth.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @classmethod
    def from_name(cls, name: str, **overrides) -> "GPT":
        """Build a named size (``tiny``, ``small``, ``gpt2-124m``) with fields overridden."""
        return cls(get_config(name, **overrides))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (the tied head counts once)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence length {t} exceeds the model's block_size {self.config.block_size}")
        pos = torch.arange(t, device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: position i predicts token i+1 (labels = shifted inputs).

    Example::

        >>> import torch
        >>> ids = torch.randint(0, 10, (2, 5))
        >>> lm_loss(torch.zeros(2, 5, 10), ids).item()  # uniform logits -> log(10)
        2.302585...
    """
    if input_ids.shape[1] < 2:
        raise ValueError("need at least 2 tokens per row to compute a next-token loss")
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), input_ids[:, 1:].reshape(-1).long())
