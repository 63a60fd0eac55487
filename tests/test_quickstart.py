"""`slwdata quickstart` end to end at a tiny size: corpus, real converter, three Composer runs
(baseline, SLW, noise floor), the table with counts beside the floor, every cut tail re-served,
the efficiency line, plots and report."""

import json
from pathlib import Path

import pytest

from slwdata.cli import main as cli_main

pytest.importorskip("composer")

SEQ, BS, START = 32, 8, 8


def _cfg(out, **kw):
    from slwdata.demo.quickstart import QuickstartConfig

    base = dict(
        out=str(out),
        seq_len=SEQ,
        batch_size=BS,
        slw_start=START,
        corpus_mb=0.05,
        lr_warmup="2ba",
        warmup_duration="6ba",
        eval_points=3,
        progress=False,
        workers=1,
    )
    return QuickstartConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    from slwdata.demo.quickstart import run_quickstart

    out = tmp_path_factory.mktemp("qs")
    return out, run_quickstart(_cfg(out))


def test_baseline_and_slw_train_one_pass_of_tokens(quickstart):
    _, result = quickstart
    base, slw, floor = result["runs"]
    assert (base["name"], slw["name"], floor["kind"]) == ("baseline", "slw", "floor")
    rows = json.loads(Path(result["data"]["train"], "slwdata.json").read_text())["counts"]["rows"]
    budget = rows // BS * BS * SEQ  # one pass over the training shards, whole batches
    assert base["trained_tokens"] == budget and base["steps"] == budget // (BS * SEQ)
    assert budget <= slw["trained_tokens"] < budget + SEQ * BS
    assert slw["steps"] > base["steps"]
    assert slw["history"]["seq_len"][0] == START and max(slw["history"]["seq_len"]) == SEQ
    for run in (base, slw):
        assert run["final_val_loss"] is not None and 0 < run["final_val_loss"] < 20
        assert len(run["history"]["loss"]) == run["steps"]


def test_noise_floor_run_is_held_at_start_for_as_many_steps_as_slw(quickstart):
    _, result = quickstart
    _, slw, floor = result["runs"]
    assert floor["steps"] == slw["steps"]
    assert set(floor["history"]["seq_len"]) == {START}
    assert floor["trained_tokens"] == slw["steps"] * BS * START
    text = result["text"]
    assert f"noise floor: {floor['loss_ratio_spikes_1.5']} steps > 1.5, {floor['loss_ratio_spikes']} > 1.2" in text
    if result["quiet"] is not None:  # the headline threshold is one the floor never crossed
        assert f"steps with loss ratio > {result['quiet']:g}:" in text and "(floor 0)" in text


def test_every_cut_tail_is_reserved_within_the_run(quickstart):
    _, result = quickstart
    tails = result["tails"]
    assert tails["cut"] > 0
    # The algorithm's counts and the dataset's own plan agree: every cut token the dataset did
    # not plan to carry out of epoch 0 was re-served, and less than one batch is left over.
    assert tails["cut"] == tails["reserved"] + tails["carried"]
    assert tails["cut"] - tails["epoch0_carried_out"] <= tails["reserved"] <= tails["cut"]
    assert 0 <= tails["carried"] <= tails["epoch0_carried_out"] < BS * SEQ
    assert (
        f"tails: cut {tails['cut']:,} = re-served {tails['reserved']:,} + carried {tails['carried']:,} "
        f"(< one batch of {BS * SEQ:,}"
    ) in result["text"]


def test_a_short_budget_shows_the_unserved_tails(tmp_path):
    # --steps below one pass: the run ends before the deferred tails come back, and says so.
    from slwdata.demo.quickstart import run_quickstart

    result = run_quickstart(_cfg(tmp_path, steps=8, eval_points=1))
    tails = result["tails"]
    assert tails["carried"] >= BS * SEQ and not tails["consistent"]
    assert f"{tails['carried']:,} were still waiting in the ledger when the token budget ran out" in result["text"]


def test_table_efficiency_and_cpu_lines(quickstart):
    _, result = quickstart
    lines = result["table"].splitlines()
    for header in (
        "trained tokens",
        "tokens cut",
        "tokens re-served from tails",
        "steps loss ratio > 1.5",
        "steps loss ratio > 1.2",
        "max loss ratio",
        "final val loss",
        "wall time (s)",
    ):
        assert header in lines[0]
    assert lines[2].startswith("baseline") and lines[3].startswith("slw") and lines[4].startswith("noise floor")
    base, slw, _ = result["runs"]
    assert len(slw["evals"]) >= 3 and slw["evals"][-1]["val_loss"] == pytest.approx(slw["final_val_loss"])
    hit = result["reach"]
    if hit is None:
        assert "SLW did not reach the baseline's final val loss" in result["text"]
    else:
        assert hit["tokens"] <= slw["trained_tokens"] and f"at {hit['tokens']:,} tokens" in result["text"]
    assert "CPU time of this process:" in result["text"] and result["cpu_s"] > 0


def test_plots_and_report_files(quickstart):
    out, result = quickstart
    for name in ("seq_len.png", "loss.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (out / "report.md").read_text()
    assert "| baseline |" in md and "| slw |" in md and "| noise floor" in md
    assert "equal trained tokens" in md and "![loss](loss.png)" in md and "tails: cut" in md
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["runs"]][:2] == ["baseline", "slw"]
    assert report["config"]["tails"] == result["tails"]
    assert report["runs"][1]["history"]["seq_len"] == result["runs"][1]["history"]["seq_len"]
    data = json.loads((out / "shards" / "quickstart-data.json").read_text())
    assert Path(data["train"], "slwdata.json").exists() and Path(data["val"], "index.json").exists()


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--seq-len", "20"], "--seq-len must be a multiple of 8"),
        (["--steps", "-1"], "--steps must be >= 0"),
        (["--slw-start", "4096"], "--slw-start must lie in"),
        (["--beta2", "1.5"], "--beta2 must lie in (0, 1)"),
        (["--floor-lr", "0"], "--floor-lr must be positive"),
    ],
)
def test_bad_flags_are_user_errors(tmp_path, capsys, flag, message):
    assert cli_main(["quickstart", "--out", str(tmp_path), *flag]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()  # refused before any work


def test_missing_tokenizer_suggests_bytes(tmp_path, capsys):
    assert cli_main(["quickstart", "--out", str(tmp_path), "--tokenizer", str(tmp_path / "nope.tiktoken")]) == 2
    err = capsys.readouterr().err
    assert "--tokenizer bytes" in err
    assert not (tmp_path / "corpus").exists()
