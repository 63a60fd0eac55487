"""``slwdata tune``: the paper's fluctuation rule, the search, its cache, and real trials end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slwdata.tune.search import Curve, SearchSpace, TrialCache, bisection_trials, first_fluctuation, search

ROOT = Path(__file__).resolve().parents[1]
SLWDATA = [sys.executable, "-m", "slwdata.cli"]


# ----------------------------------------------------------------------------- the rule


def test_fluctuation_is_ratio_to_previous_best():
    # Recorded curve: best 40 at point 1; 51 < 1.3 * 40 = 52 is no fluctuation, 53 is.
    points = [(100, 50.0), (200, 40.0), (300, 51.0), (400, 45.0), (500, 53.0), (600, 30.0)]
    assert first_fluctuation(points, 1.3) == 4
    assert first_fluctuation(points, 1.4) is None
    assert first_fluctuation(points, 1.3, until=400) is None  # the start stage judges a prefix only
    assert first_fluctuation(points, 1.3, until=500) == 4
    # The first point has nothing before it; a diverged run (inf / nan) always fluctuates.
    assert first_fluctuation([(1, 1e9)], 1.3) is None
    assert first_fluctuation([(1, 10.0), (2, math.inf)], 1.3) == 1
    assert first_fluctuation([(1, 10.0), (2, math.nan)], 1.3) == 1
    # A rise above the *first* value counts only against the best so far.
    assert first_fluctuation([(1, 10.0), (2, 20.0), (3, 12.0), (4, 12.9)], 1.3) == 1


# ----------------------------------------------------------------------------- the search, scripted


def scripted(s_min: int, t_star: int, calls: list):
    """A trial whose validation perplexity jumps when s < s_min (early) or T > t_star (late)."""

    def trial(s: int, T: int) -> Curve:
        calls.append((s, T))
        pts = []
        for i in range(1, 17):
            v = 100.0 / (1 + 0.1 * i)
            if s < s_min and i == 2:  # within the first LR warmup (progress 50 of warmup 100)
                v = 500.0
            if T > t_star and i == 12:
                v = 500.0
            pts.append((25 * i, v))
        return Curve(pts, trained_tokens=1000 * s + T)

    return trial


def space(**kw):
    base = dict(
        unit="ba",
        lr_warmup=100,
        trial_length=400,
        eval_interval=25,
        starts=(8, 16, 32, 64),
        t_init=200,
        t_min=100,
        t_max=800,
        resolution=25,
    )
    base.update(kw)
    return SearchSpace(**base)


@pytest.mark.parametrize("t_star", [130, 199, 200, 333, 512, 799])
@pytest.mark.parametrize("s_min", [8, 32])
def test_search_finds_the_boundary_within_resolution_in_log2_trials(s_min, t_star):
    calls: list = []
    sp = space()
    result = search(scripted(s_min, t_star, calls), sp)
    assert result.start == s_min
    assert result.duration <= t_star < result.duration + sp.resolution
    # Start stage: one trial per start up to s_min. Then the bisection between the known-good and
    # known-bad T needs exactly ceil(log2(width / resolution)) trials, plus the bounds it tried.
    n_start = [8, 16, 32, 64].index(s_min) + 1
    t_trials = [c for c in calls[n_start:]]
    lo, hi = (sp.t_init, sp.t_max) if t_star >= sp.t_init else (sp.t_min, sp.t_init)
    endpoint = 1 if t_star >= sp.t_init else 2  # t_max always; t_min too when t_init failed
    assert len(t_trials) == endpoint + bisection_trials(lo, hi, sp.resolution)
    assert len(set(calls)) == len(calls)  # no trial trained twice


def test_search_edges_say_what_to_do():
    # Every start fluctuates early.
    r = search(scripted(1000, 500, []), space())
    assert not r.ok and r.start is None and "every start length [8, 16, 32, 64] fluctuates" in r.message
    # The upper bound passes: reported as such, in 2 trials.
    calls: list = []
    r = search(scripted(8, 10_000, calls), space())
    assert r.ok and r.duration == 800 and r.bound_hit and "raise --t-max" in r.message and len(calls) == 2
    # Even t_min fluctuates.
    r = search(scripted(8, 50, []), space())
    assert r.start == 8 and r.duration is None and "every T tried (100, 200 and 800ba) fluctuates" in r.message
    # A learning rate so high that only a long T is calm: short T fluctuate, t_max passes.

    def calm_when_long(s, T):
        return Curve([(25 * i, 500.0 if (T < 700 and i == 12) else 100.0 / (1 + 0.1 * i)) for i in range(1, 17)])

    r = search(calm_when_long, space())
    assert r.duration == 800 and r.bound_hit and "shorter T is unstable" in r.message
    # Budget.
    r = search(scripted(8, 333, []), space(max_trials=3))
    assert "budget of 3 spent" in r.message and r.duration is not None and r.duration <= 333


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(starts=(5, 12)), "no start length in [5, 12] is a positive multiple of 8"),
        (dict(starts=(64,), end=64), "below the row length 64"),
        (dict(t_min=900), "T bounds [900, 800]ba hold no candidate"),
        (dict(lr_warmup=0), "the LR warmup is 0ba"),
        (dict(eval_interval=200), "fewer than 3 validations"),
        (dict(ratio=1.0), "ratio must be > 1"),
    ],
)
def test_bounds_that_exclude_every_candidate_are_refused_before_any_trial(bad, words):
    calls: list = []
    with pytest.raises(ValueError) as exc:
        search(scripted(8, 300, calls), space(**bad))
    assert words in str(exc.value) and calls == []


def test_interrupted_search_resumes_from_its_cache(tmp_path):
    ident = {"config": {"lr": 1}, "trial_length": 400}
    calls: list = []
    real = scripted(16, 333, calls)

    def crashing(s, T):
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the 4th trial
        return real(s, T)

    with pytest.raises(KeyboardInterrupt):
        search(crashing, space(), TrialCache(tmp_path, ident))
    assert len(calls) == 3 and len(list(tmp_path.glob("*.json"))) == 3
    calls_after: list = []
    resumed = search(scripted(16, 333, calls_after), space(), TrialCache(tmp_path, ident))
    fresh = search(scripted(16, 333, []), space())
    assert (resumed.start, resumed.duration) == (fresh.start, fresh.duration)
    assert fresh.start == 16 and fresh.duration <= 333 < fresh.duration + 25
    assert not set(calls_after) & set(calls)  # finished trials were not trained again
    assert [t.cached for t in resumed.trials][:3] == [True, True, True]
    # Another identity (a changed config) reuses nothing.
    other: list = []
    search(scripted(16, 333, other), space(), TrialCache(tmp_path, {**ident, "config": {"lr": 2}}))
    assert len(other) == len({(t.start, t.duration) for t in fresh.trials})


# ----------------------------------------------------------------------------- the CLI, real trials


@pytest.fixture(scope="module")
def text_shards(tmp_path_factory):
    """Byte-level rows of real text (The Pile sample), 32 tokens each: train and validation."""
    import io

    import zstandard

    from slwdata.dataset.testing import write_token_shards

    root = tmp_path_factory.mktemp("tune")
    src = ROOT.parent / "shared" / "data" / "corpora" / "pile-mini" / "00.jsonl.zst"
    with open(src, "rb") as fh:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
        buf = bytearray()
        for line in lines:
            buf += json.loads(line)["text"].encode()
            if len(buf) > 400_000:
                break
    rows = np.frombuffer(bytes(buf), dtype=np.uint8).astype(np.uint16)
    rows = rows[: len(rows) // 32 * 32].reshape(-1, 32)
    write_token_shards(str(root / "train"), tokens=rows[:-256], rows_per_shard=4096)
    write_token_shards(str(root / "val"), tokens=rows[-256:], rows_per_shard=4096)
    return root


def tune_cmd(shards, out, *extra):
    return SLWDATA + [
        "tune",
        str(ROOT / "examples" / "configs" / "tiny-cpu.yaml"),
        "--out",
        str(out),
        "--set",
        f"data.train={shards / 'train'}",
        "--set",
        f"data.val={shards / 'val'}",
        "--set",
        "seq_len=32",
        "--set",
        "global_batch_size=8",
        "--set",
        "model.vocab_size=256",
        "--set",
        "max_duration=40960tok",
        "--set",
        "scheduler.t_warmup=0.025dur",
        "--set",
        "eval_subset_num_batches=16",
        *extra,
    ]


@pytest.mark.composer
@pytest.mark.slow
def test_tune_end_to_end_at_a_high_lr(text_shards, tmp_path):
    pytest.importorskip("composer")
    out = tmp_path / "tune"
    # LR 0.3 on a tiny byte-level GPT: the regime where the pilot saw loss spikes.
    cmd = tune_cmd(
        text_shards,
        out,
        "--set",
        "optimizer.lr=0.3",
        "--starts",
        "8",
        "--evals",
        "8",
        "--t-init",
        "2",
        "--t-min",
        "1",
        "--t-max",
        "4",
        "--max-trials",
        "3",
    )
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    assert "slwdata tune: LR warmup 1024tok; trials train 4096tok (4x), validating every 512tok" in run.stdout
    report = json.loads((out / "tune.json").read_text())
    trials = report["trials"]
    assert trials and all(t["curve"]["points"] for t in trials)
    # A fluctuation was provoked, and the verdicts follow the 1.3x rule on the recorded curves.
    assert any(t["fluctuation_at"] is not None for t in trials), trials
    for t in trials:
        idx = first_fluctuation([tuple(p) for p in t["curve"]["points"]], 1.3, t["judged_until"])
        assert (idx is None) == t["passed"]
        assert 4096 <= t["curve"]["trained_tokens"] < 4096 + 8 * 32
    assert report["trial_tokens"] == sum(
        {(t["start"], t["duration"]): t["curve"]["trained_tokens"] for t in trials}.values()
    )
    assert f"{report['trials_trained']} trials trained (0 cached)" in run.stdout, run.stdout
    assert (out / "tune.png").stat().st_size > 10_000 and "| # | stage |" in (out / "tune.md").read_text()
    # Rerunning the same command trains nothing and reaches the same verdicts.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == run.returncode
    assert f"0 trials trained ({report['trials_trained']} cached)" in again.stdout
    report2 = json.loads((out / "tune.json").read_text())
    assert [(t["start"], t["duration"], t["passed"]) for t in report2["trials"]] == [
        (t["start"], t["duration"], t["passed"]) for t in trials
    ]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--set", "scheduler=null"], "cannot find the LR warmup (scheduler.t_warmup)"),
        (["--set", "data.val=null"], "no validation set (data.val)"),
        (["--set", "eval_subset_num_batches=2"], "gives 512 tokens per validation, fewer than 3,269"),
        (["--t-min", "9"], "T bounds [9216, 8192]tok hold no candidate"),
        (["--starts", "32,40"], "no start length in [32, 40] is a positive multiple of 8 and below the row length 32"),
    ],
)
def test_bad_setups_are_refused_before_any_trial(text_shards, tmp_path, extra, words):
    run = subprocess.run(
        tune_cmd(text_shards, tmp_path / "t", *extra), capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert run.returncode == 2
    assert run.stderr.startswith("slwdata tune: error: ") and words in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "t" / "trials").exists()


def test_help_documents_the_strategy():
    run = subprocess.run(SLWDATA + ["tune", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    for words in (
        "raise s (--starts) until the validation perplexity no longer fluctuates",
        "binary-search the largest T",
        "--ratio (1.3) times the best one before it",
        "--warmup-multiples",
        "--max-trials",
        "--launcher",
        "--fresh",
    ):
        assert words in text, words


@pytest.mark.composer
def test_composer_factory_trials_follow_the_trial_settings(text_shards):
    """The Python API: a user's Trainer factory, run in process for one trial."""
    pytest.importorskip("composer")
    import torch
    from composer import Trainer
    from composer.optim import CosineAnnealingWithWarmupScheduler, DecoupledAdamW
    from torch.utils.data import DataLoader

    from slwdata.composer import SequenceLengthWarmup
    from slwdata.dataset import SLWDataset
    from slwdata.demo.models import ComposerGPT
    from slwdata.demo.quickstart import val_dataloader
    from slwdata.tune import ComposerFactoryTrials

    made = []

    def make_trainer(start, duration, max_duration, eval_interval, callbacks):
        made.append((start, duration, max_duration, eval_interval))
        torch.manual_seed(0)
        model = ComposerGPT("tiny", vocab_size=256, block_size=32)
        ds = SLWDataset(local=str(text_shards / "train"), batch_size=8, shuffle=True, shuffle_seed=0)
        return Trainer(
            model=model,
            train_dataloader=DataLoader(ds, batch_size=None),
            eval_dataloader=val_dataloader(str(text_shards / "val"), 8),
            eval_interval=eval_interval,
            eval_subset_num_batches=4,
            max_duration=max_duration,
            optimizers=DecoupledAdamW(model.parameters(), lr=1e-3),
            schedulers=CosineAnnealingWithWarmupScheduler(t_warmup="256tok", t_max="8192tok"),
            algorithms=[SequenceLengthWarmup(start=start, duration=duration)],
            callbacks=callbacks,
            device="cpu",
            progress_bar=False,
            seed=0,
            device_train_microbatch_size=8,
        )

    trials = ComposerFactoryTrials(make_trainer, unit="tok", lr_warmup=256, full_run_tokens=8192)
    curve = trials.bind(1024, 256)(16, 512)
    assert made == [(16, "512tok", "1024tok", "256tok")]
    assert [p for p, _ in curve.points][:3] == sorted(p for p, _ in curve.points)[:3]
    assert len(curve.points) >= 4 and all(256 <= p <= 1024 + 256 for p, _ in curve.points)
    assert all(1.0 < v < 1000 for _, v in curve.points)  # perplexities of a byte-level model
    assert 1024 <= curve.trained_tokens < 1024 + 8 * 32


@pytest.mark.composer
@pytest.mark.slow
def test_readme_tune_commands_run_as_written(tmp_path):
    """The README's "Tune s and T" block, run line by line from a folder laid out like the checkout."""
    import re
    import shlex

    pytest.importorskip("composer")
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Tune s and T") :]
    (block,) = re.findall(r"^```bash\n(.*?)^```", section[: section.index("\n## ", 5)], flags=re.S | re.M)
    work = tmp_path / "slwdata"
    work.mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    (work / "examples").symlink_to(ROOT / "examples")
    (work / ".venv").symlink_to(Path(sys.executable).parents[1])
    for line in block.strip().splitlines():
        run = subprocess.run(shlex.split(line), cwd=work, capture_output=True, text=True, timeout=1500)
        assert run.returncode in (0, 1), f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    report = json.loads((work / "out" / "tune" / "report" / "tune.json").read_text())
    assert report["trials"] and report["space"]["t_max"] == 4 * report["space"]["lr_warmup"]
    assert 0 < report["cost_fraction"] < 1
    if run.returncode == 0:
        assert "paste into the config:\nslw: {enabled: true, start: " in run.stdout
