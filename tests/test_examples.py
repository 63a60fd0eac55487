"""The example scripts run at tiny sizes, so they cannot rot."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from slwdata.dataset.testing import write_token_shards

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("ex")
    for name, seed in (("train", 0), ("val", 1)):
        write_token_shards(str(root / name), num_rows=128, seq_len=32, rows_per_shard=32, seed=seed)
    return root


@pytest.mark.parametrize("config", sorted((EXAMPLES / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_are_complete_and_token_terminated(config):
    cfg = yaml.safe_load(config.read_text())
    for key in ("model", "seq_len", "global_batch_size", "data", "max_duration", "optimizer", "slw"):
        assert key in cfg, f"{config.name}: missing {key}"
    assert str(cfg["max_duration"]).endswith("tok")  # SLW compares at equal trained tokens
    assert cfg["slw"]["enabled"] is True and cfg["slw"]["start"] == 8
    if "gpt2" in config.name:
        assert cfg["seq_len"] == 1024 and cfg["model"]["size"] == "gpt2-124m"


@pytest.mark.composer
@pytest.mark.parametrize("slw", [True, False], ids=["slw", "baseline"])
def test_train_slw_tiny_cpu(shards, tmp_path, slw):
    pytest.importorskip("composer")
    train = _load("train_slw")
    args = [
        str(EXAMPLES / "configs" / "tiny-cpu.yaml"),
        "--set",
        f"data.train={shards / 'train'}",
        "--set",
        f"data.val={shards / 'val'}",
        "--set",
        "seq_len=32",
        "--set",
        "global_batch_size=4",
        "--set",
        "max_duration=512tok",
        "--set",
        "eval_subset_num_batches=2",
        "--set",
        "progress_bar=false",
        "--summary-json",
        str(tmp_path / "s.json"),
    ]
    if not slw:
        args.append("--no-slw")
    summary = train.main(args)
    assert json.loads((tmp_path / "s.json").read_text())["trained_tokens"] == summary["trained_tokens"]
    assert 512 <= summary["trained_tokens"] < 512 + 4 * 32
    if slw:
        assert summary["steps"] > 4  # short rows first: more steps for the same tokens
        assert summary["slw/seq_len"] == 32
    else:
        assert summary["steps"] == 4 and "slw/seq_len" not in summary
    assert any(k.endswith("LanguageCrossEntropy") for k in summary)


def test_plain_pytorch_loop(shards):
    result = _load("plain_pytorch").main(
        [str(shards / "train"), "--tokens", "1024", "--batch-size", "4", "--warmup", "0.5dur"]
    )
    assert 1024 <= result["trained_tokens"] < 1024 + 4 * 32
    assert result["steps"] > 1024 // (4 * 32)
    assert result["dropped_tokens"] > 0 and result["final_loss"] > 0


def test_llmfoundry_entry_point_loads_the_algorithm():
    pytest.importorskip("composer")
    from importlib.metadata import entry_points

    from slwdata.composer import SequenceLengthWarmup

    (ep,) = [e for e in entry_points(group="llmfoundry_algorithms") if e.name == "slw"]
    cls = ep.load()
    assert cls is SequenceLengthWarmup
    # llm-foundry passes the YAML keys of examples/llmfoundry.md as keyword arguments.
    algo = cls(start=8, duration="9000ba", kind="linear")
    assert algo.schedule.start == 8 and str(algo.schedule.duration) == "9000ba"
    assert "slw:" in (EXAMPLES / "llmfoundry.md").read_text()
