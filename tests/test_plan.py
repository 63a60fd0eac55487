"""Epoch planner: every token of the epoch's rows is trained exactly once (or carried), plans are
identical after a resume, and every rank plans the same number of batches."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest

from slwdata.dataset.ledger import TailLedger, ledger_from_segments
from slwdata.dataset.plan import (
    BatchPlan,
    EpochPlanner,
    count_epoch_batches,
    plan_epoch,
    warmup_end_from_lengths,
)

E = 64  # row length in these tests


def linear_lengths(start: int, end: int, T: int, num_steps: int, k: int = 8) -> list[int]:
    """The paper's linear schedule by step, rounded down to a multiple of k (independent of pacing.py)."""
    out = []
    for t in range(num_steps):
        raw = start + (end - start) * min(t / T, 1.0) if T > 0 else end
        out.append(max(k, int(raw) - int(raw) % k))
    return out


def fetch(ids: np.ndarray) -> np.ndarray:
    """Fake corpus: token at position p of row r is r * E + p, so every token is unique."""
    return ids[:, None] * E + np.arange(E)[None, :]


def kept_tokens(plan: BatchPlan) -> np.ndarray:
    batch = plan.materialize(fetch)
    assert batch.shape == (plan.rows_per_batch, E)
    return batch[:, : plan.seq_len].reshape(-1)


def ledger_tokens(led: TailLedger) -> np.ndarray:
    segs = led.segments()
    if len(segs) == 0:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([r * E + np.arange(s, s + n) for r, s, n in segs.tolist()])


def run_epochs(policy, lengths, n_epochs, batches_per_epoch, B, warmup_end_step=None, rank_offset=0):
    """Plan and 'train' several epochs, carrying the ledger; return (kept tokens, planners)."""
    led: Optional[TailLedger] = None
    step = 0
    kept = []
    planners = []
    for ep in range(n_epochs):
        rows = rank_offset + ep * batches_per_epoch * B + np.arange(batches_per_epoch * B)
        pl = plan_epoch(
            None,
            B,
            E,
            lengths,
            first_step=step,
            policy=policy,
            ledger=led,
            warmup_end_step=warmup_end_step,
            fresh_rows=rows,
        )
        for p in pl:
            assert p.seq_len == lengths[min(p.step, len(lengths) - 1)]
            kept.append(kept_tokens(p))
        acct = pl.account
        acct.check()
        assert acct.fresh_rows == batches_per_epoch * B
        assert acct.steps == pl.position
        step = pl.step
        led = pl.ledger
        planners.append(pl)
    return np.concatenate(kept), planners


def all_fresh_tokens(n_epochs, batches_per_epoch, B, rank_offset=0):
    n_rows = n_epochs * batches_per_epoch * B
    return fetch(rank_offset + np.arange(n_rows)).reshape(-1)


SCHEDULES = {
    "T_lt_epoch": lambda n: linear_lengths(8, E, 12, n),
    "T_gt_epoch": lambda n: linear_lengths(8, E, 70, n),
    "T_zero": lambda n: linear_lengths(8, E, 0, n),
    "two_lengths": lambda n: [8] * 5 + [E] * (n - 5),
}


@pytest.mark.parametrize("policy", ["deferred", "interleave"])
@pytest.mark.parametrize("sched", sorted(SCHEDULES))
def test_every_token_trained_exactly_once_with_carry(policy, sched):
    n_epochs, M, B = 3, 20, 3
    lengths = SCHEDULES[sched](400)
    kept, planners = run_epochs(policy, lengths, n_epochs, M, B)
    carried = ledger_tokens(planners[-1].ledger)
    everything = np.concatenate([kept, carried])
    expected = all_fresh_tokens(n_epochs, M, B)
    assert len(everything) == len(expected), "a token was trained twice or lost"
    assert np.array_equal(np.sort(everything), np.sort(expected))
    for pl in planners:
        if policy == "interleave" or pl.step > warmup_end_from_lengths(lengths, E):
            # less than one whole tail batch is left over at epoch end
            assert pl.account.tokens_carried_out < B * E
    assert planners[-1].account.tokens_carried_out == len(carried)
    # the carried leftover of one epoch is the next epoch's starting ledger
    for a, b in zip(planners, planners[1:]):
        assert b.account.tokens_carried_in == a.account.tokens_carried_out


@pytest.mark.parametrize("sched", sorted(SCHEDULES))
def test_off_policy_counts_every_dropped_token(sched):
    n_epochs, M, B = 2, 20, 3
    lengths = SCHEDULES[sched](400)
    kept, planners = run_epochs("off", lengths, n_epochs, M, B)
    dropped = sum(pl.account.tokens_dropped for pl in planners)
    assert len(kept) + dropped == len(all_fresh_tokens(n_epochs, M, B))
    assert len(np.unique(kept)) == len(kept)
    for pl in planners:
        assert pl.account.tail_batches == 0 and pl.ledger.tokens == 0
        assert pl.account.steps == M
    if sched != "T_zero":
        assert dropped > 0


def test_tail_rows_served_in_warmup_are_truncated_again():
    # interleave during a long warmup: tail rows themselves get cut and their tails re-recorded
    lengths = [8] * 40 + [E]
    kept, planners = run_epochs("interleave", lengths, 1, 20, 2)
    acct = planners[0].account
    assert acct.tokens_rerecorded > 0
    warm_tails = [p for p in plan_epoch(20, 2, E, lengths, policy="interleave") if p.kind == "tail" and p.seq_len < E]
    assert warm_tails
    p = warm_tails[0]
    for i in range(p.rows_per_batch):
        segs = p.row_segments(i)
        assert sum(n for _, _, n in segs) == E
    everything = np.concatenate([kept, ledger_tokens(planners[0].ledger)])
    assert np.array_equal(np.sort(everything), np.sort(all_fresh_tokens(1, 20, 2)))


def test_interleave_keeps_ledger_bounded_and_deferred_waits_for_warmup():
    B, M = 4, 60
    lengths = linear_lengths(8, E, 30, 500)
    pl = plan_epoch(M, B, E, lengths, policy="interleave")
    pl.run()
    assert pl.account.ledger_peak_tokens < 2 * B * E
    wend = warmup_end_from_lengths(lengths, E)
    plans = list(plan_epoch(M, B, E, lengths, policy="deferred"))
    assert all(p.kind == "fresh" for p in plans if p.step < wend)
    # deferred's ledger grows through the warmup: all the warmup's tails are queued at once
    d = plan_epoch(M, B, E, lengths, policy="deferred")
    d.run()
    assert d.account.ledger_peak_tokens == sum(B * (E - L) for L in lengths[:wend])


def test_deferred_spreads_tail_batches_evenly():
    B, M = 2, 30
    lengths = [8] * 6 + [E] * 500  # 6 warmup batches drop 6*2*56 tokens = 5 full tail batches + rest
    plans = list(plan_epoch(M, B, E, lengths, policy="deferred"))
    kinds = "".join(p.kind[0] for p in plans)
    after = kinds[6:]
    k = after.count("t")
    assert k == (6 * B * (E - 8)) // (B * E) == 5
    tail_pos = [i for i, c in enumerate(after) if c == "t"]
    inner = np.diff(tail_pos)
    assert inner.max() - inner.min() <= 1, kinds  # Bresenham: no clumping
    # centred: the fresh runs before the first and after the last tail are about half a gap
    assert tail_pos[0] <= inner.max() and len(after) - 1 - tail_pos[-1] <= inner.max(), kinds


def test_deferred_carries_everything_when_epoch_ends_before_warmup():
    B, M = 2, 10
    lengths = [8] * 100 + [E]
    pl = plan_epoch(M, B, E, lengths, policy="deferred")
    assert all(p.kind == "fresh" for p in pl)
    assert pl.account.tokens_carried_out == M * B * (E - 8)
    pl.account.check()


def test_two_ranks_plan_the_same_number_of_batches():
    B, M = 3, 25
    for policy in ("off", "deferred", "interleave"):
        for sched in SCHEDULES.values():
            lengths = sched(300)
            ka = [p.kind for p in plan_epoch(None, B, E, lengths, policy=policy, fresh_rows=np.arange(M * B))]
            kb = [
                p.kind
                for p in plan_epoch(None, B, E, lengths, policy=policy, fresh_rows=10**9 + np.arange(M * B)[::-1])
            ]
            assert ka == kb
            assert count_epoch_batches(M, B, E, lengths, policy=policy) == len(ka)


def plans_equal(a: BatchPlan, b: BatchPlan) -> bool:
    same = (a.step, a.index, a.kind, a.seq_len, a.fresh_index) == (b.step, b.index, b.kind, b.seq_len, b.fresh_index)
    if a.kind == "fresh":
        return same and np.array_equal(a.rows, b.rows)
    return same and a.segments.tobytes() == b.segments.tobytes() and np.array_equal(a.row_offsets, b.row_offsets)


@pytest.mark.parametrize("policy", ["off", "deferred", "interleave"])
def test_resume_mid_warmup_and_mid_reuse_gives_identical_plans(policy):
    B, M = 3, 40
    lengths = linear_lengths(8, E, 25, 500)
    carried = ledger_from_segments([(10**6 + i, 8, 40) for i in range(7)])
    kw = dict(first_step=5, policy=policy, ledger=carried, fresh_rows=np.arange(M * B)[::-1].copy())
    full = list(plan_epoch(None, B, E, lengths, **kw))
    assert carried.tokens == 7 * 40  # the caller's ledger is not consumed
    assert count_epoch_batches(M, B, E, lengths, first_step=5, policy=policy, carried_tokens=7 * 40) == len(full)
    two_d = list(plan_epoch(M, B, E, lengths, **dict(kw, fresh_rows=kw["fresh_rows"].reshape(M, B))))
    assert len(two_d) == len(full) and all(plans_equal(a, b) for a, b in zip(full, two_d))
    tail_idx = [p.index for p in full if p.kind == "tail" and p.step >= 25]
    points = [0, 3, 12, len(full) - 1, len(full)]
    if tail_idx:
        points += [tail_idx[0], tail_idx[len(tail_idx) // 2] + 1]
    for k in points:
        pl = plan_epoch(None, B, E, lengths, **kw)
        pl.skip(k)
        assert pl.remaining_batches() == len(full) - k
        rest = list(pl)
        assert len(rest) == len(full) - k
        assert all(plans_equal(a, b) for a, b in zip(full[k:], rest)), f"resume at batch {k} diverged"
        assert pl.account == plan_epoch(None, B, E, lengths, **kw).run()
    pl = plan_epoch(None, B, E, lengths, **kw)
    pl.skip_to(5 + 12)
    assert plans_equal(next(pl), full[12])
    with pytest.raises(ValueError, match="already at step"):
        pl.skip_to(6)
    with pytest.raises(ValueError, match="epoch ended"):
        plan_epoch(None, B, E, lengths, **kw).skip(len(full) + 1)


def test_length_list_and_callable_agree_and_pacing_schedule_plan_works():
    B, M = 2, 30
    lengths = linear_lengths(8, E, 20, 200)
    a = [(p.kind, p.seq_len) for p in plan_epoch(M, B, E, lengths)]
    b = [(p.kind, p.seq_len) for p in plan_epoch(M, B, E, lambda s: lengths[min(s, 199)], warmup_end_step=20)]
    c = [(p.kind, p.seq_len) for p in plan_epoch(M, B, E, lambda s: lengths[min(s, 199)])]
    assert a == b == c
    pacing = pytest.importorskip("slwdata.pacing")
    sched = pacing.PacingSchedule(start=8, end=E, duration="20ba")
    plan_lengths = sched.plan(200, rows_per_step=B)
    assert plan_lengths[:20] != [E] * 20 and plan_lengths[-1] == E
    kept, planners = run_epochs("deferred", plan_lengths, 2, M, B)
    assert len(kept) + planners[-1].account.tokens_carried_out == 2 * M * B * E


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="policy must be one of"):
        plan_epoch(3, 2, E, [8], policy="sometimes")
    with pytest.raises(ValueError, match="not a whole number of batches of 2"):
        plan_epoch(None, 2, E, [8], fresh_rows=np.arange(5))
    with pytest.raises(ValueError, match="num_fresh_batches=4 but fresh_rows has 6 rows"):
        plan_epoch(4, 2, E, [8], fresh_rows=np.arange(6))
    with pytest.raises(ValueError, match=r"length_at\(2\) = 65, expected an int in \[1, 64\]"):
        list(plan_epoch(5, 2, E, [8, 8, 65]))
    with pytest.raises(ValueError, match=r"length_at\(0\) = 0"):
        next(plan_epoch(5, 2, E, lambda s: 0))
    with pytest.raises(ValueError, match="give num_fresh_batches or fresh_rows"):
        plan_epoch(None, 2, E, [8])
    p = next(plan_epoch(2, 2, E, [8]))
    with pytest.raises(ValueError, match="fetch_rows returned shape"):
        p.materialize(lambda ids: np.zeros((len(ids), E - 1)))


def test_empty_epoch_and_carry_only_epoch():
    # no fresh rows: the carried ledger's whole batches are still served (after warmup)
    led = ledger_from_segments([(i, 0, E) for i in range(5)])
    pl = plan_epoch(0, 2, E, [E], ledger=led)
    plans = list(pl)
    assert [p.kind for p in plans] == ["tail", "tail"]
    assert pl.account.tokens_carried_out == E
    assert isinstance(pl, EpochPlanner)
    assert list(plan_epoch(0, 2, E, [E])) == []


def test_docstring_examples_run():
    import doctest

    import slwdata.dataset.ledger as ledger_mod
    import slwdata.dataset.plan as plan_mod

    for mod in (ledger_mod, plan_mod):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 5 and result.failed == 0, mod.__name__


def test_ledger_and_planner_need_neither_torch_nor_streaming():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    # Bypass the package __init__ (which loads the torch dataset) to check these two modules alone.
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('slwdata.dataset'); pkg.__path__ = ['slwdata/dataset']\n"
        "sys.modules['slwdata.dataset'] = pkg\n"
        "import slwdata.dataset.plan, slwdata.dataset.ledger\n"
        "assert 'torch' not in sys.modules and 'streaming' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
