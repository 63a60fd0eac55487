"""Pacing schedules: the paper's formula, units, degenerate inputs, config round trip."""

from __future__ import annotations

import random
import subprocess
import sys
from fractions import Fraction

import pytest

from slwdata.pacing import Duration, PacingSchedule, Progress


def paper(t: int, s: int, e: int, T: int, k: int = 8) -> int:
    """seqlen_t = s + (e - s) * min(t / T, 1); seqlen_t -= seqlen_t mod k (exact arithmetic)."""
    seqlen = int(s + (e - s) * min(Fraction(t, T), 1))
    return seqlen - seqlen % k


@pytest.mark.parametrize("s,e,T", [(8, 1024, 100), (8, 2048, 1000), (64, 1024, 7), (8, 16, 3), (8, 1000, 333)])
def test_linear_matches_paper_formula_in_steps(s, e, T):
    sched = PacingSchedule(start=s, end=e, duration=f"{T}ba")
    for t in range(0, T + 5):
        expected = paper(t, s, e, T)
        if t >= T:
            expected = e  # exactly e from T on, even when e is not a multiple of 8
        assert sched.seq_len(step=t) == expected, t


def test_linear_matches_paper_formula_random():
    rng = random.Random(1234)
    for _ in range(300):
        s = 8 * rng.randint(1, 8)
        e = rng.randint(s, 4096)
        T = rng.randint(1, 5000)
        sched = PacingSchedule(start=s, end=e, duration=T)
        for t in rng.sample(range(0, 2 * T + 1), min(20, 2 * T + 1)):
            got = sched.seq_len(step=t)
            want = e if t >= T else max(s, paper(t, s, e, T))
            assert got == want, (s, e, T, t)


@pytest.mark.parametrize("kind,extra", [("linear", {}), ("root", {"degree": 2}), ("root", {"degree": 3.5})])
def test_monotone_multiple_of_k_and_clamped(kind, extra):
    sched = PacingSchedule(start=16, end=1000, duration="500ba", kind=kind, **extra)
    lengths = [sched.seq_len(step=t) for t in range(0, 700)]
    assert lengths == sorted(lengths)
    assert lengths[0] == 16
    assert all(n == 1000 for n in lengths[500:])
    assert all(n % 8 == 0 and 16 <= n < 1000 for n in lengths[:500])


def test_root_is_ahead_of_linear():
    lin = PacingSchedule(end=1024, duration="100ba")
    root = PacingSchedule(end=1024, duration="100ba", kind="root", degree=2)
    assert root.seq_len(step=25) == 512  # 8 + 1016 * sqrt(0.25) = 516 -> 512
    assert lin.seq_len(step=25) == 256 < root.seq_len(step=25)


def test_units_samples_tokens_and_fraction():
    by_samples = PacingSchedule(end=1024, duration="800sp")
    assert by_samples.seq_len(step=99, samples=400) == paper(400, 8, 1024, 800)
    by_tokens = PacingSchedule(end=1024, duration="5000000tok")
    assert by_tokens.seq_len(step=10**6, tokens=2_500_000) == 512 + 8 - 8 == paper(2_500_000, 8, 1024, 5_000_000)
    frac = PacingSchedule(end=1024, duration="0.3dur")
    assert frac.seq_len(step=150, total="1000ba") == paper(150, 8, 1024, 300)
    assert frac.seq_len(tokens=1000, total="10000tok") == paper(1000, 8, 1024, 3000)
    with pytest.raises(ValueError, match="fraction of the run"):
        frac.seq_len(step=3)
    assert PacingSchedule(end=1024, duration=0.5).duration == Duration(Fraction(1, 2), "dur")


@pytest.mark.parametrize(
    "spec,value,unit",
    [
        ("1000ba", 1000, "ba"),
        ("2000sp", 2000, "sp"),
        ("5000000tok", 5_000_000, "tok"),
        ("5e6tok", 5_000_000, "tok"),
        ("0.3dur", Fraction(3, 10), "dur"),
        (1000, 1000, "ba"),
        ("1_000ba", 1000, "ba"),
        ("250", 250, "ba"),
    ],
)
def test_duration_parsing(spec, value, unit):
    d = Duration.parse(spec)
    assert (d.value, d.unit) == (value, unit)
    assert Duration.parse(str(d)) == d


@pytest.mark.parametrize(
    "bad,msg",
    [
        ("10ep", "epochs"),
        ("1.5dur", r"\[0, 1\]"),
        ("abc", "cannot parse"),
        (-3, "non-negative"),
        ("2.5ba", "whole number"),
        (1.5, r"\[0, 1\]"),
        ("10furlongs", "unknown duration unit"),
    ],
)
def test_duration_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Duration.parse(bad)


def test_short_runs_never_divide_by_zero():
    # Composer's SeqLengthWarmup divides by int(0.3 * steps) // (number of length steps): zero on short runs.
    sched = PacingSchedule(end=1024, duration="0.3dur")
    assert sched.plan(3, rows_per_step=8, total="3ba") == [8, 1024, 1024]
    assert sched.plan(1, rows_per_step=8, total="1ba") == [8]
    assert PacingSchedule(end=1024, duration="0ba").plan(3, 8) == [1024, 1024, 1024]
    assert PacingSchedule(end=1024, duration="0.0dur").seq_len(step=0, total="0ba") == 1024


def test_degenerate_inputs():
    assert PacingSchedule(start=512, end=512, duration="10ba").plan(3, 1) == [512, 512, 512]
    with pytest.raises(ValueError, match="must not exceed end"):
        PacingSchedule(start=64, end=32)
    # e < k: rounding down gives 0, clamped to s; still exactly e at T.
    tiny = PacingSchedule(start=2, end=6, duration="4ba")
    assert [tiny.seq_len(step=t) for t in range(6)] == [2, 2, 2, 2, 6, 6]
    # k not dividing s or e.
    odd = PacingSchedule(start=10, end=100, duration="9ba", multiple=7)
    lengths = [odd.seq_len(step=t) for t in range(12)]
    assert lengths[0] == 10 and lengths[9:] == [100, 100, 100]
    assert all(n % 7 == 0 for n in lengths[1:9] if n != 10) and lengths == sorted(lengths)
    for bad in ({"multiple": 0}, {"start": 0}, {"end": 0}, {"kind": "cosine"}, {"degree": 0, "kind": "root"}):
        with pytest.raises(ValueError):
            PacingSchedule(**{"end": 64, **bad})
    with pytest.raises(ValueError, match="no end length"):
        PacingSchedule(duration="10ba").seq_len(step=1)
    with pytest.raises(ValueError, match="rows_per_step"):
        PacingSchedule(end=64, duration="10ba").plan(3, 0)


def test_stages_shortformer():
    sched = PacingSchedule(kind="stages", end=1024, stages=[(0, 128), (500, 1024)])
    assert sched.start == 128 and sched.duration == Duration(500, "ba")
    assert [sched.seq_len(step=t) for t in (0, 1, 499, 500, 10_000)] == [128, 128, 128, 1024, 1024]
    three = PacingSchedule(kind="stages", end=1024, stages=[(0, 64), ("100tok", 256), ("1000tok", 1024)])
    assert three.seq_len(tokens=50) == 64 and three.seq_len(tokens=100) == 256 and three.seq_len(tokens=999) == 256
    assert three.seq_len(tokens=1000) == 1024
    with pytest.raises(ValueError, match="start at 0"):
        PacingSchedule(kind="stages", end=64, stages=[(5, 8)])
    with pytest.raises(ValueError, match="non-decreasing"):
        PacingSchedule(kind="stages", end=64, stages=[(0, 32), (5, 8)])
    with pytest.raises(ValueError, match="one unit"):
        PacingSchedule(kind="stages", end=64, stages=[(0, 8), ("5sp", 16), ("9tok", 32)])


def _half_then_full(frac: float) -> float:
    return 256 if frac < 0.5 else 512


def test_constant_and_callable():
    const = PacingSchedule(kind="constant", end=1024)
    assert const.plan(3, 4) == [1024] * 3 and const.start == 1024 and const.warmup_steps(4) == 0
    fn = PacingSchedule(kind="callable", end=1024, duration="10ba", fn=lambda f: 8 + 1016 * f * f)
    assert fn.seq_len(step=5) == paper(0, 8 + 254, 1024, 1) and fn.seq_len(step=10) == 1024
    byname = PacingSchedule(kind="callable", end=1024, duration="10ba", fn="test_pacing:_half_then_full")
    assert byname.plan(12, 1) == [256] * 5 + [512] * 5 + [1024] * 2
    assert PacingSchedule.from_config(byname.to_config()) == byname
    with pytest.raises(ValueError, match="non-decreasing"):
        PacingSchedule(kind="callable", end=1024, fn=lambda f: 1000 - f)
    with pytest.raises(ValueError, match="cannot be serialized"):
        fn.to_config()


def test_plan_counts_trained_tokens():
    sched = PacingSchedule(start=8, end=64, duration="1000tok")
    rows = 4
    lengths = sched.plan(60, rows)
    tokens = 0
    for i, n in enumerate(lengths):
        assert n == sched.seq_len(step=i, samples=i * rows, tokens=tokens)
        assert n == (64 if tokens >= 1000 else paper(tokens, 8, 64, 1000))
        tokens += n * rows
    assert sched.plan(60, rows) == lengths  # deterministic
    w = sched.warmup_steps(rows)
    assert lengths[w] == 64 and all(n < 64 for n in lengths[:w])


@pytest.mark.parametrize("duration", ["300ba", "2000sp", "100000tok", "0.3dur"])
def test_warmup_steps_is_first_full_step(duration):
    sched = PacingSchedule(end=1024, duration=duration)
    total = "1000ba"
    lengths = sched.plan(1200, 8, total=total)
    w = sched.warmup_steps(8, total=total)
    assert lengths[w] == 1024 and (w == 0 or lengths[w - 1] < 1024)


def test_progress_object_and_call():
    sched = PacingSchedule(end=1024, duration="100ba")
    assert sched.seq_len(Progress(step=50)) == sched(step=50) == 512
    with pytest.raises(ValueError, match="non-negative"):
        sched.seq_len(step=-1)


@pytest.mark.parametrize(
    "cfg",
    [
        {"start": 8, "duration": "0.3dur"},
        {"kind": "root", "degree": 3, "end": 2048, "duration": "5000000tok", "multiple": 64},
        {"kind": "stages", "end": 1024, "stages": [[0, 128], [500, 1024]]},
    ],
)
def test_config_round_trip(cfg):
    sched = PacingSchedule.from_config(cfg)
    again = PacingSchedule.from_config(sched.to_config())
    assert again == sched
    if sched.end is not None:
        assert again.plan(50, 4, total="100ba") == sched.plan(50, 4, total="100ba")
    with pytest.raises(ValueError, match="unknown pacing option"):
        PacingSchedule.from_config({**cfg, "strat": 8})


def test_with_end_fills_in_the_length():
    sched = PacingSchedule(start=16, duration="10ba")
    full = sched.with_end(128)
    assert full.end == 128 and full.start == 16 and sched.end is None
    assert full.seq_len(step=5) == paper(5, 16, 128, 10)


def test_import_does_not_pull_torch_or_numpy():
    code = "import sys, slwdata.pacing; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_stages_with_a_fraction_must_count_in_one_unit():
    sched = PacingSchedule(kind="stages", end=64, duration="0.5dur", stages=[(0, 8), ("10tok", 16), ("20tok", 32)])
    # Thresholds in tokens, T = half of a run counted in tokens: consistent.
    assert [sched.seq_len(tokens=t, total="100tok") for t in (0, 10, 20, 49, 50)] == [8, 16, 32, 32, 64]
    # The same schedule against a run counted in steps would compare tokens with steps.
    with pytest.raises(ValueError, match=r"stage thresholds are in 'tok' but duration 0.5dur resolves to 50ba"):
        sched.seq_len(step=3, tokens=30, total="100ba")
    with pytest.raises(ValueError, match="ends before the last stage"):
        sched.seq_len(tokens=5, total="30tok")
    # The unit survives a config round trip even though the duration has none.
    again = PacingSchedule.from_config(sched.to_config())
    assert again.stage_unit == "tok" and again == sched


def test_stages_last_length_is_not_silently_ignored():
    with pytest.raises(ValueError, match=r"last stage \(500ba, 512\) starts at T, where the length is end=1024"):
        PacingSchedule(kind="stages", end=1024, stages=[(0, 128), (500, 512)])
    with pytest.raises(ValueError, match="last stage"):
        PacingSchedule(kind="stages", stages=[(0, 128), (500, 512)]).with_end(1024)
    # A duration beyond the last stage trains it before switching to end.
    longer = PacingSchedule(kind="stages", end=1024, duration="800ba", stages=[(0, 128), (500, 512)])
    assert [longer.seq_len(step=t) for t in (0, 500, 799, 800)] == [128, 512, 512, 1024]
    frac = PacingSchedule(kind="stages", end=1024, duration="0.5dur", stages=[(0, 128), (500, 512)])
    with pytest.raises(ValueError, match="last stage"):
        frac.seq_len(step=0, total="1000ba")


def test_plan_resolves_the_run_total_once(monkeypatch):
    """plan()/warmup_steps() over many steps must not re-parse ``total`` at every step."""
    import slwdata.pacing as pacing

    sched = PacingSchedule(start=8, end=1024, duration="0.3dur")
    expected = [sched.seq_len(step=i, samples=4 * i, total="2000ba") for i in range(2000)]
    calls = []
    real = pacing.Duration.parse.__func__
    monkeypatch.setattr(
        pacing.Duration, "parse", classmethod(lambda cls, *a, **k: calls.append(a) or real(cls, *a, **k))
    )
    assert sched.plan(2000, 4, total="2000ba") == expected
    assert len(calls) <= 2
    calls.clear()
    tok = PacingSchedule(start=8, end=1024, duration="0.3dur")
    assert tok.warmup_steps(4, total="1000000tok") == tok.plan(2000, 4, total="1000000tok").index(1024)
    assert len(calls) <= 4


def test_unitless_fraction_string_hints_dur():
    with pytest.raises(ValueError, match=r"did you mean '0.3dur'"):
        PacingSchedule(end=64, duration="0.3")
    with pytest.raises(ValueError, match=r"'2.5tok'"):
        Duration.parse("2.5")
    assert Duration.parse("300") == Duration(300, "ba")


def test_explicit_start_and_duration_with_stages_are_not_overridden():
    stages = [(0, 128), (500, 1024)]
    assert PacingSchedule(kind="stages", end=1024, stages=stages).start == 128
    assert PacingSchedule(kind="stages", end=1024, stages=stages, start=128).start == 128
    with pytest.raises(ValueError, match="start=8 contradicts the first stage's length 128"):
        PacingSchedule(kind="stages", end=1024, stages=stages, start=8)
    # An explicit "0.3dur" is a fraction of the run, not the "no duration given" default.
    frac = PacingSchedule(kind="stages", end=1024, stages=[(0, 128), (200, 512)], duration="0.3dur")
    assert frac.duration == Duration(Fraction(3, 10), "dur")
    assert [frac.seq_len(step=t, total="1000ba") for t in (199, 200, 299, 300)] == [128, 512, 512, 1024]
    assert PacingSchedule(end=64).duration == Duration(Fraction(3, 10), "dur") and PacingSchedule(end=64).start == 8


def test_top_level_exports_pacing_without_torch_or_numpy():
    code = (
        "import sys; from slwdata import PacingSchedule, Duration; import slwdata.pacing as p; "
        "assert PacingSchedule is p.PacingSchedule and Duration is p.Duration; "
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_stage_config_form_is_stable():
    """Checkpoints compare to_config() dicts: absolute-duration stages keep plain int thresholds."""
    sched = PacingSchedule(kind="stages", end=1024, stages=[(0, 128), ("500tok", 1024)])
    assert sched.to_config()["stages"] == [[0, 128], [500, 1024]] and sched.to_config()["duration"] == "500tok"
    frac = PacingSchedule(kind="stages", end=1024, duration=0.5, stages=[(0, 128), ("500tok", 1024)])
    assert frac.to_config()["stages"] == [["0tok", 128], ["500tok", 1024]]
    assert PacingSchedule.from_config(frac.to_config()) == frac
