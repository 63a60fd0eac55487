"""TailLedger: 16-byte entries, FIFO order, exact takes, conservation, checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from slwdata.dataset.ledger import (
    SEGMENT_DTYPE,
    TailLedger,
    ledger_from_segments,
    make_segments,
    split_into_rows,
)


def expand(segments: np.ndarray) -> list[tuple[int, int]]:
    """Every token a run of segments stands for, as (row, position), in order."""
    return [(int(r), int(s) + i) for r, s, n in segments.tolist() for i in range(n)]


def test_entry_is_16_bytes():
    assert SEGMENT_DTYPE.itemsize == 16
    assert SEGMENT_DTYPE.names == ("row", "start", "length")
    assert SEGMENT_DTYPE["row"] == np.int64 and SEGMENT_DTYPE["start"] == np.int32
    led = TailLedger()
    led.push(np.arange(1000), 3, 5)
    assert led.nbytes == 16 * 1000
    assert led.peak_bytes == 16 * 1000
    assert led.allocated_bytes >= led.nbytes
    # row ids beyond int32 survive (global sample ids of a large corpus)
    led2 = TailLedger()
    led2.push([2**40 + 7], [1], [2])
    assert led2.take(2)["row"].tolist() == [2**40 + 7]


def test_take_splits_the_head_segment():
    led = ledger_from_segments([(7, 4, 12), (9, 4, 12)])
    out = led.take(16)
    assert out.tolist() == [(7, 4, 12), (9, 4, 4)]
    assert led.segments().tolist() == [(9, 8, 8)]
    assert led.tokens == 8 and len(led) == 1
    assert led.take(8).tolist() == [(9, 8, 8)]
    assert led.tokens == 0 and len(led) == 0
    assert len(led.take(0)) == 0


def test_take_too_much_is_a_clear_error():
    led = ledger_from_segments([(1, 0, 5)])
    with pytest.raises(ValueError, match="asked for 6 tokens, only 5 queued"):
        led.take(6)
    assert led.tokens == 5  # nothing consumed by the failed take


def test_push_validates_input():
    led = TailLedger()
    with pytest.raises(ValueError, match="negative segment length"):
        led.push([1], [0], [-1])
    with pytest.raises(ValueError, match="negative segment start"):
        led.push([1], [-2], [1])
    with pytest.raises(TypeError, match="integers"):
        led.push([1.5], [0], [1])
    with pytest.raises(ValueError, match="int32"):
        led.push([1], [2**31 - 1], [5])
    led.push([1, 2, 3], [0, 0, 0], [0, 4, 0])  # zero-length tails are not stored
    assert len(led) == 1 and led.tokens == 4


def test_random_fifo_conservation_against_reference():
    rng = np.random.default_rng(0)
    led = TailLedger(capacity=16)  # tiny, so growth and compaction both happen
    ref: list[tuple[int, int]] = []
    got: list[tuple[int, int]] = []
    next_row = 0
    peak = 0
    for _ in range(400):
        if rng.random() < 0.55:
            k = int(rng.integers(0, 30))
            rows = np.arange(next_row, next_row + k)
            next_row += k
            starts = rng.integers(0, 50, size=k)
            lens = rng.integers(0, 20, size=k)
            led.push(rows, starts, lens)
            ref.extend(expand(make_segments(rows, starts, lens)))
            peak = max(peak, len(led))
        else:
            n = int(rng.integers(0, led.tokens + 1))
            out = led.take(n)
            assert int(out["length"].sum()) == n
            assert (out["length"] > 0).all()
            got.extend(expand(out))
        assert led.tokens == len(ref) - len(got)
        assert led.nbytes == 16 * len(led)
    got.extend(expand(led.take(led.tokens)))
    assert got == ref  # every token once, in FIFO order
    assert led.peak_entries == peak
    assert led.tokens_pushed == led.tokens_taken == len(ref)


def test_split_into_rows_cuts_at_row_boundaries():
    rng = np.random.default_rng(1)
    for e in (1, 7, 16):
        lens = rng.integers(1, 3 * e, size=50)
        pad = (-int(lens.sum())) % e
        lens = np.append(lens, pad) if pad else lens
        segs = make_segments(np.arange(len(lens)), rng.integers(0, 100, size=len(lens)), lens)
        pieces, off = split_into_rows(segs, e)
        n_rows = int(lens.sum()) // e
        assert len(off) == n_rows + 1 and off[0] == 0 and off[-1] == len(pieces)
        for i in range(n_rows):
            assert int(pieces["length"][off[i] : off[i + 1]].sum()) == e
        assert expand(pieces) == expand(segs)
    with pytest.raises(ValueError, match="not a whole number of rows"):
        split_into_rows(make_segments([0], [0], [5]), 4)


def test_take_rows():
    led = ledger_from_segments([(1, 8, 8), (2, 8, 8), (3, 0, 20)])
    pieces, off = led.take_rows(2, 16)
    assert pieces.tolist() == [(1, 8, 8), (2, 8, 8), (3, 0, 16)]
    assert off.tolist() == [0, 2, 3]
    assert led.segments().tolist() == [(3, 16, 4)]


def test_state_dict_round_trip_and_continue_identically():
    rng = np.random.default_rng(2)
    led = TailLedger()
    for _ in range(20):
        led.push(rng.integers(0, 10**9, 13), rng.integers(0, 9, 13), rng.integers(1, 9, 13))
        led.take(int(rng.integers(0, led.tokens // 2 + 1)))
    sd = led.state_dict()
    assert sd["row"].dtype == np.int64 and sd["length"].dtype == np.int32
    other = TailLedger()
    other.load_state_dict(sd)
    assert other.tokens == led.tokens and other.peak_entries == led.peak_entries
    assert other.segments().tobytes() == led.segments().tobytes()
    for _ in range(5):
        n = led.tokens // 3
        assert led.take(n).tobytes() == other.take(n).tobytes()
    bad = dict(led.state_dict(), tokens=led.tokens + 1)
    with pytest.raises(ValueError, match="segments hold"):
        TailLedger().load_state_dict(bad)
    with pytest.raises(ValueError, match="unknown version"):
        TailLedger().load_state_dict(dict(sd, version=99))


def test_copy_is_independent_and_describe_reports_sizes():
    led = ledger_from_segments([(1, 0, 10), (2, 0, 10)])
    cp = led.copy()
    cp.take(15)
    assert led.tokens == 20 and cp.tokens == 5
    text = led.describe()
    assert "2 segments" in text and "20 tokens" in text and "32 B" in text
    assert "TailLedger(" in repr(led)


def test_portable_state_survives_torch_weights_only_load():
    import io

    torch = pytest.importorskip("torch")
    led = ledger_from_segments([(2**40, 3, 9), (5, 0, 1), (6, 7, 1000)])
    led.take(4)
    buf = io.BytesIO()
    torch.save({"ledger": led.state_dict(portable=True)}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["ledger"]
    other = TailLedger()
    other.load_state_dict(state)
    assert other.segments().tobytes() == led.segments().tobytes()
    assert other.tokens == led.tokens == 5 + 1 + 1000
    with pytest.raises(ValueError, match="not a whole number of 16-byte entries"):
        TailLedger().load_state_dict(dict(state, segments=state["segments"][:-3]))


def test_buffer_shrinks_after_a_drain():
    led = TailLedger()
    led.push(np.arange(200_000), 8, 8)
    big = led.allocated_bytes
    assert big >= 200_000 * 16
    out = led.take(8 * 199_000)
    assert len(out) == 199_000 and led.tokens == 8_000
    assert led.allocated_bytes <= big // 8
    assert led.peak_bytes == 200_000 * 16  # the peak is still reported
    assert led.take(8_000)["row"].tolist() == list(range(199_000, 200_000))
