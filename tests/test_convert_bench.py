"""benchmarks/bench_convert.py runs end to end on a tiny corpus and returns its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_convert_main_returns_figures(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_convert", REPO / "benchmarks" / "bench_convert.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (tmp_path / "00.jsonl").write_text("".join(json.dumps({"text": f"doc {i} " * 50}) + "\n" for i in range(40)))
    fig = bench.main(["--corpus", str(tmp_path), "--workers", "1", "--seq-len", "64", "--repeat", "2"])
    assert fig["documents"] == 40
    assert fig["tokens"] > 40 * 50
    for k in ("ceiling_tok_s", "ours_tok_s", "baseline_tok_s", "ours_vs_ceiling", "ours_vs_baseline"):
        assert fig[k] > 0
    assert len(fig["pairs"]) == 2 and fig["peak_rss_mb"]["ours_writer"] > 0
    out = capsys.readouterr().out
    assert "ours / ceiling" in out and "peak RSS" in out
