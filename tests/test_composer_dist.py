"""Two CPU processes (gloo) under the composer launcher agree on every step's length."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("composer")

from slwdata.pacing import PacingSchedule  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _two_ranks(tmp_path, port: int, **env_extra: str) -> tuple[dict, dict]:
    launcher = Path(sys.executable).with_name("composer")
    if not launcher.exists():
        pytest.skip("the composer launcher is not installed beside this python")
    env = {**os.environ, "SLW_TEST_OUT": str(tmp_path), "PYTHONPATH": str(REPO), **env_extra}
    proc = subprocess.run(
        [str(launcher), "-n", "2", "--master_port", str(port), str(REPO / "tests" / "scripts" / "slw_two_rank.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return (json.loads((tmp_path / "rank0.json").read_text()), json.loads((tmp_path / "rank1.json").read_text()))


@pytest.mark.slow
def test_two_ranks_log_identical_lengths(tmp_path):
    r0, r1 = _two_ranks(tmp_path, 29533)
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["lengths"] == r1["lengths"] and r0["tokens_after"] == r1["tokens_after"]
    # Global rows per step = 4 per rank * 2 ranks; the schedule is a fraction of 3000 trained tokens.
    plan = PacingSchedule(end=64, duration="0.5dur").plan(len(r0["lengths"]), rows_per_step=8, total="3000tok")
    assert r0["lengths"] == plan and plan[0] == 8 and plan[-1] == 64
    assert r0["tokens_after"][-1] == sum(plan) * 8 >= 3000
    assert r0["seen"][0] == 64 and r0["seen"][1:] == plan  # pre-activation at full length, then the plan
    assert r0["bound"] == r1["bound"] and r0["bound"][1:] == [8, "3000tok"]
    assert r0["dropped_tokens"] == r1["dropped_tokens"] == sum(64 - n for n in plan) * 8


@pytest.mark.slow
def test_two_ranks_padded_rows_counted_by_attention_mask(tmp_path):
    """Each rank's batch has a different amount of padding; Composer sums attention_mask over both
    ranks. The algorithm's check all-reduces the cut batch's mask count to accept that total."""
    r0, r1 = _two_ranks(tmp_path, 29534, SLW_TEST_PADDED="1")
    assert r0["lengths"] == r1["lengths"] and r0["tokens_after"] == r1["tokens_after"]
    fed = [a + b for a, b in zip(r0["mask_tokens"], r1["mask_tokens"])]
    assert r0["mask_tokens"] != r1["mask_tokens"]  # the ranks' counts differ: only the sum agrees
    assert r0["tokens_after"] == [sum(fed[: i + 1]) for i in range(len(fed))]
    assert sum(fed) < 8 * sum(r0["lengths"])  # padding was cut and fed, and not counted
