"""slwdata.demo.report: loss ratio definition, tables, plots and report files."""

import json

from slwdata.demo.report import format_table, loss_ratios, plot_runs, write_report


def test_loss_ratio_is_loss_over_previous_minimum():
    assert loss_ratios([]) == []
    assert loss_ratios([5.0, 4.0, 6.0, 3.0, 3.9]) == [1.0, 0.8, 1.5, 0.75, 1.3]


def test_table_aligns_and_marks_missing_values():
    runs = [
        {"name": "baseline", "trained_tokens": 4096, "max_loss_ratio": 1.5},
        {"name": "slw", "trained_tokens": 4096, "reserved_tokens": 128},
    ]
    lines = format_table(runs).splitlines()
    assert lines[0].split("  ")[0] == "run"
    assert "tokens re-served from tails" in lines[0]
    assert lines[2].startswith("baseline") and "4,096" in lines[2] and "1.500" in lines[2]
    assert lines[3].rstrip().endswith("-")  # slw has no max_loss_ratio
    md = format_table(runs, markdown=True).splitlines()
    assert md[0].startswith("| run |") and md[2].startswith("| baseline |")


def test_plots_and_report(tmp_path):
    hist = {"step": [0, 1, 2], "tokens": [8, 24, 56], "loss": [5.0, 6.5, 4.0], "seq_len": [8, 16, 32]}
    runs = [{"name": "slw", "final_val_loss": 4.2, "history": hist}]
    plots = plot_runs(runs, tmp_path)
    for p in plots:
        assert open(p, "rb").read(4) == b"\x89PNG"
    files = write_report(runs, tmp_path, title="T", notes=["a note"], config={"x": 1}, plots=plots)
    md = open(files["markdown"]).read()
    assert md.startswith("# T") and "- a note" in md and "![seq_len](seq_len.png)" in md
    assert json.load(open(files["json"]))["runs"][0]["history"]["loss"] == [5.0, 6.5, 4.0]
