"""`slwdata quickstart` end to end at a tiny size: corpus, real converter, two Composer runs,
table, plots and report."""

import json
from pathlib import Path

import pytest

from slwdata.cli import main as cli_main

pytest.importorskip("composer")

STEPS, SEQ, BS = 3, 32, 4


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    from slwdata.quickstart import QuickstartConfig, run_quickstart

    out = tmp_path_factory.mktemp("qs")
    cfg = QuickstartConfig(out=str(out), steps=STEPS, seq_len=SEQ, batch_size=BS, corpus_mb=0.3,
                           eval_batches=2, progress=False, workers=1, warmup_duration="0.5dur")
    return out, run_quickstart(cfg)


def test_both_runs_train_the_same_token_budget(quickstart):
    _, result = quickstart
    base, slw = result["runs"]
    assert (base["name"], slw["name"]) == ("baseline", "slw")
    budget = STEPS * SEQ * BS
    assert base["trained_tokens"] == budget and base["steps"] == STEPS
    # SLW trains shorter rows first: same token budget (up to one step over), more steps.
    assert budget <= slw["trained_tokens"] < budget + SEQ * BS
    assert slw["steps"] > STEPS
    assert slw["history"]["seq_len"][0] == 8 and max(slw["history"]["seq_len"]) <= SEQ
    assert base["history"]["seq_len"] == [SEQ] * STEPS
    for run in (base, slw):
        assert run["final_val_loss"] is not None and 0 < run["final_val_loss"] < 20
        assert len(run["history"]["loss"]) == run["steps"]


def test_table_lists_both_runs_and_the_figures(quickstart, capsys):
    _, result = quickstart
    table = result["table"]
    lines = table.splitlines()
    assert lines[0].startswith("run") and "trained tokens" in lines[0]
    for header in ("tokens re-served from tails", "steps loss ratio > 1.2", "max loss ratio",
                   "final val loss", "wall time (s)"):
        assert header in lines[0]
    assert lines[2].startswith("baseline") and lines[3].startswith("slw")
    assert f"{STEPS * SEQ * BS:,}" in lines[2]


def test_plots_and_report_files(quickstart):
    out, result = quickstart
    for name in ("seq_len.png", "loss.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (out / "report.md").read_text()
    assert "| baseline |" in md and "| slw |" in md
    assert "equal trained tokens" in md and "![loss](loss.png)" in md
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["baseline", "slw"]
    assert report["config"]["quickstart"]["steps"] == STEPS
    assert report["runs"][1]["history"]["seq_len"] == result["runs"][1]["history"]["seq_len"]
    # The converted data is recorded and reused by a rerun.
    data = json.loads((out / "shards" / "quickstart-data.json").read_text())
    assert Path(data["train"], "slwdata.json").exists() and Path(data["val"], "index.json").exists()


@pytest.mark.parametrize("flag, message", [
    (["--seq-len", "20"], "--seq-len must be a multiple of 8"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--slw-start", "4096"], "--slw-start must lie in"),
])
def test_bad_flags_are_user_errors(tmp_path, capsys, flag, message):
    assert cli_main(["quickstart", "--out", str(tmp_path), *flag]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()  # refused before any work


def test_missing_tokenizer_suggests_bytes(tmp_path, capsys):
    assert cli_main(["quickstart", "--out", str(tmp_path), "--tokenizer", str(tmp_path / "nope.tiktoken")]) == 2
    err = capsys.readouterr().err
    assert "--tokenizer bytes" in err
    assert not (tmp_path / "corpus").exists()
