"""examples/llmfoundry.md run as written against real llm-foundry 0.22.0 (CPU, tiny MPT).

The commands are the doc's ``bash`` blocks, run one by one in ``.venv-llmfoundry`` (made by
``scripts/setup_llmfoundry.sh``, which ``.ci/run`` runs) from a working folder laid out like a
checkout (``examples/`` and ``.venv-llmfoundry`` linked, ``../shared`` beside it); the YAMLs are
the files the doc shows verbatim. A test-only ``sitecustomize`` (tests/llmfoundry_probe) records
what the model is fed at each step without changing the YAMLs or commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from slwdata.pacing import PacingSchedule

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "examples" / "llmfoundry.md"
VENV = REPO / ".venv-llmfoundry"
SHARED = REPO.parent / "shared"
PROBE = Path(__file__).resolve().parent / "llmfoundry_probe"
ROWS, FULL, START, WARMUP, MAX_TOKENS = 4, 64, 8, "8ba", 5120  # what the doc's YAMLs say (checked below)
TUNE_LR = 0.15

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (VENV / "bin" / "llmfoundry").exists(),
        reason=".venv-llmfoundry is absent: run `bash scripts/setup_llmfoundry.sh` (.ci/run does)",
    ),
]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def _commands() -> list[str]:
    return [line for block in _blocks("bash") for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder laid out like the checkout the doc's commands run from."""
    root = tmp_path_factory.mktemp("lf")
    work = root / "slwdata"
    work.mkdir()
    (root / "shared").symlink_to(SHARED)
    (work / "examples").symlink_to(REPO / "examples")
    (work / VENV.name).symlink_to(VENV)
    (work / "scripts").symlink_to(REPO / "scripts")
    return work


def run(
    work: Path, command: str, probe: Path | None = None, extra: list[str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PROBE), PYTHONHASHSEED="0")
    env.pop("SLW_PROBE_OUT", None)
    if probe is not None:
        env["SLW_PROBE_OUT"] = str(probe)
    args = shlex.split(command) + (extra or [])
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def records(path: Path) -> tuple[list[dict], list[dict], dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    forwards = [r for r in rows if r["kind"] == "forward"]
    ends = [r for r in rows if r["kind"] == "batch_end"]
    fit_end = [r for r in rows if r["kind"] == "fit_end"]
    assert len(fit_end) == 1
    return forwards, ends, fit_end[0]


def test_doc_shows_the_yaml_files_verbatim_and_installs_with_setup_script():
    yamls = _blocks("yaml")
    files = [REPO / "examples" / "llmfoundry" / n for n in ("mpt-tiny-text.yaml", "mpt-tiny-slw.yaml")]
    assert yamls == [f.read_text() for f in files]
    cmds = _commands()
    assert cmds[0] == "bash scripts/setup_llmfoundry.sh"
    assert "bash scripts/setup_llmfoundry.sh" in (REPO / ".ci" / "run").read_text()
    for f in files:  # the constants this test checks against
        text = f.read_text()
        for needle in (
            f"max_seq_len: {FULL}",
            f"start: {START}",
            f"duration: {WARMUP}",
            f"max_duration: {MAX_TOKENS}tok",
            f"global_train_batch_size: {ROWS}",
        ):
            assert needle in text, (f.name, needle)


def test_pip_reports_no_conflict_in_the_llmfoundry_env():
    proc = subprocess.run([str(VENV / "bin" / "pip"), "check"], capture_output=True, text=True)
    assert proc.returncode == 0 and "No broken requirements found" in proc.stdout, proc.stdout + proc.stderr
    versions = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('llm-foundry'), m.version('mosaicml-streaming'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions[0] == "0.22.0" and versions[1].startswith("0.12.")
    eps = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-c",
            "from llmfoundry import registry; print('slw' in registry.dataloaders.get_all(), "
            "'slw' in registry.algorithms.get_all())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert eps.stdout.split() == ["True", "True"], eps.stdout + eps.stderr


def _plan(steps: int) -> list[int]:
    return PacingSchedule(start=START, end=FULL, duration=WARMUP).plan(steps, rows_per_step=ROWS)


def _check_run(forwards: list[dict], ends: list[dict], fit_end: dict) -> None:
    lengths = [f["shape"][1] for f in forwards]
    assert [f["step"] for f in forwards] == list(range(len(forwards)))  # one forward per step
    assert lengths == _plan(len(lengths)) and lengths[0] == START and lengths[-1] == FULL
    fed = [f["tokens"] for f in forwards]
    # Composer's time/token after each step is the running sum of the tokens the model was fed.
    assert [e["token"] for e in ends] == [sum(fed[: i + 1]) for i in range(len(fed))]
    assert fit_end["token"] == sum(fed) >= MAX_TOKENS > sum(fed) - fed[-1]
    assert {"LanguageCrossEntropy", "LanguagePerplexity", "TokenAccuracy"} <= set(fit_end["train_metrics"])
    assert fit_end["slw"]["trained_tokens"] == sum(fed)


@pytest.fixture(scope="module")
def converted(work):
    cmds = _commands()
    convert = [c for c in cmds if " convert " in c]
    assert len(convert) == 1
    run(work, convert[0])
    return work


@pytest.fixture(scope="module")
def slw_run(converted, tmp_path_factory):
    probe = tmp_path_factory.mktemp("probe") / "slw.jsonl"
    cmd = [c for c in _commands() if c.endswith("mpt-tiny-slw.yaml")]
    assert len(cmd) == 1
    run(converted, cmd[0], probe)
    return records(probe)


def test_text_loader_cuts_to_the_pacing_and_counts_trained_tokens(converted, tmp_path):
    cmd = [c for c in _commands() if c.endswith("mpt-tiny-text.yaml")]
    assert len(cmd) == 1
    run(converted, cmd[0], tmp_path / "text.jsonl")
    forwards, ends, fit_end = records(tmp_path / "text.jsonl")
    _check_run(forwards, ends, fit_end)
    assert fit_end["dataset"] == "StreamingTextDataset"
    assert fit_end["slw"]["dropped_tokens"] == sum((FULL - f["shape"][1]) * ROWS for f in forwards) > 0
    assert fit_end["slw"]["reserved_tokens"] == 0
    assert "total_tokens" in forwards[0]["keys"]  # the text loader's per-row counts, recomputed for the cut


def test_slw_loader_reserves_tails_and_balances_the_epoch(slw_run):
    forwards, ends, fit_end = slw_run
    _check_run(forwards, ends, fit_end)
    assert fit_end["dataset"] == "SLWDataset"
    assert sorted(forwards[0]["keys"]) == ["input_ids", "labels"]  # slw_* keys removed by the algorithm
    assert fit_end["slw"]["reserved_tokens"] > 0
    acct = fit_end["accounts"]["0"]
    assert fit_end["epoch"] >= 1  # epoch 0 was trained to its end
    epoch0 = sum(f["tokens"] for f in forwards if f["epoch"] == 0)
    assert epoch0 == acct["tokens_trained"]
    assert (
        acct["fresh_rows"] * FULL + acct["tokens_carried_in"]
        == acct["tokens_trained"] + acct["tokens_dropped"] + acct["tokens_carried_out"]
    )
    assert acct["tokens_dropped"] == 0 and acct["tail_batches"] > 0


def test_slw_loader_resumes_mid_warmup_with_the_same_lengths(slw_run, converted, tmp_path):
    forwards, _, _ = slw_run
    cmd = [c for c in _commands() if c.endswith("mpt-tiny-slw.yaml")][0]
    ckpt = tmp_path / "ckpt"
    stop = 4  # mid-warmup (8 steps)
    assert _plan(stop + 1)[stop] < FULL
    # max_duration stays in tokens (the YAML's LR warmup is in tokens): the tokens of the first steps.
    first_tokens = sum(f["tokens"] for f in forwards[:stop])
    run(
        converted,
        cmd,
        tmp_path / "a.jsonl",
        [f"max_duration={first_tokens}tok", f"save_folder={ckpt}", f"save_interval={stop}ba"],
    )
    run(converted, cmd, tmp_path / "b.jsonl", [f"load_path={ckpt}/ep0-ba{stop}-rank0.pt"])
    first, _, _ = records(tmp_path / "a.jsonl")
    second, _, end = records(tmp_path / "b.jsonl")
    assert [f["step"] for f in first] == list(range(stop)) and second[0]["step"] == stop
    resumed = first + second
    assert [f["shape"] for f in resumed] == [f["shape"] for f in forwards]
    assert [f["sha1"] for f in resumed] == [f["sha1"] for f in forwards]  # the same rows and tails, too
    assert end["token"] == sum(f["tokens"] for f in forwards)


def test_slw_loader_refuses_unknown_keys_by_name(converted):
    cmd = [c for c in _commands() if c.endswith("mpt-tiny-slw.yaml")][0]
    env = dict(os.environ)
    proc = subprocess.run(
        shlex.split(cmd) + ["train_loader.dataset.suffle=true", "train_loader.dataset.eos_token_id=0"],
        cwd=converted,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    out = re.sub(r"\s+", " ", re.sub(r"\[rank0\]:|│", " ", proc.stdout + proc.stderr))
    assert "slw dataloader, train_loader.dataset: unknown key(s) ['suffle']" in out, out[-3000:]
    assert "eos_token_id (sequence_id" in out


def test_tune_runs_llmfoundry_trials_from_the_training_yaml(converted, tmp_path):
    """`slwdata tune` on the doc's slw YAML plus an eval loader: each trial a real `llmfoundry train`."""
    import yaml

    cfg = yaml.safe_load((REPO / "examples" / "llmfoundry" / "mpt-tiny-slw.yaml").read_text())
    cfg["eval_loader"] = {
        "name": "text",
        "drop_last": False,
        "num_workers": 0,
        "prefetch_factor": None,
        "persistent_workers": False,
        "dataset": {"local": "${variables.data_local}", "shuffle": False, "max_seq_len": "${variables.max_seq_len}"},
    }
    cfg["eval_subset_num_batches"] = 16  # 16 x 4 rows x 64 = 4,096 tokens per validation
    cfg["device_eval_batch_size"] = 4
    cfg["optimizer"]["lr"] = TUNE_LR  # high enough to provoke a fluctuation
    (converted / "tune.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "tune"
    cmd = (
        f"{VENV.name}/bin/slwdata tune tune.yaml --out {out} --starts 8 --evals 8 "
        "--t-init 2 --t-min 1 --t-max 4 --max-trials 3"
    )
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(shlex.split(cmd), cwd=converted, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "LR warmup 512tok; trials train 2048tok (4x), validating every 256tok" in proc.stdout
    report = json.loads((out / "tune.json").read_text())
    trials = report["trials"]
    assert trials and all(len(t["curve"]["points"]) >= 4 for t in trials)
    for t in trials:  # each trial trained its length on the full run's schedule, judged by the 1.3x rule
        assert 2048 <= t["curve"]["trained_tokens"] < 2048 + 4 * 64
        pts = t["curve"]["points"]
        best, first = float("inf"), None
        for i, (at, v) in enumerate(pts):
            if at > t["judged_until"]:
                break
            if v > 1.3 * best:
                first = at
                break
            best = min(best, v)
        assert t["fluctuation_at"] == first and t["passed"] == (first is None)
    assert any(not t["passed"] for t in trials), trials  # the high LR provoked a fluctuation
    log = (out / "logs" / f"trial-s{trials[-1]['start']}-T{trials[-1]['duration']}.log").read_text()
    assert "llmfoundry train tune.yaml" in log.splitlines()[0] and "algorithms.slw.start=8" in log
    if proc.returncode == 0:
        assert "algorithms:\n  slw: {start: 8, duration: " in proc.stdout
