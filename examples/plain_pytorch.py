"""Sequence Length Warmup in a hand-written PyTorch loop (no Composer).

The dataset plans which tails each step's truncation drops and serves them again
(``reuse="deferred"``); ``PlainSLW`` truncates each batch to the paced length and counts
trained tokens, so the loop stops on a token budget and the LR decays token-wise.

    python examples/plain_pytorch.py SHARDS_DIR --tokens 200000 --lr 3e-3
"""

from __future__ import annotations

import argparse
import math

import torch
from torch.utils.data import DataLoader

from slwdata.dataset import SLWDataset
from slwdata.demo.models import GPT, lm_loss
from slwdata.pacing import PacingSchedule
from slwdata.truncate import PlainSLW


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shards", help="folder written by 'slwdata convert'")
    p.add_argument("--tokens", type=int, default=200_000, help="trained-token budget")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", default="0.3dur", help="SLW duration T ('500ba', '1e5tok', '0.3dur')")
    p.add_argument("--start", type=int, default=8)
    p.add_argument("--model-size", default="tiny")
    p.add_argument("--vocab-size", type=int, default=None, help="default: from the shards' slwdata.json")
    p.add_argument("--seed", type=int, default=17)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    ds = SLWDataset(
        local=args.shards, batch_size=args.batch_size, shuffle=True, shuffle_seed=args.seed, reuse="deferred"
    )
    total = f"{args.tokens}tok"
    schedule = PacingSchedule(start=args.start, end=ds.seq_len, duration=args.warmup)
    # The schedule is given once: PlainSLW binds it to the dataset (before the iterator exists),
    # so the dataset predicts this run's truncation and tails, and checks each batch's length.
    slw = PlainSLW(schedule, total=total, dataset=ds)
    vocab = args.vocab_size or (ds.meta or {}).get("tokenizer", {}).get("vocab_size") or 65536
    model = GPT.from_name(args.model_size, vocab_size=int(vocab), block_size=ds.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)

    def lr_at(tokens: int) -> float:  # token-wise: 1% linear warmup then cosine to 10%
        frac = tokens / args.tokens
        if frac < 0.01:
            return args.lr * frac / 0.01
        return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (frac - 0.01) / 0.99))))

    loss = torch.tensor(float("nan"))
    reserved = 0
    while slw.trained_tokens < args.tokens:
        for batch in DataLoader(ds, batch_size=None):
            if slw.trained_tokens >= args.tokens:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(slw.trained_tokens)
            short = slw(batch)  # pops slw_* metadata (checked: SLWMismatchError), cuts to the paced length
            planned = int(slw.last_info.meta["slw_seq_len"].flatten()[0])
            reserved += int(slw.last_info.meta["slw_tail_rows"].flatten()[0]) * planned
            ids = short["input_ids"]
            loss = lm_loss(model(ids), ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if slw.step % 10 == 0:
                print(
                    f"step {slw.step:5d}  len {ids.shape[1]:4d}  tokens {slw.trained_tokens:,}  loss {loss.item():.3f}",
                    flush=True,
                )
    result = {
        "steps": slw.step,
        "trained_tokens": slw.trained_tokens,
        "dropped_tokens": slw.dropped_tokens,
        "tail_tokens_seen": reserved,
        "final_loss": float(loss.detach()),
    }
    print(result)
    return result


if __name__ == "__main__":
    main()
