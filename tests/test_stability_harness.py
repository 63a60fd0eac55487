"""benchmarks/bench_stability.py at toy size: the noise-floor run is there, every method trains
the same tokens, spike counts follow the paper's definition, cells resume, RESULTS.md keeps the
other sections."""

import importlib.util
import json
import random
import string
import sys
from pathlib import Path

import pytest

zstd = pytest.importorskip("zstandard")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_stability", REPO / "benchmarks" / "bench_stability.py")
bs = importlib.util.module_from_spec(_spec)
sys.modules["bench_stability"] = bs  # dataclasses look their module up by name
_spec.loader.exec_module(bs)


def _corpus(folder, files=2, docs=40):
    folder.mkdir()
    rng = random.Random(0)
    for i in range(files):
        lines = [
            json.dumps(
                {
                    "text": " ".join(
                        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(120)
                    ),
                    "meta": {},
                }
            )
            for _ in range(docs)
        ]
        (folder / f"{i:02d}.jsonl.zst").write_bytes(zstd.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    return folder


def _brute_spikes(losses, th):
    return sum(losses[i] / min(losses[:i]) > th for i in range(1, len(losses)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stab")
    corpus = _corpus(root / "corpus")
    out = root / "out"
    argv = ["--tiny", "--out", str(out), "--corpus", str(corpus)]
    return out, argv, bs.main(argv)


def test_spike_counts_are_loss_over_min_of_earlier_losses():
    losses = [5.0, 4.0, 6.1, 3.0, 3.7, 4.6]  # ratios: 0.8, 1.525, 0.75, 1.233, 1.533
    tokens = [10, 20, 30, 40, 50, 60]
    got = bs.count_spikes(losses, tokens, early_tokens=30)
    assert (got["spikes_1.5"], got["spikes_1.2"]) == (2, 3)
    assert (got["early_spikes_1.5"], got["early_spikes_1.2"], got["early_steps"]) == (1, 1, 3)
    assert got["max_ratio"] == pytest.approx(4.6 / 3.0)


def test_every_seed_has_its_noise_floor_run(tiny):
    _, _, res = tiny
    floors = [r for r in res["results"] if r["cell"]["method"] == "floor"]
    assert sorted(r["cell"]["seed"] for r in floors) == list(bs.PRESETS["tiny"].seeds)
    for f in floors:
        c = f["cell"]
        # held at s, same rows per step, at the safe LR, as many steps as the seed's SLW run
        assert set(f["history"]["seq_len"]) == {c["start"]}
        assert c["lr"] == bs.PRESETS["tiny"].floor_lr and c["rows"] == bs.PRESETS["tiny"].base["rows"]
        slw = [
            r
            for r in res["results"]
            if r["cell"]["method"] == "slw" and r["cell"]["seed"] == c["seed"] and r["cell"]["group"] == "grid"
        ]
        assert slw and all(f["steps"] == s["steps"] for s in slw)
    text = res["text"]
    assert "Noise floor" in text and "floor > 1.5 / > 1.2" in text
    # the floor's counts are printed on every row of the table
    floor_txt = "/".join(str(f["spikes_1.5"]) for f in floors) + " / " + "/".join(str(f["spikes_1.2"]) for f in floors)
    table_rows = [ln for ln in text.splitlines() if ln.startswith("| grid |")]
    assert table_rows and all(floor_txt in ln for ln in table_rows)


def test_methods_train_equal_tokens_and_slw_paces(tiny):
    _, _, res = tiny
    cell0 = res["cells"][1]
    budget = cell0.total_tokens
    trained = [r for r in res["results"] if r["cell"]["method"] != "floor"]
    assert {r["cell"]["method"] for r in trained} == {"baseline", "slw", "shortformer"}
    for r in trained:
        assert budget <= r["trained_tokens"] < budget + r["cell"]["seq_len"], r["key"]
        assert r["history"]["tokens"][-1] == r["trained_tokens"]
        assert sum(len_ * 0 + 1 for len_ in r["history"]["seq_len"]) == r["steps"]
    slw = next(r for r in trained if r["cell"]["method"] == "slw")
    lens = slw["history"]["seq_len"]
    assert lens[0] == slw["cell"]["start"] and lens == sorted(lens) and lens[-1] == slw["cell"]["seq_len"]
    base = next(r for r in trained if r["cell"]["method"] == "baseline")
    assert set(base["history"]["seq_len"]) == {base["cell"]["seq_len"]} and slw["steps"] > base["steps"]
    assert slw["dropped_tokens"] > 0 and base["dropped_tokens"] == 0


def test_counts_recomputed_from_the_loss_history(tiny):
    _, _, res = tiny
    for r in res["results"]:
        losses = r["history"]["loss"]
        for th in bs.THRESHOLDS:
            assert r[f"spikes_{th}"] == _brute_spikes(losses, th)
            n = sum(t <= r["early_tokens"] for t in r["history"]["tokens"])
            assert r[f"early_spikes_{th}"] == _brute_spikes(losses[:n], th)
        assert r["max_ratio"] == pytest.approx(max(losses[i] / min(losses[:i]) for i in range(1, len(losses))))
        assert r["adam_var_max"] > 0 and r["final_val_loss"] is not None


def test_rerun_resumes_from_cell_files(tiny):
    out, argv, res = tiny
    files = sorted((out / "cells").glob("*.json"))
    assert len(files) == len(res["cells"])
    victim = files[0]
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    victim.unlink()  # as if the grid was cut short before this cell
    again = bs.main(argv)
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items() if p != victim)
    assert [r["key"] for r in again["results"]] == [r["key"] for r in res["results"]]


def test_results_section_replaced_in_place(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## Other\nkeep me\n")
    bs.write_results_section("## Stability\nfirst", md)
    bs.write_results_section("## Stability GPU\ngpu", md, preset="gpu")
    bs.write_results_section("## Stability\nsecond", md)
    text = md.read_text()
    assert text.count(bs.markers("cpu")[0]) == 1 and "second" in text and "first" not in text
    assert text.count(bs.markers("gpu")[0]) == 1 and "gpu" in text  # one section per preset
    assert text.startswith("# Results\n\n## Other\nkeep me\n")


def test_plots_written(tiny):
    _, _, res = tiny
    names = sorted(p.rsplit("/", 1)[-1] for p in res["plots"])
    assert names == ["stability_final_loss_vs_lr.png", "stability_loss_curves.png", "stability_spikes_vs_lr.png"]
    for p in res["plots"]:
        assert open(p, "rb").read(4) == b"\x89PNG"


def test_gpu_preset_setup_path_at_tiny_size(tmp_path):
    # The GPU preset's real setup (GPT-2 tokenizer file, conversion, its grid and bf16 autocast),
    # shrunk to a toy model on the CPU; it has not been run on a GPU.
    tok = bs.SHARED / "tokenizers" / "gpt2.tiktoken"
    if not tok.exists():
        pytest.skip(f"{tok} not here")
    listed = bs.main(["--preset", "gpu", "--dry-run", "--out", str(tmp_path / "dry")])["cells"]
    assert {c.model for c in listed} == {"gpt2-124m"} and {c.seq_len for c in listed} == {1024}
    assert listed[0].method == "floor" and listed[0].rows * listed[0].start >= 2048
    assert len({c.total_tokens for c in listed}) == 1
    corpus = _corpus(tmp_path / "corpus", docs=12)
    got = bs.main(
        [
            "--preset",
            "gpu",
            "--device",
            "cpu",
            "--model",
            "tiny",
            "--base-steps",
            "2",
            "--rows",
            "2",
            "--seq-len",
            "64",
            "--start",
            "16",
            "--slw-steps",
            "2",
            "--lr-warmup",
            "1",
            "--seeds",
            "0",
            "--lrs",
            "6e-4",
            "--no-levers",
            "--corpus",
            str(corpus),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert [r["cell"]["method"] for r in got["results"]] == ["floor", "baseline", "slw", "shortformer"]
    meta = json.loads(next((tmp_path / "run" / "shards").glob("*/train/slwdata.json")).read_text())
    assert meta["tokenizer"]["vocab_size"] == 50257
    assert all(r["final_val_loss"] is not None for r in got["results"])


def test_a_run_longer_than_the_corpus_starts_a_new_epoch():
    import numpy as np

    rows = np.random.default_rng(0).integers(0, 257, size=(10, 32))
    cell = bs.Cell(
        method="baseline", lr=1e-3, seed=0, base_steps=6, rows=4, seq_len=32, start=8, slw_steps=2, lr_warmup=1
    )
    got = bs.run_cell(cell, rows, rows[:4], vocab=257, eval_points=2)
    assert got["trained_tokens"] == 6 * 4 * 32 and got["epochs_started"] == 3  # 24 rows from 10


def test_a_lever_with_other_rows_runs_and_reports_its_own_noise_floor():
    """A lever that changes the rows per step or s carries a floor at its own shape, and its table
    rows and readings print that floor's counts, not the grid's."""
    preset = bs.Preset(
        lrs=(0.3,),
        seeds=(0, 1),
        floor_lr=0.05,
        base=dict(base_steps=4, rows=8, seq_len=32, start=16, slw_steps=3, lr_warmup=1),
        levers={"small": (dict(rows=4, start=8), (0.3,), ("floor", "baseline", "slw"))},
    )
    cells = bs.grid(preset)
    lever_floors = [c for c in cells if c.group == "small" and c.method == "floor"]
    assert [c.seed for c in lever_floors] == [0, 1]
    for c in lever_floors:
        slw = bs.Cell(method="slw", lr=0.05, seed=c.seed, **{**preset.base, "rows": 4, "start": 8})
        assert (c.rows, c.start, c.lr, c.floor_steps) == (4, 8, 0.05, bs.step_count(slw))

    def fake(cell, spikes):  # a finished cell's JSON, as run_cell writes it
        return {
            "cell": {**bs.dataclasses.asdict(cell)},
            "key": cell.key(),
            "spikes_1.5": spikes,
            "spikes_1.2": spikes + 10,
            "early_spikes_1.5": spikes,
            "early_spikes_1.2": spikes,
            "steps": 5,
            "max_ratio": 1.0,
            "final_val_loss": 3.0,
            "diverged": False,
            "adam_var_max": 0.1,
            "wall_s": 1.0,
            "cpu_s": 1.0,
            "trained_tokens": cell.total_tokens,
            "evals": [],
        }

    results = [fake(c, 7 if c.group == "small" and c.method == "floor" else 0) for c in cells]
    summary = bs.summarize(results)
    assert summary["floor"]["1.5"] == [0, 0]  # the grid's floor keeps only the grid's floor runs
    assert summary["lever_floors"]["small"]["1.5"] == [7, 7]
    text = bs.format_summary(summary)
    lever_rows = [ln for ln in text.splitlines() if ln.startswith("| small |")]
    grid_rows = [ln for ln in text.splitlines() if ln.startswith("| grid |")]
    assert lever_rows and all("| 7/7 / 17/17 |" in ln for ln in lever_rows)
    assert grid_rows and all("| 0/0 / 10/10 |" in ln for ln in grid_rows)
    assert any(ln.startswith("- small, LR 0.3") and "noise floor <= 7" in ln for ln in text.splitlines())
