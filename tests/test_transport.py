"""The wire between DataLoader workers and the main process: a pickled plan gathers the same
tokens, in its compact form."""

from __future__ import annotations

import numpy as np
import pytest

from slwdata.dataset.plan import plan_epoch
from slwdata.dataset.transport import reduce_plan


@pytest.mark.parametrize("base", [0, 2**31 + 5])
def test_a_pickled_plan_is_the_same_plan(base):
    """Plans travel from DataLoader workers to the main process: after pickling, a plan
    gathers the same tokens (row ids, tail segments and their cut into rows), also with row
    ids past int32 (sent as they are)."""
    import pickle

    fresh = base + np.random.default_rng(0).permutation(8 * 4).reshape(8, 4)
    plans = list(plan_epoch(None, 4, 16, [8, 8, 16, 8, 16, 16, 16, 16, 16, 16], policy="interleave", fresh_rows=fresh))
    assert {p.kind for p in plans} == {"fresh", "tail"}

    def fetch(ids):
        return (ids[:, None] - base) * 100 + np.arange(16)

    for p in plans:
        q = pickle.loads(pickle.dumps(p))
        assert (q.step, q.index, q.kind, q.seq_len, q.fresh_index) == (
            p.step,
            p.index,
            p.kind,
            p.seq_len,
            p.fresh_index,
        )
        assert np.array_equal(q.materialize(fetch), p.materialize(fetch))
        if p.kind == "fresh":
            assert q.rows.dtype == np.int64 and np.array_equal(q.rows, p.rows)
        else:
            assert q.taken.dtype == p.taken.dtype and np.array_equal(q.taken, p.taken)
            assert np.array_equal(q.segments, p.segments)
            assert np.array_equal(q.row_offsets, p.row_offsets)
    # Half the bytes on the wire when the ids fit in int32 (a worker's items must fit its pipe).
    wire_rows = reduce_plan(plans[0])[1][7]
    assert wire_rows.dtype == (np.int32 if base == 0 else np.int64)
